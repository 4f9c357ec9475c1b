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

// LLOption is an ND link-layer address option: type 1 (source) or 2
// (target) holding mac.
func LLOption(typ byte, mac net.HardwareAddr) []byte { return append([]byte{typ, 1}, mac...) }

// ndProbe is an ND message as a guest's stack sends it: body, then opts,
// and nothing else, so the message has exactly a real one's length. Its
// nonce is the whole IPv6 packet, made unique by a flow label taken from
// the nonce counter. (Bytes after the packet would not do: the frames
// reached the router trimmed to their IP length.)
func ndProbe(name string, ethDst, ethSrc net.HardwareAddr, src, dst netip.Addr, typ byte, body []byte, opts ...[]byte) Probe {
	for _, o := range opts {
		body = append(body, o...)
	}
	pkt := withFlowLabel(ICMPv6(src, dst, typ, body))
	return Probe{name, pkt, Ether(ethDst, ethSrc, EtherIPv6, pkt)}
}

// withFlowLabel sets a fresh flow label in an IPv6 packet (which no
// checksum covers).
func withFlowLabel(pkt []byte) []byte {
	l := uint32(nonceCount.Add(1)) & 0xfffff
	pkt[1] = pkt[1]&0xf0 | byte(l>>16)
	pkt[2], pkt[3] = byte(l>>8), byte(l)
	return pkt
}

// NSProbe is a neighbour solicitation for target to its solicited-node
// address. From :: it is duplicate address detection and carries an ND
// nonce option (RFC 7527); otherwise it carries a source link-layer
// address option with ethSrc, as a guest's stack sends it.
func NSProbe(name string, ethSrc net.HardwareAddr, src, target netip.Addr) Probe {
	if src.IsUnspecified() {
		n := NewNonce()
		t := target.As16()
		body := append(append(make([]byte, 4), t[:]...), NDNonce(n)...)
		dst, dstMAC := SolicitedNode(target)
		return Probe{name, n, Ether(dstMAC, ethSrc, EtherIPv6, ICMPv6(src, dst, ICMPv6NS, body))}
	}
	return NSProbeLL(name, ethSrc, src, target, ethSrc)
}

// NSProbeLL is NSProbe from src with a source link-layer address option
// holding lladdr (nil: no option).
func NSProbeLL(name string, ethSrc net.HardwareAddr, src, target netip.Addr, lladdr net.HardwareAddr) Probe {
	t := target.As16()
	body := append(make([]byte, 4), t[:]...)
	var opts [][]byte
	if lladdr != nil {
		opts = append(opts, LLOption(1, lladdr))
	}
	dst, dstMAC := SolicitedNode(target)
	return ndProbe(name, dstMAC, ethSrc, src, dst, ICMPv6NS, body, opts...)
}

// NAProbe is an unsolicited neighbour advertisement (override) for target
// to all nodes, with a target link-layer address option holding ethSrc.
func NAProbe(name string, ethSrc net.HardwareAddr, src, target netip.Addr) Probe {
	return NAProbeLL(name, ethSrc, src, target, ethSrc)
}

// NAProbeLL is NAProbe with a target link-layer address option holding
// lladdr (nil: no option).
func NAProbeLL(name string, ethSrc net.HardwareAddr, src, target netip.Addr, lladdr net.HardwareAddr) Probe {
	t := target.As16()
	body := append([]byte{0x20, 0, 0, 0}, t[:]...) // override
	var opts [][]byte
	if lladdr != nil {
		opts = append(opts, LLOption(2, lladdr))
	}
	return ndProbe(name, AllNodesMAC, ethSrc, src, AllNodes, ICMPv6NA, body, opts...)
}

// RAProbe is a router advertisement to all nodes (hop limit 64, router
// lifetime 1800 s).
func RAProbe(name string, ethSrc net.HardwareAddr, src netip.Addr) Probe {
	n := NewNonce()
	body := []byte{64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0}
	body = append(body, NDNonce(n)...)
	return Probe{name, n, Ether(AllNodesMAC, ethSrc, EtherIPv6, ICMPv6(src, AllNodes, ICMPv6RA, body))}
}

// RSProbe is a router solicitation to all routers, with a source
// link-layer address option holding ethSrc unless src is ::.
func RSProbe(name string, ethSrc net.HardwareAddr, src netip.Addr) Probe {
	var opts [][]byte
	if !src.IsUnspecified() {
		opts = append(opts, LLOption(1, ethSrc))
	}
	return ndProbe(name, AllRoutersMAC, ethSrc, src, AllRouters, ICMPv6RS, make([]byte, 4), opts...)
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

// RAFragmentProbes are the two fragments of a router advertisement whose
// ICMPv6 header is in the second one: the first fragment holds the
// fragment header and the first 16 bytes of a 24-byte destination options
// header, the second the rest of it and the RA. A filter that looks for
// the ICMPv6 type in the first fragment does not find it; a receiver that
// reassembles gets an RA. Each one's nonce is its whole IPv6 packet
// (see ndProbe).
func RAFragmentProbes(name string, ethSrc net.HardwareAddr, src netip.Addr, id uint32) (first, second Probe) {
	ra := append([]byte{ICMPv6RA, 0, 0, 0, 64, 0, 0x07, 0x08}, make([]byte, 8)...)
	binary.BigEndian.PutUint16(ra[2:], Checksum(pseudo(src, AllNodes, ProtoICMPv6, len(ra)), ra))
	// Destination options: next header ICMPv6, length (2+1)*8, then a
	// PadN option filling the remaining 22 bytes.
	dstopts := append([]byte{ProtoICMPv6, 2, 1, 20}, make([]byte, 20)...)
	payload := append(dstopts, ra...)
	frag := func(offset int, more bool, part []byte) []byte {
		h := []byte{60, 0, 0, 0} // next header: destination options
		off := uint16(offset)
		if more {
			off |= 1
		}
		binary.BigEndian.PutUint16(h[2:], off)
		h = binary.BigEndian.AppendUint32(h, id)
		return IPv6(src, AllNodes, 44, 255, append(h, part...))
	}
	p1, p2 := withFlowLabel(frag(0, true, payload[:16])), withFlowLabel(frag(16, false, payload[16:]))
	first = Probe{name + " (first fragment)", p1, Ether(AllNodesMAC, ethSrc, EtherIPv6, p1)}
	second = Probe{name + " (second fragment)", p2, Ether(AllNodesMAC, ethSrc, EtherIPv6, p2)}
	return first, second
}

// BPDUProbe is an IEEE 802.1D configuration BPDU to 01:80:c2:00:00:00
// (802.3 length, LLC 42 42 03) announcing a root bridge of priority
// rootPriority with ethSrc's MAC: what a VM sends to take over the
// spanning tree. The nonce is in the padding.
func BPDUProbe(name string, ethSrc net.HardwareAddr, rootPriority uint16) Probe {
	n := NewNonce()
	bpdu := []byte{0x42, 0x42, 0x03, 0, 0, 0, 0, 0} // LLC; protocol 0, version 0, type config, flags
	bpdu = binary.BigEndian.AppendUint16(bpdu, rootPriority)
	bpdu = append(bpdu, ethSrc...)  // root bridge id
	bpdu = append(bpdu, 0, 0, 0, 0) // root path cost
	bpdu = binary.BigEndian.AppendUint16(bpdu, rootPriority)
	bpdu = append(bpdu, ethSrc...)                       // bridge id
	bpdu = append(bpdu, 0x80, 0x01)                      // port id
	bpdu = append(bpdu, 0, 0, 0x14, 0, 0x02, 0, 0x0f, 0) // message age, max age, hello, forward delay
	f := append(net.HardwareAddr{0x01, 0x80, 0xc2, 0, 0, 0}, ethSrc...)
	f = binary.BigEndian.AppendUint16(f, uint16(len(bpdu)))
	f = append(append(f, bpdu...), n...)
	for len(f) < 60 {
		f = append(f, 0)
	}
	return Probe{name, n, f}
}

// UDPProbeWith is a UDP datagram from src to dst (IPv4: to the broadcast
// MAC; IPv6: to the all-nodes MAC) whose payload is prefix, then the
// nonce: prefix 13 to port 547 is a DHCPv6 RELAY-REPL, say.
func UDPProbeWith(name string, ethSrc net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, prefix []byte) Probe {
	n := NewNonce()
	dstMAC, et := BroadcastMAC, uint16(EtherIPv4)
	if src.Is6() {
		dstMAC, et = AllNodesMAC, EtherIPv6
	}
	return Probe{name, n, Ether(dstMAC, ethSrc, et, UDP(src, dst, sport, dport, append(append([]byte{}, prefix...), n...)))}
}

// FirstFragment4 is the first fragment of p, an untagged IPv4 frame: the
// IPv4 header with MF set and the first n bytes (a multiple of 8) of its
// payload. Its nonce is the whole packet, made unique by an IPv4 ID from
// the nonce counter (see ndProbe).
func FirstFragment4(name string, p Probe, n int) Probe {
	ip := append([]byte{}, p.Frame[14:14+20]...)
	binary.BigEndian.PutUint16(ip[4:], uint16(nonceCount.Add(1)))
	ip[6] |= 0x20 // more fragments
	binary.BigEndian.PutUint16(ip[2:], uint16(20+n))
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], Checksum(ip))
	pkt := append(ip, p.Frame[14+20:14+20+n]...)
	return Probe{name, pkt, Ether(net.HardwareAddr(p.Frame[0:6]), net.HardwareAddr(p.Frame[6:12]), EtherIPv4, pkt)}
}

// FirstFragment6 is the first fragment of p, an untagged IPv6 frame
// without extension headers: a fragment header (M set) between the IPv6
// header and the first n bytes (a multiple of 8) of p's payload. Its nonce
// is the whole packet, made unique by a flow label (see ndProbe).
func FirstFragment6(name string, p Probe, n int) Probe {
	ip := append([]byte{}, p.Frame[14:14+40]...)
	next := ip[6]
	ip[6] = 44
	binary.BigEndian.PutUint16(ip[4:], uint16(8+n))
	frag := []byte{next, 0, 0, 1} // offset 0, more fragments
	frag = binary.BigEndian.AppendUint32(frag, uint32(nonceCount.Add(1)))
	pkt := withFlowLabel(append(append(ip, frag...), p.Frame[14+40:14+40+n]...))
	return Probe{name, pkt, Ether(net.HardwareAddr(p.Frame[0:6]), net.HardwareAddr(p.Frame[6:12]), EtherIPv6, pkt)}
}

// EchoRequest6Probe is an ICMPv6 echo request to all nodes with a body of
// size bytes.
func EchoRequest6Probe(name string, ethSrc net.HardwareAddr, src netip.Addr, size int) Probe {
	n := NewNonce()
	body := append(append([]byte{0, 1, 0, 1}, n...), make([]byte, size)...)
	return Probe{name, n, Ether(AllNodesMAC, ethSrc, EtherIPv6, ICMPv6(src, AllNodes, 128, body))}
}
