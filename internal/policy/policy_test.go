package policy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/ifname"
	"github.com/tapbridge/tapbridge/internal/nstest"
	"github.com/tapbridge/tapbridge/internal/testkit"
	"github.com/tapbridge/tapbridge/test/frames"
)

var (
	vmMAC    = mustMAC("52:54:00:00:00:01")
	otherMAC = mustMAC("52:54:00:00:00:99")
	vmIP4    = netip.MustParseAddr("192.0.2.10")
	otherIP4 = netip.MustParseAddr("192.0.2.99")
	routerIP = netip.MustParseAddr("192.0.2.1")
	lanBcast = netip.MustParseAddr("192.0.2.255")
	vmIP6    = netip.MustParseAddr("2001:db8::10")
	otherIP6 = netip.MustParseAddr("2001:db8::99")
	vmLL     = netip.MustParseAddr("fe80::5054:ff:fe00:1")
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		spec    Spec
		wantErr string // substring; "" for valid
	}{
		{"zero", Spec{}, ""},
		{"everything", Spec{MAC: vmMAC, IPs: []netip.Addr{vmIP4, vmIP6}, MACSpoofCheck: true, IPSpoofCheck: true, DHCPGuard: true, RAGuard: true, Isolated: true, VLAN: 4094, BPDUGuard: true}, ""},
		{"MAC check without MAC", Spec{MACSpoofCheck: true}, "MACSpoofCheck needs the VM's MAC"},
		{"IP check without IPs", Spec{MAC: vmMAC, IPSpoofCheck: true}, "IPSpoofCheck needs the VM's addresses"},
		{"short MAC", Spec{MAC: net.HardwareAddr{1, 2, 3}}, "MAC"},
		{"multicast MAC", Spec{MAC: mustMAC("01:00:5e:00:00:01")}, "multicast"},
		{"zero MAC", Spec{MAC: make(net.HardwareAddr, 6)}, "all zeroes"},
		{"invalid IP", Spec{IPs: []netip.Addr{{}}}, "IPs"},
		{"unspecified IP", Spec{IPs: []netip.Addr{frames.Zero4}}, "0.0.0.0"},
		{"multicast IP", Spec{IPs: []netip.Addr{frames.AllNodes}}, "ff02::1"},
		{"zoned IP", Spec{IPs: []netip.Addr{vmLL.WithZone("eth0")}}, "zone"},
		{"VLAN too big", Spec{VLAN: 4095}, "VLAN 4095"},
		{"VLAN negative", Spec{VLAN: -1}, "VLAN -1"},
		{"too many addresses for the record", Spec{IPs: manyIPs(16)}, "IPs: 16 addresses do not fit"},
		{"as many addresses as fit", Spec{IPs: manyIPs(5)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want an ErrInvalid naming %q", err, tt.wantErr)
			}
		})
	}
}

// manyIPs returns n long IPv6 addresses.
func manyIPs(n int) []netip.Addr {
	var ips []netip.Addr
	for i := 0; i < n; i++ {
		ips = append(ips, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56, byte(i + 1)}))
	}
	return ips
}

// The lab: a "host" netns with bridge br0 holding port "rtr", whose peer is
// eth0 (192.0.2.1/24) in a "router" netns, and one veth pair per VM: NAME
// on br0 and NAME+"g", the VM's NIC, left in the test's hands.

func needRoot(t testing.TB) {
	testkit.NeedRoot(t, "builds bridges and nftables tables in throwaway network namespaces")
}

// in runs f in n with the OS thread locked; a non-nil error is fatal.
func in(t testing.TB, n ns.NetNS, f func() error) {
	t.Helper()
	if err := nstest.Do(n.Path(), f); err != nil {
		t.Fatal(err)
	}
}

type lab struct {
	host, router ns.NetNS
	br           *netlink.Bridge
}

func newLab(t testing.TB, vms ...string) *lab {
	t.Helper()
	needRoot(t)
	l := &lab{host: nstest.New(t), router: nstest.New(t)}
	in(t, l.host, func() error {
		la := netlink.NewLinkAttrs()
		la.Name = "br0"
		l.br = &netlink.Bridge{LinkAttrs: la}
		if err := netlink.LinkAdd(l.br); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(l.br); err != nil {
			return err
		}
		la = netlink.NewLinkAttrs()
		la.Name = "rtr"
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(l.router.Fd()))}); err != nil {
			return err
		}
		if err := addPort(l.br, "rtr"); err != nil {
			return err
		}
		for _, vm := range vms {
			la := netlink.NewLinkAttrs()
			la.Name = vm
			if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: vm + "g"}); err != nil {
				return err
			}
			if err := addPort(l.br, vm); err != nil {
				return err
			}
			if err := setUp(vm + "g"); err != nil {
				return err
			}
		}
		return nil
	})
	in(t, l.router, func() error {
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		addr, _ := netlink.ParseAddr("192.0.2.1/24")
		if err := netlink.AddrAdd(eth0, addr); err != nil {
			return err
		}
		return netlink.LinkSetUp(eth0)
	})
	return l
}

func addPort(br *netlink.Bridge, name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetMaster(link, br); err != nil {
		return err
	}
	return netlink.LinkSetUp(link)
}

func setUp(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(link)
}

func (l *lab) apply(t testing.TB, port string, s Spec) {
	t.Helper()
	in(t, l.host, func() error { return Apply(port, s) })
}

func (l *lab) ports(t testing.TB) []string {
	t.Helper()
	var ports []string
	in(t, l.host, func() (err error) { ports, err = Ports(); return err })
	return ports
}

// nft returns an nftables connection to the lab's host netns, for looking.
func (l *lab) nft(t testing.TB) *nftables.Conn {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(l.host.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ruleset is `nft list ruleset` in the host netns, for failure messages.
func (l *lab) ruleset() string {
	out, err := exec.Command("nsenter", "--net="+l.host.Path(), "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(nft list ruleset: %v: %s)", err, out)
	}
	return string(out)
}

// The probes a VM with vmMAC, vmIP4, vmIP6 and vmLL sends; fresh nonces on
// every call.
func vmProbes() []frames.Probe {
	own := frames.UDP4Probe("own IPv4", vmMAC, vmIP4, lanBcast, 1000, 2000)
	spoofedPayload := frames.UDP4Probe("tagged, spoofed IPv4", vmMAC, otherIP4, lanBcast, 1000, 2000)
	taggedOwn := frames.UDP4Probe("tagged, own IPv4", vmMAC, vmIP4, lanBcast, 1000, 2000)
	doubleTagged := frames.UDP4Probe("double-tagged, own IPv4", vmMAC, vmIP4, lanBcast, 1000, 2000)
	innerAD := frames.UDP4Probe("802.1ad inside 802.1Q, own IPv4", vmMAC, vmIP4, lanBcast, 1000, 2000)
	taggedOffer := frames.DHCPOfferProbe("double-tagged DHCP offer", vmMAC, vmIP4, otherIP4, otherMAC, 0x7b0a0100)
	raFrag, raFrag2 := frames.RAFragmentProbes("RA, ICMPv6 header in the second fragment", vmMAC, vmLL, 0x7b0a)
	routerLL := netip.MustParseAddr("fe80::1")
	return []frames.Probe{
		own,
		frames.UDP4Probe("spoofed MAC", otherMAC, vmIP4, lanBcast, 1000, 2000),
		frames.UDP4Probe("spoofed IPv4", vmMAC, otherIP4, lanBcast, 1000, 2000),
		frames.ARPProbe("ARP own", vmMAC, vmMAC, vmIP4, routerIP),
		frames.ARPProbe("ARP probe from 0.0.0.0", vmMAC, vmMAC, frames.Zero4, vmIP4),
		frames.ARPProbe("ARP claiming another IP", vmMAC, vmMAC, otherIP4, routerIP),
		frames.ARPProbe("ARP with another sender MAC", vmMAC, otherMAC, vmIP4, routerIP),
		frames.DHCPDiscoverProbe("DHCP discover from 0.0.0.0", vmMAC, 0x7b0a0101),
		frames.DHCPDiscoverProbeFor("DHCP discover for another chaddr", vmMAC, otherMAC, 0x7b0a0102),
		frames.FirstFragment4("fragmented DHCP discover (first fragment)", frames.DHCPDiscoverProbe("", vmMAC, 0x7b0a0103), 24),
		frames.UDP4Probe("UDP from 0.0.0.0", vmMAC, frames.Zero4, frames.V4Broadcast, 1000, 2000),
		frames.UDP4Probe("DHCP offer", vmMAC, vmIP4, frames.V4Broadcast, 67, 68),
		frames.DHCPOfferProbeFrom("DHCP offer from port 6767", vmMAC, vmIP4, 6767, otherIP4, otherMAC, 0x7b0a0104),
		frames.UDPProbeWith("BOOTREPLY to a relay's port 67", vmMAC, vmIP4, frames.V4Broadcast, 67, 67, []byte{2}),
		frames.UDP6Probe("own IPv6", vmMAC, vmIP6, frames.AllNodes, 1000, 2000),
		frames.UDP6Probe("spoofed IPv6", vmMAC, otherIP6, frames.AllNodes, 1000, 2000),
		frames.UDP6Probe("link-local IPv6", vmMAC, vmLL, frames.AllNodes, 1000, 2000),
		frames.UDP6Probe("another link-local IPv6", vmMAC, netip.MustParseAddr("fe80::99"), frames.AllNodes, 1000, 2000),
		frames.UDP6Probe("UDP from ::", vmMAC, frames.Zero6, frames.AllNodes, 1000, 2000),
		frames.NSProbe("DAD for own address", vmMAC, frames.Zero6, vmIP6),
		frames.NSProbe("DAD for link-local", vmMAC, frames.Zero6, vmLL),
		frames.NSProbe("DAD for another address", vmMAC, frames.Zero6, otherIP6),
		frames.NSProbe("NS for the router", vmMAC, vmLL, netip.MustParseAddr("2001:db8::1")),
		frames.NSProbe("NS from another link-local", vmMAC, netip.MustParseAddr("fe80::99"), netip.MustParseAddr("2001:db8::1")),
		frames.NSProbeLL("NS with another's SLLA", vmMAC, vmLL, netip.MustParseAddr("2001:db8::1"), otherMAC),
		frames.NAProbe("NA for own address", vmMAC, vmLL, vmIP6),
		frames.NAProbeLL("NA for own address without TLLA", vmMAC, vmLL, vmIP6, nil),
		frames.NAProbeLL("NA for own address with another's TLLA", vmMAC, vmLL, vmIP6, otherMAC),
		frames.NAProbe("NA for another address", vmMAC, vmLL, otherIP6),
		frames.NAProbe("NA for the router's link-local", vmMAC, vmLL, routerLL),
		frames.RSProbe("RS from ::", vmMAC, frames.Zero6),
		frames.RSProbe("RS from own link-local", vmMAC, vmLL),
		frames.RAProbe("RA", vmMAC, vmLL),
		raFrag,
		raFrag2, // judged by its first fragment
		frames.FirstFragment6("fragmented ping (first fragment)", frames.EchoRequest6Probe("", vmMAC, vmIP6, 1600), 1232),
		frames.FirstFragment6("fragmented DHCPv6 solicit (first fragment)", frames.UDP6Probe("", vmMAC, vmLL, frames.DHCP6Servers, 546, 547), 8),
		frames.RedirectProbe("redirect", vmMAC, vmLL, routerLL, otherIP6),
		frames.UDP6Probe("DHCPv6 solicit", vmMAC, vmLL, frames.DHCP6Servers, 546, 547),
		frames.UDP6Probe("DHCPv6 advertise", vmMAC, vmLL, frames.AllNodes, 547, 546),
		frames.UDPProbeWith("DHCPv6 advertise from port 5000", vmMAC, vmLL, frames.AllNodes, 5000, 546, []byte{2}),
		frames.UDPProbeWith("DHCPv6 relay-reply to port 547", vmMAC, vmLL, frames.DHCP6Servers, 547, 547, []byte{13}),
		frames.BPDUProbe("BPDU root priority 0", vmMAC, 0),
		taggedOwn.Tagged(frames.Ether8021Q, 5),
		spoofedPayload.Tagged(frames.Ether8021Q, 5),
		doubleTagged.Tagged(frames.Ether8021Q, 6).Tagged(frames.Ether8021AD, 5),
		innerAD.Tagged(frames.Ether8021AD, 6).Tagged(frames.Ether8021Q, 5),
		taggedOffer.Tagged(frames.Ether8021Q, 6).Tagged(frames.Ether8021AD, 5),
	}
}

// TestFilters sends every kind of frame a VM might send under each policy
// and checks which reach the router and another VM's port.
func TestFilters(t *testing.T) {
	l := newLab(t, "vm1", "vm2")
	vm1g := openPacket(t, l.host, "vm1g")
	vm2g := openPacket(t, l.host, "vm2g")
	rtr := openPacket(t, l.router, "eth0")

	// What every guard drops: tags and fragments that hide a frame.
	anyDrops := []string{
		"tagged, own IPv4", "tagged, spoofed IPv4", "double-tagged, own IPv4", "802.1ad inside 802.1Q, own IPv4",
		"double-tagged DHCP offer", "fragmented DHCP discover (first fragment)", "RA, ICMPv6 header in the second fragment (first fragment)",
		"fragmented DHCPv6 solicit (first fragment)",
	}
	macDrops := []string{"spoofed MAC"}
	// Every message to port 67 must name the VM's MAC as chaddr.
	chaddrDrops := []string{"DHCP discover for another chaddr", "BOOTREPLY to a relay's port 67"}
	ipDrops := []string{
		"spoofed IPv4", "ARP claiming another IP", "ARP with another sender MAC", "UDP from 0.0.0.0",
		"spoofed IPv6", "another link-local IPv6", "UDP from ::", "DAD for another address",
		"NA for another address", "NA for the router's link-local", "NS from another link-local",
		"NS with another's SLLA", "NA for own address with another's TLLA",
	}
	dhcpDrops := []string{"DHCP offer", "DHCP offer from port 6767", "BOOTREPLY to a relay's port 67", "DHCPv6 advertise", "DHCPv6 advertise from port 5000", "DHCPv6 relay-reply to port 547"}
	raDrops := []string{"RA", "redirect"}
	bpduDrops := []string{"BPDU root priority 0"}
	all := Spec{MAC: vmMAC, IPs: []netip.Addr{vmIP4, vmIP6}, MACSpoofCheck: true, IPSpoofCheck: true, DHCPGuard: true, RAGuard: true, BPDUGuard: true}
	// Without the MAC, the VM's link-local address is unknown and ND
	// options cannot be checked: fail-closed.
	ndWithOption := []string{"NS for the router", "NA for own address", "RS from own link-local"}
	fromLL := []string{
		"link-local IPv6", "DAD for link-local", "NA for own address without TLLA", "RA", "redirect",
		"DHCPv6 solicit", "DHCPv6 advertise", "DHCPv6 advertise from port 5000", "DHCPv6 relay-reply to port 547",
		"RA, ICMPv6 header in the second fragment (second fragment)",
	}
	macUnknown := concatNames(without(ipDrops, "ARP with another sender MAC"), ndWithOption)

	tests := []struct {
		name  string
		spec  Spec
		drops []string
	}{
		// First, so that no earlier case let the spoofed MAC be learned.
		{"all checks", all, concatNames(anyDrops, macDrops, chaddrDrops, ipDrops, dhcpDrops, raDrops, bpduDrops)},
		{"no filtering", Spec{MAC: vmMAC, IPs: all.IPs, Isolated: false}, nil},
		{"MAC spoof check", Spec{MAC: vmMAC, MACSpoofCheck: true}, concatNames(anyDrops, macDrops, chaddrDrops)},
		{"IP spoof check", Spec{MAC: vmMAC, IPs: all.IPs, IPSpoofCheck: true}, concatNames(anyDrops, ipDrops, chaddrDrops)},
		{"IP spoof check, MAC unknown", Spec{IPs: all.IPs, IPSpoofCheck: true}, concatNames(anyDrops, macUnknown, fromLL)},
		{"IP spoof check, MAC unknown, link-local given", Spec{IPs: append([]netip.Addr{vmLL}, all.IPs...), IPSpoofCheck: true},
			concatNames(anyDrops, macUnknown)},
		{"IP spoof check, IPv4 only", Spec{MAC: vmMAC, IPs: []netip.Addr{vmIP4}, IPSpoofCheck: true},
			concatNames(anyDrops, ipDrops, chaddrDrops, []string{"own IPv6", "DAD for own address", "NA for own address", "NA for own address without TLLA", "fragmented ping (first fragment)"})},
		{"IP spoof check, two addresses each", Spec{MAC: vmMAC, IPs: []netip.Addr{netip.MustParseAddr("198.51.100.7"), vmIP4, vmIP6, netip.MustParseAddr("2001:db8::77")}, IPSpoofCheck: true}, concatNames(anyDrops, ipDrops, chaddrDrops)},
		{"DHCP guard", Spec{DHCPGuard: true}, concatNames(anyDrops, dhcpDrops)},
		{"RA guard", Spec{RAGuard: true}, concatNames(anyDrops, raDrops)},
		{"BPDU guard", Spec{BPDUGuard: true}, concatNames(anyDrops, bpduDrops)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l.apply(t, "vm1", tt.spec)
			drop := map[string]bool{}
			for _, d := range tt.drops {
				drop[d] = true
			}
			probes := vmProbes()
			for _, p := range probes {
				delete(drop, p.Name)
			}
			if len(drop) > 0 {
				t.Fatalf("test names unknown probes: %v", drop)
			}
			for _, d := range tt.drops {
				drop[d] = true
			}
			marker := frames.UDP4Probe("marker", vmMAC, vmIP4, lanBcast, 1000, 2000)
			got := frames.Deliver(t, vm1g, marker, probes, rtr, vm2g)
			for _, p := range probes {
				want := !drop[p.Name]
				for i, where := range []string{"router", "vm2"} {
					if got[i][p.Name] != want {
						t.Errorf("%s: reached %s = %t, want %t", p.Name, where, got[i][p.Name], want)
					}
				}
			}
			if t.Failed() {
				t.Logf("ruleset:\n%s", l.ruleset())
			}
			wantPorts := []string{"vm1"}
			if !tt.spec.filters() {
				wantPorts = nil
			}
			if diff := cmp.Diff(wantPorts, l.ports(t)); diff != "" {
				t.Errorf("Ports() (-want +got):\n%s", diff)
			}
			if tt.name == "all checks" {
				// A dropped frame never reached the bridge's learning:
				// the spoofed MAC does not point at vm1.
				in(t, l.host, func() error {
					vm1, err := netlink.LinkByName("vm1")
					if err != nil {
						return err
					}
					fdb, err := netlink.NeighList(vm1.Attrs().Index, unix.AF_BRIDGE)
					for _, n := range fdb {
						if n.HardwareAddr.String() == otherMAC.String() {
							t.Errorf("bridge learned the spoofed MAC %s on vm1", otherMAC)
						}
					}
					return err
				})
			}
		})
	}
}

func concatNames(lists ...[]string) []string {
	var all []string
	for _, l := range lists {
		all = append(all, l...)
	}
	return all
}

func without(list []string, drop string) []string {
	var out []string
	for _, s := range list {
		if s != drop {
			out = append(out, s)
		}
	}
	return out
}

// TestDHCPGuardBetweenVMs: a rogue DHCP server on one VM reaches neither the
// router nor another VM, and the real one (the router) still reaches VMs.
func TestDHCPGuardBetweenVMs(t *testing.T) {
	l := newLab(t, "vm1", "vm2")
	l.apply(t, "vm1", Spec{DHCPGuard: true, RAGuard: true})
	l.apply(t, "vm2", Spec{DHCPGuard: true, RAGuard: true})
	vm1g := openPacket(t, l.host, "vm1g")
	vm2g := openPacket(t, l.host, "vm2g")
	rtr := openPacket(t, l.router, "eth0")

	offer := frames.UDP4Probe("offer", vmMAC, vmIP4, frames.V4Broadcast, 67, 68)
	ra := frames.RAProbe("RA", vmMAC, vmLL)
	got := frames.Deliver(t, vm1g, frames.UDP4Probe("marker", vmMAC, vmIP4, lanBcast, 1, 2), []frames.Probe{offer, ra}, rtr, vm2g)
	for i, where := range []string{"router", "vm2"} {
		for _, p := range []string{"offer", "RA"} {
			if got[i][p] {
				t.Errorf("a VM's %s reached %s", p, where)
			}
		}
	}

	routerMAC := mustMAC("02:00:00:00:00:01")
	realOffer := frames.UDP4Probe("router's offer", routerMAC, routerIP, frames.V4Broadcast, 67, 68)
	realRA := frames.RAProbe("router's RA", routerMAC, netip.MustParseAddr("fe80::1"))
	got = frames.Deliver(t, rtr, frames.UDP4Probe("marker", routerMAC, routerIP, lanBcast, 1, 2), []frames.Probe{realOffer, realRA}, vm1g, vm2g)
	for i, where := range []string{"vm1", "vm2"} {
		for _, p := range []string{"router's offer", "router's RA"} {
			if !got[i][p] {
				t.Errorf("the %s did not reach %s", p, where)
			}
		}
	}
}

// TestIsolation: isolated ports cannot exchange frames, but both reach the
// router, and a non-isolated VM port.
func TestIsolation(t *testing.T) {
	l := newLab(t, "vm1", "vm2", "vm3")
	l.apply(t, "vm1", Spec{Isolated: true})
	l.apply(t, "vm2", Spec{Isolated: true})
	l.apply(t, "vm3", Spec{})
	vm1g := openPacket(t, l.host, "vm1g")
	vm2g := openPacket(t, l.host, "vm2g")
	vm3g := openPacket(t, l.host, "vm3g")
	rtr := openPacket(t, l.router, "eth0")
	mac2 := mustMAC("52:54:00:00:00:02")

	type want struct{ router, peer, open bool }
	check := func(t *testing.T, src, peer *frames.Socket, mac net.HardwareAddr, w want) {
		t.Helper()
		p := frames.UDP4Probe("frame", mac, vmIP4, lanBcast, 1000, 2000)
		got := frames.Deliver(t, src, frames.UDP4Probe("marker", mac, vmIP4, lanBcast, 1, 2), []frames.Probe{p}, rtr, peer, vm3g)
		if got[0]["frame"] != w.router || got[1]["frame"] != w.peer || got[2]["frame"] != w.open {
			t.Errorf("from %s: reached router %t, %s %t, vm3 %t; want %t, %t, %t",
				src.Name(), got[0]["frame"], peer.Name(), got[1]["frame"], got[2]["frame"], w.router, w.peer, w.open)
		}
	}
	check(t, vm1g, vm2g, vmMAC, want{router: true, peer: false, open: true})
	check(t, vm2g, vm1g, mac2, want{router: true, peer: false, open: true})

	routerMAC := mustMAC("02:00:00:00:00:01")
	p := frames.UDP4Probe("from router", routerMAC, routerIP, lanBcast, 1000, 2000)
	got := frames.Deliver(t, rtr, frames.UDP4Probe("marker", routerMAC, routerIP, lanBcast, 1, 2), []frames.Probe{p}, vm1g, vm2g)
	if !got[0]["from router"] || !got[1]["from router"] {
		t.Errorf("router to isolated VMs: vm1 %t, vm2 %t, want both", got[0]["from router"], got[1]["from router"])
	}

	// Apply replaces: vm1 no longer isolated can reach vm2 again.
	l.apply(t, "vm1", Spec{})
	check(t, vm1g, vm2g, vmMAC, want{router: true, peer: true, open: true})
	if pi := protinfo(t, l, "vm2"); !pi.Isolated {
		t.Errorf("vm2 protinfo %s, want isolated", pi.String())
	}
	if pi := protinfo(t, l, "vm1"); pi.Isolated {
		t.Errorf("vm1 protinfo %s, want not isolated", pi.String())
	}
}

func protinfo(t testing.TB, l *lab, port string) netlink.Protinfo {
	t.Helper()
	var pi netlink.Protinfo
	in(t, l.host, func() error {
		link, err := netlink.LinkByName(port)
		if err != nil {
			return err
		}
		pi, err = netlink.LinkGetProtinfo(link)
		return err
	})
	return pi
}

// TestBPDUGuard: with the kernel's STP on, a BPDU from a guarded VM port
// disables the port; an unguarded port stays.
func TestBPDUGuard(t *testing.T) {
	l := newLab(t, "vm1", "vm2")
	l.apply(t, "vm1", Spec{BPDUGuard: true})
	l.apply(t, "vm2", Spec{})
	if pi := protinfo(t, l, "vm1"); !pi.Guard || !pi.RootBlock {
		t.Fatalf("vm1 protinfo %s, want guard and root_block", pi.String())
	}
	in(t, l.host, func() error { return setSTP(l.br.Attrs().Index, true) })

	// A configuration BPDU: 802.3 length, LLC 42 42 03, then protocol 0,
	// version 0, type 0 and 31 bytes of body.
	bpdu := append([]byte{0x42, 0x42, 0x03, 0, 0, 0, 0}, make([]byte, 31)...)
	frame := append(append(mustMAC("01:80:c2:00:00:00"), vmMAC...), 0, byte(len(bpdu)))
	frame = append(frame, bpdu...)
	for len(frame) < 60 {
		frame = append(frame, 0)
	}
	openPacket(t, l.host, "vm1g").Send(t, frame)
	openPacket(t, l.host, "vm2g").Send(t, frame)

	deadline := time.Now().Add(2 * time.Second)
	for portState(t, l, "vm1") != brStateDisabled && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if s := portState(t, l, "vm1"); s != brStateDisabled {
		t.Errorf("guarded vm1 after a BPDU: state %d, want disabled (%d)", s, brStateDisabled)
	}
	if s := portState(t, l, "vm2"); s == brStateDisabled {
		t.Errorf("unguarded vm2 after a BPDU: disabled")
	}
	l.apply(t, "vm1", Spec{})
	if pi := protinfo(t, l, "vm1"); pi.Guard || pi.RootBlock {
		t.Errorf("vm1 protinfo %s after Apply(Spec{}), want no guard, no root_block", pi.String())
	}
}

const brStateDisabled = 0 // BR_STATE_DISABLED

// setSTP turns the kernel's STP on or off on a bridge (IFLA_BR_STP_STATE,
// which package netlink does not offer).
func setSTP(index int, on bool) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	var v uint32
	if on {
		v = 1
	}
	data.AddRtAttr(nl.IFLA_BR_STP_STATE, nl.Uint32Attr(v))
	req.AddData(info)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// portState reads a bridge port's STP state (IFLA_BRPORT_STATE).
func portState(t testing.TB, l *lab, port string) int {
	t.Helper()
	state := -1
	in(t, l.host, func() error {
		link, err := netlink.LinkByName(port)
		if err != nil {
			return err
		}
		req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
		req.AddData(nl.NewIfInfomsg(unix.AF_BRIDGE))
		msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return err
		}
		for _, m := range msgs {
			ifi := nl.DeserializeIfInfomsg(m)
			if int(ifi.Index) != link.Attrs().Index {
				continue
			}
			attrs, err := nl.ParseRouteAttr(m[ifi.Len():])
			if err != nil {
				return err
			}
			for _, a := range attrs {
				if a.Attr.Type&^unix.NLA_F_NESTED != unix.IFLA_PROTINFO {
					continue
				}
				nested, err := nl.ParseRouteAttr(a.Value)
				if err != nil {
					return err
				}
				for _, n := range nested {
					if n.Attr.Type == nl.IFLA_BRPORT_STATE {
						state = int(n.Value[0])
					}
				}
			}
		}
		return nil
	})
	return state
}

// TestVLAN: a VLAN 10 port reaches the router's VLAN 10 subinterface and not
// its untagged address; the bridge and the uplink keep untagged VLAN 1.
func TestVLAN(t *testing.T) {
	l := newLab(t, "vm1")
	var err error
	in(t, l.host, func() error { err = EnsureUplinkVLANs("br0", "rtr", []int{10}); return nil })
	if errors.Is(err, ErrVLANUnsupported) {
		t.Skipf("kernel without bridge VLAN filtering: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	in(t, l.router, func() error {
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		la := netlink.NewLinkAttrs()
		la.Name, la.ParentIndex = "eth0.10", eth0.Attrs().Index
		if err := netlink.LinkAdd(&netlink.Vlan{LinkAttrs: la, VlanId: 10}); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) {
				t.Skipf("kernel without 802.1Q VLAN devices for the router: %v", err)
			}
			return err
		}
		vlan, err := netlink.LinkByName("eth0.10")
		if err != nil {
			return err
		}
		addr, _ := netlink.ParseAddr("198.51.100.1/24")
		if err := netlink.AddrAdd(vlan, addr); err != nil {
			return err
		}
		// Linux answers ARP for any of its addresses on any interface
		// unless told not to: the untagged address must not answer on
		// eth0.10, or the test would see a leak that is not there.
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/all/arp_ignore", []byte("1"), 0o644); err != nil {
			return err
		}
		return netlink.LinkSetUp(vlan)
	})
	// Idempotent.
	in(t, l.host, func() error { return EnsureUplinkVLANs("br0", "rtr", []int{10}) })

	vm1g := openPacket(t, l.host, "vm1g")
	vlanIP := netip.MustParseAddr("198.51.100.10")
	// answered reports whether an ARP request for target from the VM gets
	// an answer.
	answered := func(spa, target netip.Addr) bool {
		vm1g.Read(50 * time.Millisecond)
		vm1g.Send(t, frames.ARPProbe("who-has", vmMAC, vmMAC, spa, target).Frame)
		for _, f := range vm1g.Read(time.Second) {
			if frames.IsARPReply(f, target) {
				return true
			}
		}
		return false
	}

	l.apply(t, "vm1", Spec{VLAN: 10})
	if !answered(vlanIP, netip.MustParseAddr("198.51.100.1")) {
		t.Errorf("VLAN 10 port: no answer from the router's VLAN 10 address")
	}
	if answered(vmIP4, routerIP) {
		t.Errorf("VLAN 10 port: the router's untagged address answered")
	}
	var vlans map[int32][]*nl.BridgeVlanInfo
	in(t, l.host, func() (err error) { vlans, err = netlink.BridgeVlanList(); return err })
	show := func(name string) string {
		var s []string
		in(t, l.host, func() error {
			link, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			for _, v := range vlans[int32(link.Attrs().Index)] {
				s = append(s, fmt.Sprintf("%d pvid=%t untagged=%t", v.Vid, v.PortVID(), v.EngressUntag()))
			}
			return nil
		})
		sort.Strings(s)
		return strings.Join(s, ", ")
	}
	for name, want := range map[string]string{
		"vm1": "10 pvid=true untagged=true",
		"br0": "1 pvid=true untagged=true",
		"rtr": "1 pvid=true untagged=true, 10 pvid=false untagged=false",
	} {
		if got := show(name); got != want {
			t.Errorf("VLANs of %s: %q, want %q", name, got, want)
		}
	}

	// Back to no VLAN: the untagged LAN again.
	l.apply(t, "vm1", Spec{})
	if !answered(vmIP4, routerIP) {
		t.Errorf("untagged port: no answer from the router's untagged address")
	}
}

// TestApplyErrors: what Apply refuses, with errors naming the port, and
// that a refused Apply leaves nothing behind.
func TestApplyErrors(t *testing.T) {
	l := newLab(t, "vm1")
	tests := []struct {
		name, port string
		spec       Spec
		is         error
		says       string
	}{
		{"no such port", "nope", Spec{DHCPGuard: true}, ErrNoPort, `port "nope"`},
		{"not on a bridge", "vm1g", Spec{DHCPGuard: true}, ErrNotBridgePort, `port "vm1g"`},
		{"invalid spec", "vm1", Spec{MACSpoofCheck: true}, ErrInvalid, `port "vm1": invalid port policy: MACSpoofCheck needs the VM's MAC`},
		{"VLAN without vlan_filtering", "vm1", Spec{VLAN: 10, DHCPGuard: true}, ErrVLANFilteringOff, `port "vm1": VLAN 10 on bridge "br0"`},
		{"invalid name", "a/b", Spec{}, ifname.ErrInvalid, `port "a/b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			in(t, l.host, func() error { err = Apply(tt.port, tt.spec); return nil })
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("Apply(%q) = %v, want %v saying %q", tt.port, err, tt.is, tt.says)
			}
			if p := l.ports(t); len(p) != 0 {
				t.Errorf("a refused Apply left chains for %v", p)
			}
		})
	}
}

// listing is what the kernel holds of the table: chains with their rule
// counts, and per set the ports it has elements of (the first 16 bytes of
// a key are a port's name), with how many.
type listing struct {
	Chains   map[string]int
	Elements map[string]map[string]int
}

func (l *lab) list(t testing.TB) listing {
	t.Helper()
	c := l.nft(t)
	got := listing{Chains: map[string]int{}, Elements: map[string]map[string]int{}}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyBridge)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range chains {
		if ch.Table.Name != tableName {
			continue
		}
		rules, err := c.GetRules(table, ch)
		if err != nil {
			t.Fatal(err)
		}
		got.Chains[ch.Name] = len(rules)
	}
	sets, err := c.GetSets(table)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sets {
		if s.Anonymous || strings.HasPrefix(s.Name, "__") {
			continue // the constant dispatch map of chain vm
		}
		elems, err := c.GetSetElements(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range elems {
			if got.Elements[s.Name] == nil {
				got.Elements[s.Name] = map[string]int{}
			}
			got.Elements[s.Name][strings.TrimRight(string(e.Key[:16]), "\x00")]++
		}
	}
	return got
}

// onlyOf returns the elements of port in l, per set.
func (g listing) onlyOf(port string) map[string]int {
	out := map[string]int{}
	for set, m := range g.Elements {
		if m[port] > 0 {
			out[set] = m[port]
		}
	}
	return out
}

// TestApplyRemove: the ruleset is fixed: Apply adds elements of the shared
// sets only, the same number for every port with the same kind of policy,
// and replaces them when run again; Remove takes exactly them away, twice
// if asked, and the port's frames then pass unfiltered. An element that
// went missing by hand does not stop Remove.
func TestApplyRemove(t *testing.T) {
	l := newLab(t, "vm1", "vm2", "vm3")
	s := Spec{MAC: vmMAC, IPs: []netip.Addr{vmIP4, netip.MustParseAddr("198.51.100.7"), vmIP6}, MACSpoofCheck: true, IPSpoofCheck: true, DHCPGuard: true, RAGuard: true, BPDUGuard: true}
	s2 := s
	s2.MAC = mustMAC("52:54:00:00:00:02")

	in(t, l.host, func() error { return Remove("vm1") }) // no table yet
	l.apply(t, "vm1", s)
	one := l.list(t)
	l.apply(t, "vm1", s) // again: adds nothing
	if diff := cmp.Diff(one, l.list(t)); diff != "" {
		t.Errorf("second Apply changed the table (-first +second):\n%s", diff)
	}
	// The sets hold: policies, the five guards' and chaddr_check's and
	// has_mac's memberships, the MAC, two IPv4 addresses, the IPv6 address
	// and the EUI-64 link-local one, the same addresses with the MAC for
	// the fast path, and a counter per guard.
	wantVM1 := map[string]int{
		"policies": 1, "spoof_check": 1, "mac_check": 1, "ip_check": 1, "dhcp_guard": 1, "ra_guard": 1, "bpdu_guard": 1,
		"chaddr_check": 1, "has_mac": 1, "port_mac": 1, "port_ip4": 2, "port_ip6": 2, "fast4": 2, "fast6": 2, "drops": 9,
	}
	if diff := cmp.Diff(wantVM1, one.onlyOf("vm1")); diff != "" {
		t.Fatalf("elements of vm1 after Apply (-want +got):\n%s\n%s", diff, l.ruleset())
	}
	chains := one.Chains

	l.apply(t, "vm2", s2)
	l.apply(t, "vm3", Spec{Isolated: true}) // no guard: no elements
	got := l.list(t)
	if diff := cmp.Diff(chains, got.Chains); diff != "" {
		t.Errorf("Apply(vm2) changed the chains (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(wantVM1, got.onlyOf("vm2")); diff != "" {
		t.Errorf("elements of vm2 (-want +got):\n%s", diff)
	}
	if n := len(got.onlyOf("vm3")); n != 0 {
		t.Errorf("vm3 without guards has elements in %d sets", n)
	}
	if diff := cmp.Diff([]string{"vm1", "vm2"}, l.ports(t)); diff != "" {
		t.Errorf("Ports() (-want +got):\n%s", diff)
	}

	// A narrower policy replaces the wider one: its elements go.
	l.apply(t, "vm1", Spec{MAC: vmMAC, MACSpoofCheck: true})
	if diff := cmp.Diff(map[string]int{"policies": 1, "spoof_check": 1, "mac_check": 1, "chaddr_check": 1, "has_mac": 1, "port_mac": 1, "drops": 9}, l.list(t).onlyOf("vm1")); diff != "" {
		t.Errorf("elements of vm1 after a narrower Apply (-want +got):\n%s", diff)
	}

	for i := 0; i < 2; i++ {
		in(t, l.host, func() error { return Remove("vm1") })
	}
	got = l.list(t)
	if left := got.onlyOf("vm1"); len(left) != 0 {
		t.Fatalf("after Remove(vm1) twice, vm1 still has elements: %v", left)
	}
	if diff := cmp.Diff(wantVM1, got.onlyOf("vm2")); diff != "" {
		t.Errorf("Remove(vm1) touched vm2 (-want +got):\n%s", diff)
	}
	in(t, l.host, func() error { return Remove("never-applied") })

	// vm1 is unfiltered again, vm2 still filtered.
	vm1g, vm2g := openPacket(t, l.host, "vm1g"), openPacket(t, l.host, "vm2g")
	rtr := openPacket(t, l.router, "eth0")
	for _, tc := range []struct {
		src  *frames.Socket
		mac  net.HardwareAddr
		pass bool
	}{{vm1g, vmMAC, true}, {vm2g, s2.MAC, false}} {
		p := frames.UDP4Probe("spoofed", otherMAC, otherIP4, lanBcast, 1000, 2000)
		got := frames.Deliver(t, tc.src, frames.UDP4Probe("marker", tc.mac, vmIP4, lanBcast, 1, 2), []frames.Probe{p}, rtr)
		if got[0]["spoofed"] != tc.pass {
			t.Errorf("spoofed frame from %s reached the router: %t, want %t", tc.src.Name(), got[0]["spoofed"], tc.pass)
		}
	}

	// An element deleted by hand (the MAC of vm2) does not stop Remove,
	// nor a new Apply.
	c := l.nft(t)
	key := append(ifKey("vm2"), s2.MAC...)
	if err := c.SetDeleteElements(&nftables.Set{Table: table, Name: setPortMAC}, []nftables.SetElement{{Key: append(key, 0, 0)}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	in(t, l.host, func() error { return Remove("vm2") })
	l.apply(t, "vm1", s)
	if err := c.SetDeleteElements(&nftables.Set{Table: table, Name: setDHCP}, []nftables.SetElement{{Key: ifKey("vm1")}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	l.apply(t, "vm1", Spec{MAC: vmMAC, MACSpoofCheck: true})
	// Apply without guards removes too; the table's chains stay.
	l.apply(t, "vm1", Spec{})
	// A record edited by hand: Remove still takes away the port from
	// policies and every set keyed by its name alone.
	l.apply(t, "vm1", s)
	pol := &nftables.Set{Table: table, Name: setPolicies, KeyType: nftables.TypeIFName}
	if err := c.SetDeleteElements(pol, []nftables.SetElement{{Key: ifKey("vm1")}}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetAddElements(pol, []nftables.SetElement{{Key: ifKey("vm1"), Comment: "edited by hand"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	in(t, l.host, func() error { return Remove("vm1") })
	left := l.list(t).onlyOf("vm1")
	for _, set := range []string{setPolicies, setSpoof, setMACCheck, setIPCheck, setDHCP, setRA, setBPDU, setChaddr, setHasMAC, setDrops} {
		if left[set] != 0 {
			t.Errorf("after Remove with an edited record, vm1 still in %s", set)
		}
		delete(left, set)
	}
	// What only the record could name stays, and is never looked at.
	if diff := cmp.Diff(map[string]int{"port_mac": 1, "port_ip4": 2, "port_ip6": 2, "fast4": 2, "fast6": 2}, left); diff != "" {
		t.Errorf("after Remove with an edited record (-want +got):\n%s", diff)
	}
	c = l.nft(t)
	for _, set := range []string{setPortMAC, setPortIP4, setPortIP6, setFast4, setFast6} {
		c.FlushSet(&nftables.Set{Table: table, Name: set})
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	l.apply(t, "vm1", Spec{})
	got = l.list(t)
	if diff := cmp.Diff(chains, got.Chains); diff != "" {
		t.Errorf("chains after removing everything (-want +got):\n%s", diff)
	}
	if len(got.Elements) != 0 {
		t.Errorf("elements after removing everything: %v\n%s", got.Elements, l.ruleset())
	}
	if p := l.ports(t); len(p) != 0 {
		t.Errorf("Ports() after removing everything: %v", p)
	}
}

// TestFilterBeforePort: Filter works by name, before the port exists, and
// its frames are filtered from the moment it joins the bridge.
func TestFilterBeforePort(t *testing.T) {
	l := newLab(t)
	s := Spec{MAC: vmMAC, IPs: []netip.Addr{vmIP4}, MACSpoofCheck: true, IPSpoofCheck: true, DHCPGuard: true, RAGuard: true, BPDUGuard: true}
	in(t, l.host, func() error { return Filter("vm1", s) })
	if diff := cmp.Diff([]string{"vm1"}, l.ports(t)); diff != "" {
		t.Errorf("Ports() (-want +got):\n%s", diff)
	}
	in(t, l.host, func() error {
		la := netlink.NewLinkAttrs()
		la.Name = "vm1"
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "vm1g"}); err != nil {
			return err
		}
		if err := addPort(l.br, "vm1"); err != nil {
			return err
		}
		if err := setUp("vm1g"); err != nil {
			return err
		}
		return Configure("vm1", s)
	})
	if pi := protinfo(t, l, "vm1"); !pi.Guard || !pi.RootBlock {
		t.Errorf("vm1 protinfo %s after Configure, want guard and root_block", pi.String())
	}
	vm1g := openPacket(t, l.host, "vm1g")
	rtr := openPacket(t, l.router, "eth0")
	got := frames.Deliver(t, vm1g, frames.UDP4Probe("marker", vmMAC, vmIP4, lanBcast, 1, 2),
		[]frames.Probe{frames.UDP4Probe("spoofed", otherMAC, otherIP4, lanBcast, 1000, 2000)}, rtr)
	if got[0]["spoofed"] {
		t.Errorf("a spoofed frame from a port filtered before it existed reached the router")
	}
	var err error
	in(t, l.host, func() error { err = Configure("nope", s); return nil })
	if !errors.Is(err, ErrNoPort) {
		t.Errorf("Configure(nope) = %v, want ErrNoPort", err)
	}
}

// TestConcurrentApply: many processes' worth of Apply on different ports of
// a bridge without a table yet all succeed, and leave one table with every
// port's elements.
func TestConcurrentApply(t *testing.T) {
	l := newLab(t)
	const n = 24
	names := addTaps(t, l, n)
	s := Spec{MAC: vmMAC, IPs: []netip.Addr{vmIP4, vmIP6}, MACSpoofCheck: true, IPSpoofCheck: true, DHCPGuard: true, RAGuard: true, Isolated: true}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = nstest.Do(l.host.Path(), func() error {
				if err := Apply(name, s); err != nil {
					return err
				}
				if i%3 == 0 {
					if err := Remove(name); err != nil {
						return err
					}
					return Apply(name, s)
				}
				return nil
			})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	got := l.list(t)
	// The base chain's rules: two for ordinary IPv4, two for ordinary
	// IPv6, one for the rest.
	if got.Chains[baseChain] != 5 || len(got.Elements[setPolicies]) != n {
		t.Errorf("after %d concurrent Applies: %d rules in the base chain, %d ports in policies; want 5, %d", n, got.Chains[baseChain], len(got.Elements[setPolicies]), n)
	}
	if diff := cmp.Diff(names, l.ports(t)); diff != "" {
		t.Errorf("Ports() (-want +got):\n%s", diff)
	}
}

// addTaps adds n TAPs (tap0000...) as ports of the lab's bridge.
func addTaps(t testing.TB, l *lab, n int) []string {
	t.Helper()
	names := make([]string, n)
	in(t, l.host, func() error {
		for i := range names {
			names[i] = fmt.Sprintf("tap%04d", i)
			la := netlink.NewLinkAttrs()
			la.Name, la.MasterIndex = names[i], l.br.Attrs().Index
			if err := netlink.LinkAdd(&netlink.Tuntap{LinkAttrs: la, Mode: netlink.TUNTAP_MODE_TAP}); err != nil {
				return fmt.Errorf("adding %s: %w", names[i], err)
			}
		}
		return nil
	})
	return names
}

// TestLegacyTable: a table left by an older tapbridge (a chain per port,
// jumped to from the verdict map ports) is not written over, which would
// leave its ports unfiltered: Filter says what to do, and the old dispatch
// rule stays.
func TestLegacyTable(t *testing.T) {
	l := newLab(t)
	c := l.nft(t)
	c.AddTable(table)
	accept := nftables.ChainPolicyAccept
	base := c.AddChain(&nftables.Chain{Name: baseChain, Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(priorityFilter), Policy: &accept})
	ports := &nftables.Set{Table: table, Name: "ports", IsMap: true, KeyType: nftables.TypeIFName, DataType: nftables.TypeVerdict}
	if err := c.AddSet(ports, nil); err != nil {
		t.Fatal(err)
	}
	c.AddRule(&nftables.Rule{Table: table, Chain: base, Exprs: concat(iifname,
		[]expr.Any{&expr.Lookup{SourceRegister: 1, SetName: ports.Name, SetID: ports.ID, IsDestRegSet: true}})})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	before := l.ruleset()
	var err error
	in(t, l.host, func() error { err = Filter("vm1", Spec{DHCPGuard: true}); return nil })
	if !errors.Is(err, ErrLegacyTable) || !strings.Contains(err.Error(), `port "vm1"`) {
		t.Errorf("Filter on a legacy table = %v, want ErrLegacyTable naming the port", err)
	}
	if after := l.ruleset(); after != before {
		t.Errorf("the legacy table changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestCounters: every drop is counted for its port and guard, and only
// there; a port without a policy has no counters.
func TestCounters(t *testing.T) {
	l := newLab(t, "vm1", "vm2")
	// The host's own IPv6 on the VMs' ends of the veths would send (and
	// have counted) MLD reports and solicitations from the veths' MACs.
	in(t, l.host, func() error {
		for _, g := range []string{"vm1g", "vm2g"} {
			if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+g+"/disable_ipv6", []byte("1"), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	all := Spec{MAC: vmMAC, IPs: []netip.Addr{vmIP4, vmIP6}, MACSpoofCheck: true, IPSpoofCheck: true, DHCPGuard: true, RAGuard: true, BPDUGuard: true}
	l.apply(t, "vm1", all)
	mac2 := mustMAC("52:54:00:00:00:02")
	all2 := all
	all2.MAC = mac2
	l.apply(t, "vm2", all2)
	vm1g := openPacket(t, l.host, "vm1g")
	rtr := openPacket(t, l.router, "eth0")
	raFrag, _ := frames.RAFragmentProbes("RA in fragments", vmMAC, vmLL, 0x7b0b)
	probes := []frames.Probe{
		frames.UDP4Probe("spoofed MAC", otherMAC, vmIP4, lanBcast, 1000, 2000),
		frames.UDP4Probe("spoofed MAC again", otherMAC, vmIP4, lanBcast, 1000, 2000),
		frames.UDP4Probe("spoofed IPv4", vmMAC, otherIP4, lanBcast, 1000, 2000),
		frames.UDP4Probe("DHCP offer", vmMAC, vmIP4, frames.V4Broadcast, 6767, 68),
		frames.DHCPDiscoverProbeFor("discover for another chaddr", vmMAC, otherMAC, 1),
		frames.RAProbe("RA", vmMAC, vmLL),
		raFrag,
		frames.NAProbe("NA for the router", vmMAC, vmLL, netip.MustParseAddr("fe80::1")),
		frames.BPDUProbe("BPDU", vmMAC, 0),
		frames.UDP4Probe("tagged", vmMAC, vmIP4, lanBcast, 1000, 2000).Tagged(frames.Ether8021Q, 5),
	}
	got := frames.Deliver(t, vm1g, frames.UDP4Probe("marker", vmMAC, vmIP4, lanBcast, 1, 2), probes, rtr)
	for _, p := range probes {
		if got[0][p.Name] {
			t.Errorf("%s reached the router", p.Name)
		}
	}
	var c1, c2 map[string]uint64
	in(t, l.host, func() (err error) {
		if c1, err = Counters("vm1"); err != nil {
			return err
		}
		c2, err = Counters("vm2")
		return err
	})
	want := map[string]uint64{"bpdu": 1, "tagged": 1, "mac": 2, "ip": 1, "nd": 1, "dhcp": 1, "chaddr": 1, "ra": 1, "fragment": 1}
	if diff := cmp.Diff(want, c1); diff != "" {
		t.Errorf("Counters(vm1) (-want +got):\n%s\n%s", diff, l.ruleset())
	}
	zero := map[string]uint64{}
	for _, g := range guards {
		zero[g] = 0
	}
	if diff := cmp.Diff(zero, c2); diff != "" {
		t.Errorf("Counters(vm2), which sent nothing (-want +got):\n%s", diff)
	}
	var err error
	in(t, l.host, func() error { _, err = Counters("vm3"); return nil })
	if !errors.Is(err, ErrNoPolicy) {
		t.Errorf("Counters(vm3) = %v, want ErrNoPolicy", err)
	}
}

// TestRulesetUpgrade: a table whose fixed rules are of another version (no
// ruleset_1 set; here, chain vm emptied as well) gets its chains written
// again by the next Filter, and the ports that had a policy keep it.
func TestRulesetUpgrade(t *testing.T) {
	l := newLab(t, "vm1", "vm2")
	s := Spec{MAC: vmMAC, IPs: []netip.Addr{vmIP4}, MACSpoofCheck: true, IPSpoofCheck: true}
	l.apply(t, "vm1", s)
	want := l.list(t).Chains
	c := l.nft(t)
	c.DelSet(&nftables.Set{Table: table, Name: setVersion})
	c.FlushChain(&nftables.Chain{Table: table, Name: "vm"})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	l.apply(t, "vm2", Spec{MAC: otherMAC, IPs: []netip.Addr{otherIP4}, MACSpoofCheck: true})
	if diff := cmp.Diff(want, l.list(t).Chains); diff != "" {
		t.Errorf("chains after the upgrade (-want +got):\n%s", diff)
	}
	vm1g := openPacket(t, l.host, "vm1g")
	rtr := openPacket(t, l.router, "eth0")
	got := frames.Deliver(t, vm1g, frames.UDP4Probe("marker", vmMAC, vmIP4, lanBcast, 1, 2),
		[]frames.Probe{frames.UDP4Probe("spoofed", vmMAC, otherIP4, lanBcast, 1000, 2000)}, rtr)
	if got[0]["spoofed"] {
		t.Errorf("vm1, filtered before the upgrade, is not after it")
	}
}

func TestGet(t *testing.T) {
	l := newLab(t, "vm1")
	all := Spec{MAC: vmMAC, IPs: []netip.Addr{vmIP4, vmIP6}, MACSpoofCheck: true, IPSpoofCheck: true, DHCPGuard: true, RAGuard: true, BPDUGuard: true, Isolated: true}
	l.apply(t, "vm1", all)
	in(t, l.host, func() error {
		got, err := Get("vm1")
		if err != nil {
			return err
		}
		want := all
		want.Isolated = false // the bridge port's own setting, not recorded
		if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
			t.Errorf("Get(vm1) (-want +got):\n%s", diff)
		}
		if _, err := Get("vm9"); !errors.Is(err, ErrNoPolicy) {
			t.Errorf("Get(vm9) = %v, want ErrNoPolicy", err)
		}
		return nil
	})
}
