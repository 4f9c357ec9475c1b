package frames

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// EtherTypes, IP protocol numbers and ICMPv6 types of the frames built here.
const (
	EtherIPv4   = 0x0800
	EtherARP    = 0x0806
	EtherIPv6   = 0x86dd
	Ether8021Q  = 0x8100
	Ether8021AD = 0x88a8

	ProtoUDP    = 17
	ProtoICMPv6 = 58

	ICMPv6RS       = 133
	ICMPv6RA       = 134
	ICMPv6NS       = 135
	ICMPv6NA       = 136
	ICMPv6Redirect = 137
)

// Addresses the probes use.
var (
	BroadcastMAC  = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	AllNodesMAC   = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	AllRoutersMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 2}
	AllNodes      = netip.MustParseAddr("ff02::1")
	AllRouters    = netip.MustParseAddr("ff02::2")
	DHCP6Servers  = netip.MustParseAddr("ff02::1:2") // All_DHCP_Relay_Agents_and_Servers
	V4Broadcast   = netip.MustParseAddr("255.255.255.255")
	Zero4         = netip.IPv4Unspecified()
	Zero6         = netip.IPv6Unspecified()
)

// Checksum is the Internet checksum (RFC 1071) over the concatenation of b.
func Checksum(b ...[]byte) uint16 {
	var sum uint32
	for _, p := range b {
		for i := 0; i+1 < len(p); i += 2 {
			sum += uint32(p[i])<<8 | uint32(p[i+1])
		}
		if len(p)%2 == 1 {
			sum += uint32(p[len(p)-1]) << 8
		}
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// Ether is an Ethernet II frame, padded to the 60-byte minimum.
func Ether(dst, src net.HardwareAddr, etherType uint16, payload []byte) []byte {
	f := make([]byte, 0, 14+len(payload))
	f = append(f, dst...)
	f = append(f, src...)
	f = binary.BigEndian.AppendUint16(f, etherType)
	f = append(f, payload...)
	for len(f) < 60 {
		f = append(f, 0)
	}
	return f
}

// VLANTag inserts an 802.1Q (tpid Ether8021Q) or 802.1ad (Ether8021AD) tag
// with VLAN vid after the MAC addresses.
func VLANTag(frame []byte, tpid, vid uint16) []byte {
	f := append([]byte{}, frame[:12]...)
	f = binary.BigEndian.AppendUint16(f, tpid)
	f = binary.BigEndian.AppendUint16(f, vid)
	return append(f, frame[12:]...)
}

// IPv4 is an IPv4 packet (no options, TTL 64) with a valid header checksum.
func IPv4(src, dst netip.Addr, proto byte, payload []byte) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	h[8] = 64
	h[9] = proto
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	binary.BigEndian.PutUint16(h[10:], Checksum(h))
	return append(h, payload...)
}

// IPv6 is an IPv6 packet without extension headers.
func IPv6(src, dst netip.Addr, next, hops byte, payload []byte) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
	h[6] = next
	h[7] = hops
	s, d := src.As16(), dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return append(h, payload...)
}

// pseudo is the pseudo header of the UDP and ICMPv6 checksums.
func pseudo(src, dst netip.Addr, proto byte, n int) []byte {
	var p []byte
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		p = append(append(p, s[:]...), d[:]...)
		p = append(p, 0, proto)
		return binary.BigEndian.AppendUint16(p, uint16(n))
	}
	s, d := src.As16(), dst.As16()
	p = append(append(p, s[:]...), d[:]...)
	p = binary.BigEndian.AppendUint32(p, uint32(n))
	return append(p, 0, 0, 0, proto)
}

// UDP is a UDP datagram in an IPv4 or IPv6 packet (by the family of src),
// with a valid checksum.
func UDP(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	u := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	u = append(u, payload...)
	c := Checksum(pseudo(src, dst, ProtoUDP, len(u)), u)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
	if src.Is4() {
		return IPv4(src, dst, ProtoUDP, u)
	}
	return IPv6(src, dst, ProtoUDP, 64, u)
}

// ICMPv6 is an ICMPv6 message of type typ (code 0) in an IPv6 packet with
// hop limit 255, as neighbour discovery requires.
func ICMPv6(src, dst netip.Addr, typ byte, body []byte) []byte {
	m := append([]byte{typ, 0, 0, 0}, body...)
	binary.BigEndian.PutUint16(m[2:], Checksum(pseudo(src, dst, ProtoICMPv6, len(m)), m))
	return IPv6(src, dst, ProtoICMPv6, 255, m)
}

// NDNonce is an ND nonce option (RFC 3971) carrying n (6, 14, 22... bytes).
func NDNonce(n []byte) []byte { return append([]byte{14, byte((len(n) + 2) / 8)}, n...) }

// SolicitedNode returns the solicited-node multicast address of a and its
// MAC.
func SolicitedNode(a netip.Addr) (netip.Addr, net.HardwareAddr) {
	b := a.As16()
	m := netip.AddrFrom16([16]byte{0xff, 0x02, 11: 1, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]})
	return m, net.HardwareAddr{0x33, 0x33, 0xff, b[13], b[14], b[15]}
}

// ARPFrame is an ARP packet found in an untagged Ethernet frame.
type ARPFrame struct {
	Op       uint16 // 1 request, 2 reply
	SHA      net.HardwareAddr
	SPA, TPA netip.Addr
}

// ParseARP returns the Ethernet/IPv4 ARP packet in frame, if it holds one.
func ParseARP(frame []byte) (ARPFrame, bool) {
	if len(frame) < 42 || binary.BigEndian.Uint16(frame[12:]) != 0x0806 {
		return ARPFrame{}, false
	}
	return ARPFrame{
		Op:  binary.BigEndian.Uint16(frame[20:]),
		SHA: net.HardwareAddr(append([]byte(nil), frame[22:28]...)),
		SPA: netip.AddrFrom4([4]byte(frame[28:32])),
		TPA: netip.AddrFrom4([4]byte(frame[38:42])),
	}, true
}

// ParseNS returns the target of the neighbour solicitation in an untagged
// Ethernet frame, if it holds one (no extension headers).
func ParseNS(frame []byte) (netip.Addr, bool) {
	const icmp = 14 + 40
	if len(frame) < icmp+24 || binary.BigEndian.Uint16(frame[12:]) != EtherIPv6 || frame[14+6] != ProtoICMPv6 || frame[icmp] != ICMPv6NS {
		return netip.Addr{}, false
	}
	return netip.AddrFrom16([16]byte(frame[icmp+8 : icmp+24])), true
}

// ARP is an Ethernet/IPv4 ARP packet (op 1 request, 2 reply), without
// the Ethernet header.
func ARP(op uint16, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	a := []byte{0, 1, 0x08, 0x00, 6, 4}
	a = binary.BigEndian.AppendUint16(a, op)
	a = append(a, sha...)
	s, t := spa.As4(), tpa.As4()
	a = append(a, s[:]...)
	if tha == nil {
		tha = make(net.HardwareAddr, 6)
	}
	a = append(a, tha...)
	return append(a, t[:]...)
}
