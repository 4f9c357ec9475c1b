package policy

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// record is what the nftables data of one port was made from: the part of
// its Spec that the filters use. It is kept with the port, as the comment
// of the port's element in the policies set, so that Remove and the next
// Filter know which elements to delete without listing whole sets (which
// would cost O(ports)), and so that `nft list set bridge tapbridge
// policies` shows every port's policy in words.
type record struct {
	MAC                               net.HardwareAddr
	IPs                               []netip.Addr
	MACCheck, IPCheck, DHCP, RA, BPDU bool

	corrupt bool // read back, but it did not parse
}

// maxComment is what fits the kernel's 256 bytes of element user data
// (NFT_USERDATA_MAXLEN) after libnftnl's type-length header and the
// comment's terminating NUL.
const maxComment = 250

func recordOf(s Spec) record {
	r := record{MAC: s.MAC, MACCheck: s.MACSpoofCheck, IPCheck: s.IPSpoofCheck, DHCP: s.DHCPGuard, RA: s.RAGuard, BPDU: s.BPDUGuard}
	seen := map[netip.Addr]bool{}
	for _, ip := range s.IPs {
		if ip = ip.Unmap(); !seen[ip] {
			seen[ip] = true
			r.IPs = append(r.IPs, ip)
		}
	}
	return r
}

// String is the record as its comment: "guards=mac,ip,dhcp,ra,bpdu
// mac=52:54:00:00:00:01 ips=192.0.2.10,2001:db8::10".
func (r record) String() string {
	var g []string
	for _, f := range []struct {
		on   bool
		name string
	}{{r.MACCheck, "mac"}, {r.IPCheck, "ip"}, {r.DHCP, "dhcp"}, {r.RA, "ra"}, {r.BPDU, "bpdu"}} {
		if f.on {
			g = append(g, f.name)
		}
	}
	s := "guards=" + strings.Join(g, ",")
	if r.MAC != nil {
		s += " mac=" + r.MAC.String()
	}
	if len(r.IPs) > 0 {
		ips := make([]string, len(r.IPs))
		for i, ip := range r.IPs {
			ips[i] = ip.String()
		}
		s += " ips=" + strings.Join(ips, ",")
	}
	return s
}

func parseRecord(s string) (record, error) {
	var r record
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "guards":
			for _, g := range strings.Split(v, ",") {
				switch g {
				case "mac":
					r.MACCheck = true
				case "ip":
					r.IPCheck = true
				case "dhcp":
					r.DHCP = true
				case "ra":
					r.RA = true
				case "bpdu":
					r.BPDU = true
				case "":
				default:
					return r, fmt.Errorf("unknown guard %q", g)
				}
			}
		case "mac":
			m, err := net.ParseMAC(v)
			if err != nil {
				return r, err
			}
			r.MAC = m
		case "ips":
			for _, a := range strings.Split(v, ",") {
				ip, err := netip.ParseAddr(a)
				if err != nil {
					return r, err
				}
				r.IPs = append(r.IPs, ip)
			}
		default:
			return r, fmt.Errorf("unknown field %q", k)
		}
	}
	return r, nil
}

// eui64 is the link-local address a guest derives from its MAC (modified
// EUI-64, RFC 4291 appendix A): fe80::, the MAC with the universal/local
// bit flipped and ff:fe in the middle.
func eui64(mac net.HardwareAddr) netip.Addr {
	return netip.AddrFrom16([16]byte{
		0: 0xfe, 1: 0x80,
		8: mac[0] ^ 0x02, 9: mac[1], 10: mac[2], 11: 0xff, 12: 0xfe, 13: mac[3], 14: mac[4], 15: mac[5],
	})
}
