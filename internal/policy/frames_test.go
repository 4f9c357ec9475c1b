package policy

// Hand-built frames and AF_PACKET sockets for the netns tests: a frame is
// injected on the VM's side of a veth pair and looked for on the router's
// (and other VMs') side, by a nonce it carries.

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var (
	broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	allNodesMAC  = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	allNodes     = netip.MustParseAddr("ff02::1")
	allRouters   = netip.MustParseAddr("ff02::2")
	dhcp6Servers = netip.MustParseAddr("ff02::1:2")
	v4Broadcast  = netip.MustParseAddr("255.255.255.255")
	zero4        = netip.IPv4Unspecified()
	zero6        = netip.IPv6Unspecified()
)

// nonce makes every probe recognisable wherever it arrives.
var nonceCount atomic.Uint64

func newNonce() []byte {
	b := []byte("TBPOL\x00\x00\x00\x00\x00\x00\x00\x00\x00")
	binary.BigEndian.PutUint64(b[6:], nonceCount.Add(1))
	return b // 14 bytes: fits an ND nonce option
}

// probe is one frame and the nonce it carries.
type probe struct {
	name  string
	nonce []byte
	frame []byte
}

func checksum(b ...[]byte) uint16 {
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

func ether(dst, src net.HardwareAddr, etherType uint16, payload []byte) []byte {
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

// vlanTag inserts an 802.1Q (or 802.1ad) tag after the MAC addresses.
func vlanTag(frame []byte, tpid, vid uint16) []byte {
	f := append([]byte{}, frame[:12]...)
	f = binary.BigEndian.AppendUint16(f, tpid)
	f = binary.BigEndian.AppendUint16(f, vid)
	return append(f, frame[12:]...)
}

func ipv4(src, dst netip.Addr, proto byte, payload []byte) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	h[8] = 64
	h[9] = proto
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	binary.BigEndian.PutUint16(h[10:], checksum(h))
	return append(h, payload...)
}

func ipv6(src, dst netip.Addr, next, hops byte, payload []byte) []byte {
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

func udp(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	u := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	u = append(u, payload...)
	c := checksum(pseudo(src, dst, protoUDP, len(u)), u)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
	if src.Is4() {
		return ipv4(src, dst, protoUDP, u)
	}
	return ipv6(src, dst, protoUDP, 64, u)
}

func icmp6(src, dst netip.Addr, typ byte, body []byte) []byte {
	m := append([]byte{typ, 0, 0, 0}, body...)
	binary.BigEndian.PutUint16(m[2:], checksum(pseudo(src, dst, protoICMPv6, len(m)), m))
	return ipv6(src, dst, protoICMPv6, 255, m)
}

// ndNonce is an ND nonce option (RFC 3971) carrying the probe's nonce.
func ndNonce(n []byte) []byte { return append([]byte{14, 2}, n...) }

func solicitedNode(a netip.Addr) (netip.Addr, net.HardwareAddr) {
	b := a.As16()
	m := netip.AddrFrom16([16]byte{0xff, 0x02, 11: 1, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]})
	return m, net.HardwareAddr{0x33, 0x33, 0xff, b[13], b[14], b[15]}
}

// The probes. ethSrc is the frame's source MAC, the rest the packet's.

func udp4Probe(name string, ethSrc net.HardwareAddr, src, dst netip.Addr, sport, dport uint16) probe {
	n := newNonce()
	return probe{name, n, ether(broadcastMAC, ethSrc, etherIPv4, udp(src, dst, sport, dport, n))}
}

func udp6Probe(name string, ethSrc net.HardwareAddr, src, dst netip.Addr, sport, dport uint16) probe {
	n := newNonce()
	return probe{name, n, ether(allNodesMAC, ethSrc, etherIPv6, udp(src, dst, sport, dport, n))}
}

func arpProbe(name string, ethSrc, sha net.HardwareAddr, spa, tpa netip.Addr) probe {
	n := newNonce()
	a := []byte{0, 1, 0x08, 0x00, 6, 4, 0, 1}
	a = append(a, sha...)
	s, t := spa.As4(), tpa.As4()
	a = append(a, s[:]...)
	a = append(a, 0, 0, 0, 0, 0, 0)
	a = append(a, t[:]...)
	a = append(a, n...) // in the Ethernet padding
	return probe{name, n, ether(broadcastMAC, ethSrc, etherARP, a)}
}

// nsProbe is a neighbour solicitation for target; from :: it is DAD.
func nsProbe(name string, ethSrc net.HardwareAddr, src, target netip.Addr) probe {
	n := newNonce()
	t := target.As16()
	body := append(make([]byte, 4), t[:]...)
	body = append(body, ndNonce(n)...)
	dst, dstMAC := solicitedNode(target)
	return probe{name, n, ether(dstMAC, ethSrc, etherIPv6, icmp6(src, dst, icmp6NS, body))}
}

func naProbe(name string, ethSrc net.HardwareAddr, src, target netip.Addr) probe {
	n := newNonce()
	t := target.As16()
	body := append([]byte{0x20, 0, 0, 0}, t[:]...) // override
	body = append(body, ndNonce(n)...)
	return probe{name, n, ether(allNodesMAC, ethSrc, etherIPv6, icmp6(src, allNodes, icmp6NA, body))}
}

func raProbe(name string, ethSrc net.HardwareAddr, src netip.Addr) probe {
	n := newNonce()
	body := []byte{64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0} // hop limit 64, lifetime 1800 s
	body = append(body, ndNonce(n)...)
	return probe{name, n, ether(allNodesMAC, ethSrc, etherIPv6, icmp6(src, allNodes, icmp6RA, body))}
}

func rsProbe(name string, ethSrc net.HardwareAddr, src netip.Addr) probe {
	n := newNonce()
	body := append(make([]byte, 4), ndNonce(n)...)
	return probe{name, n, ether(net.HardwareAddr{0x33, 0x33, 0, 0, 0, 2}, ethSrc, etherIPv6, icmp6(src, allRouters, icmp6RS, body))}
}

func redirectProbe(name string, ethSrc net.HardwareAddr, src, target, dst netip.Addr) probe {
	n := newNonce()
	t, d := target.As16(), dst.As16()
	body := append(make([]byte, 4), t[:]...)
	body = append(body, d[:]...)
	body = append(body, ndNonce(n)...)
	return probe{name, n, ether(allNodesMAC, ethSrc, etherIPv6, icmp6(src, allNodes, icmp6Redirect, body))}
}

// psock is an AF_PACKET socket bound to one interface.
type psock struct {
	name string
	fd   int
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openPacket opens a packet socket on ifname in n; it is closed at cleanup.
func openPacket(t testing.TB, n ns.NetNS, ifname string) *psock {
	t.Helper()
	p := &psock{name: ifname}
	err := n.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		p.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.Attrs().Index}); err != nil {
			return err
		}
		tv := unix.NsecToTimeval((20 * time.Millisecond).Nanoseconds())
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		t.Fatalf("packet socket on %s: %v", ifname, err)
	}
	t.Cleanup(func() { unix.Close(p.fd) })
	return p
}

func (p *psock) send(t testing.TB, frame []byte) {
	t.Helper()
	if _, err := unix.Write(p.fd, frame); err != nil {
		t.Fatalf("sending on %s: %v", p.name, err)
	}
}

// read returns the frames received (not sent) within d.
func (p *psock) read(d time.Duration) [][]byte {
	var frames [][]byte
	buf := make([]byte, 4096)
	for end := time.Now().Add(d); time.Now().Before(end); {
		n, from, err := unix.Recvfrom(p.fd, buf, 0)
		if err != nil {
			continue // EAGAIN: the receive timeout
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		frames = append(frames, append([]byte(nil), buf[:n]...))
	}
	return frames
}

// deliver sends the probes and then marker from src, waits until marker
// reaches caps[0], and gives the rest 150 ms more (frames flooded by the
// bridge are handed to every port at once, so that is ample). It returns,
// per capture socket, the names of the probes that arrived.
func deliver(t *testing.T, src *psock, marker probe, probes []probe, caps ...*psock) []map[string]bool {
	t.Helper()
	for _, c := range caps { // stale frames
		for i := 0; i < 10 && len(c.read(30*time.Millisecond)) > 0; i++ {
		}
	}
	for _, p := range probes {
		src.send(t, p.frame)
	}
	src.send(t, marker.frame)

	got := make([]map[string]bool, len(caps))
	for i := range got {
		got[i] = map[string]bool{}
	}
	note := func(i int, frames [][]byte) bool {
		sawMarker := false
		for _, f := range frames {
			if bytes.Contains(f, marker.nonce) {
				sawMarker = true
			}
			for _, p := range probes {
				if bytes.Contains(f, p.nonce) {
					got[i][p.name] = true
				}
			}
		}
		return sawMarker
	}
	for end := time.Now().Add(3 * time.Second); ; {
		if note(0, caps[0].read(20*time.Millisecond)) {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("marker %q never reached %s: the path itself is broken", marker.name, caps[0].name)
		}
	}
	time.Sleep(150 * time.Millisecond)
	for i, c := range caps {
		note(i, c.read(40*time.Millisecond))
	}
	return got
}
