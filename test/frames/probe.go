package frames

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync/atomic"
)

// nonceCount numbers the nonces of this process.
var nonceCount atomic.Uint64

// NewNonce returns 14 bytes, "TBPOL\x00" and a counter, unique in the
// process: it fits an ND nonce option and makes a probe recognisable
// wherever it arrives.
func NewNonce() []byte {
	b := []byte("TBPOL\x00\x00\x00\x00\x00\x00\x00\x00\x00")
	binary.BigEndian.PutUint64(b[6:], nonceCount.Add(1))
	return b
}

// Probe is one frame and the nonce it carries; Name says what it is in
// test output.
type Probe struct {
	Name  string
	Nonce []byte
	Frame []byte
}

// Tagged returns p with an 802.1Q or 802.1ad tag inserted (see VLANTag);
// name and nonce stay.
func (p Probe) Tagged(tpid, vid uint16) Probe {
	p.Frame = VLANTag(p.Frame, tpid, vid)
	return p
}

// The probes. ethSrc is the frame's source MAC, the rest the packet's.

// UDP4Probe is a broadcast frame holding a UDP/IPv4 datagram from src to
// dst carrying the nonce: with ports 68 -> 67 from 0.0.0.0 a DHCP client's
// message, with 67 -> 68 a DHCP server's.
func UDP4Probe(name string, ethSrc net.HardwareAddr, src, dst netip.Addr, sport, dport uint16) Probe {
	return UDP4ProbeTo(name, BroadcastMAC, ethSrc, src, dst, sport, dport)
}

// UDP4ProbeTo is UDP4Probe sent to the Ethernet address ethDst.
func UDP4ProbeTo(name string, ethDst, ethSrc net.HardwareAddr, src, dst netip.Addr, sport, dport uint16) Probe {
	n := NewNonce()
	return Probe{name, n, Ether(ethDst, ethSrc, EtherIPv4, UDP(src, dst, sport, dport, n))}
}

// UDP6Probe is a UDP/IPv6 datagram to the all-nodes MAC carrying the
// nonce (547 -> 546: a DHCPv6 server's message).
func UDP6Probe(name string, ethSrc net.HardwareAddr, src, dst netip.Addr, sport, dport uint16) Probe {
	n := NewNonce()
	return Probe{name, n, Ether(AllNodesMAC, ethSrc, EtherIPv6, UDP(src, dst, sport, dport, n))}
}

// ARPProbe is a broadcast ARP request from sender (sha, spa) for tpa; the
// nonce is in the Ethernet padding.
func ARPProbe(name string, ethSrc, sha net.HardwareAddr, spa, tpa netip.Addr) Probe {
	n := NewNonce()
	a := append(ARP(1, sha, spa, nil, tpa), n...)
	return Probe{name, n, Ether(BroadcastMAC, ethSrc, EtherARP, a)}
}

// NSProbe is a neighbour solicitation for target to its solicited-node
// address; from :: it is duplicate address detection.
func NSProbe(name string, ethSrc net.HardwareAddr, src, target netip.Addr) Probe {
	n := NewNonce()
	t := target.As16()
	body := append(make([]byte, 4), t[:]...)
	body = append(body, NDNonce(n)...)
	dst, dstMAC := SolicitedNode(target)
	return Probe{name, n, Ether(dstMAC, ethSrc, EtherIPv6, ICMPv6(src, dst, ICMPv6NS, body))}
}

// NAProbe is an unsolicited neighbour advertisement (override) for target
// to all nodes.
func NAProbe(name string, ethSrc net.HardwareAddr, src, target netip.Addr) Probe {
	n := NewNonce()
	t := target.As16()
	body := append([]byte{0x20, 0, 0, 0}, t[:]...) // override
	body = append(body, NDNonce(n)...)
	return Probe{name, n, Ether(AllNodesMAC, ethSrc, EtherIPv6, ICMPv6(src, AllNodes, ICMPv6NA, body))}
}

// RAProbe is a router advertisement to all nodes (hop limit 64, router
// lifetime 1800 s).
func RAProbe(name string, ethSrc net.HardwareAddr, src netip.Addr) Probe {
	n := NewNonce()
	body := []byte{64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0}
	body = append(body, NDNonce(n)...)
	return Probe{name, n, Ether(AllNodesMAC, ethSrc, EtherIPv6, ICMPv6(src, AllNodes, ICMPv6RA, body))}
}

// RSProbe is a router solicitation to all routers.
func RSProbe(name string, ethSrc net.HardwareAddr, src netip.Addr) Probe {
	n := NewNonce()
	body := append(make([]byte, 4), NDNonce(n)...)
	return Probe{name, n, Ether(AllRoutersMAC, ethSrc, EtherIPv6, ICMPv6(src, AllRouters, ICMPv6RS, body))}
}

// RedirectProbe is an ICMPv6 redirect (to all nodes) saying that dst is
// reached through target.
func RedirectProbe(name string, ethSrc net.HardwareAddr, src, target, dst netip.Addr) Probe {
	n := NewNonce()
	t, d := target.As16(), dst.As16()
	body := append(make([]byte, 4), t[:]...)
	body = append(body, d[:]...)
	body = append(body, NDNonce(n)...)
	return Probe{name, n, Ether(AllNodesMAC, ethSrc, EtherIPv6, ICMPv6(src, AllNodes, ICMPv6Redirect, body))}
}

// IsARPReply reports whether frame is an (untagged) ARP reply from the
// owner of spa.
func IsARPReply(frame []byte, spa netip.Addr) bool {
	s := spa.As4()
	return len(frame) >= 42 && binary.BigEndian.Uint16(frame[12:]) == EtherARP &&
		binary.BigEndian.Uint16(frame[20:]) == 2 && string(frame[28:32]) == string(s[:])
}
