package testbed

import (
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Addresses of the LAN. Only documentation ranges are used.
var (
	RouterIPv4    = netip.MustParsePrefix("192.0.2.1/24")
	RouterIPv6    = netip.MustParsePrefix("2001:db8::1/64")
	HVIPv4        = netip.MustParsePrefix("192.0.2.10/24")
	HVSecondaryV4 = netip.MustParsePrefix("192.0.2.11/24")
	HVIPv6        = netip.MustParsePrefix("2001:db8::10/64")
)

// Interface names of the LAN's veth pair.
const (
	RouterIf = "veth-r" // the router's end, in the router namespace
	HVIf     = "eth0"   // the hypervisor's end: its "physical" uplink
)

// LANOptions selects what NewLAN adds beyond the base (the router with
// 192.0.2.1/24 and 2001:db8::1/64; the hypervisor's eth0 up with
// 192.0.2.10/24 and a default route via 192.0.2.1).
type LANOptions struct {
	// Secondary adds 192.0.2.11/24 to eth0: a secondary address, which the
	// kernel deletes along with its primary.
	Secondary bool
	// IPv6 adds 2001:db8::10/64 to eth0 (DAD is off in test bed
	// namespaces).
	IPv6 bool
	// Routes are extra `ip route add` argument lists run in the hypervisor,
	// such as {"198.51.100.0/24", "via", "192.0.2.1", "metric", "50"}.
	Routes [][]string
	// Rules are extra `ip rule add` argument lists run in the hypervisor.
	Rules [][]string
	// DHCP starts dnsmasq on the router's veth-r, pool
	// 192.0.2.100-192.0.2.199.
	DHCP bool
	// DHCPConfig is that dnsmasq's lease time, T1, T2 and router
	// advertisements.
	DHCPConfig DHCPConfig
}

// UplinkOptions is a hypervisor whose eth0 holds everything that migrating
// an uplink onto a bridge must carry over: a secondary address, an IPv6
// address, a route with a metric, a route in table 100 and a rule that
// names eth0.
func UplinkOptions() LANOptions {
	return LANOptions{
		Secondary: true,
		IPv6:      true,
		Routes: [][]string{
			{"198.51.100.0/24", "via", "192.0.2.1", "metric", "50"},
			{"default", "via", "192.0.2.1", "table", "100"},
		},
		Rules: [][]string{
			{"iif", HVIf, "table", "100", "pref", "100"},
		},
	}
}

// LAN is a router namespace and a hypervisor ("hv") namespace joined by a
// veth pair: veth-r in the router, eth0 in hv.
//
//	router netns                    hv netns
//	veth-r 192.0.2.1/24  <-- veth --> eth0 192.0.2.10/24
//	       2001:db8::1/64                  default via 192.0.2.1
//	dnsmasq (optional)
type LAN struct {
	Router *NetNS
	HV     *NetNS

	RouterIf   string       // "veth-r"
	HVIf       string       // "eth0"
	RouterIPv4 netip.Prefix // 192.0.2.1/24
	RouterIPv6 netip.Prefix // 2001:db8::1/64
	HVIPv4     netip.Prefix // 192.0.2.10/24

	mu   sync.Mutex
	dhcp []*DHCPServer
}

// NewLAN builds a LAN. Cleanup stops its processes and deletes both
// namespaces (and so every interface in them).
func NewLAN(t TB, opts LANOptions) *LAN {
	t.Helper()
	l := &LAN{
		Router:     NewNetNS(t),
		HV:         NewNetNS(t),
		RouterIf:   RouterIf,
		HVIf:       HVIf,
		RouterIPv4: RouterIPv4,
		RouterIPv6: RouterIPv6,
		HVIPv4:     HVIPv4,
	}
	r, h := l.Router, l.HV
	// Created from inside the router namespace, so the pair never shows up
	// in the root namespace, even for a moment.
	r.MustExec(t, "ip", "link", "add", RouterIf, "type", "veth", "peer", "name", HVIf, "netns", h.Name)
	r.MustExec(t, "ip", "addr", "add", RouterIPv4.String(), "dev", RouterIf)
	r.MustExec(t, "ip", "addr", "add", RouterIPv6.String(), "dev", RouterIf, "nodad")
	r.MustExec(t, "ip", "link", "set", RouterIf, "up")
	h.MustExec(t, "ip", "link", "set", HVIf, "up")
	h.MustExec(t, "ip", "addr", "add", HVIPv4.String(), "dev", HVIf)
	if opts.Secondary {
		h.MustExec(t, "ip", "addr", "add", HVSecondaryV4.String(), "dev", HVIf)
	}
	if opts.IPv6 {
		h.MustExec(t, "ip", "addr", "add", HVIPv6.String(), "dev", HVIf, "nodad")
	}
	h.MustExec(t, "ip", "route", "add", "default", "via", RouterIPv4.Addr().String())
	for _, args := range opts.Routes {
		h.MustExec(t, "ip", append([]string{"route", "add"}, args...)...)
	}
	for _, args := range opts.Rules {
		h.MustExec(t, "ip", append([]string{"rule", "add"}, args...)...)
	}
	if opts.DHCP {
		l.ServeDHCPWith(t, RouterIf, RouterIPv4, opts.DHCPConfig)
	}
	return l
}

// AddVeth adds another veth pair between the router (routerIf) and the
// hypervisor (hvIf), both ends up and without addresses. Deleting the
// namespaces deletes it.
func (l *LAN) AddVeth(t TB, routerIf, hvIf string) {
	t.Helper()
	l.Router.MustExec(t, "ip", "link", "add", routerIf, "type", "veth", "peer", "name", hvIf, "netns", l.HV.Name)
	l.Router.MustExec(t, "ip", "link", "set", routerIf, "up")
	l.HV.MustExec(t, "ip", "link", "set", hvIf, "up")
}

// ServeDHCP starts a DHCP server on the router's iface with address addr
// (see StartDHCP). Leases and WaitLease look at every server of the LAN.
func (l *LAN) ServeDHCP(t TB, iface string, addr netip.Prefix) *DHCPServer {
	t.Helper()
	return l.ServeDHCPWith(t, iface, addr, DHCPConfig{})
}

// ServeDHCPWith is ServeDHCP with a DHCPConfig.
func (l *LAN) ServeDHCPWith(t TB, iface string, addr netip.Prefix, c DHCPConfig) *DHCPServer {
	t.Helper()
	s := StartDHCPWith(t, l.Router, iface, addr, c)
	l.mu.Lock()
	l.dhcp = append(l.dhcp, s)
	l.mu.Unlock()
	return s
}

// AddVLAN adds the 802.1Q sub-interface veth-r.VID to the router, with
// address addr (e.g. 198.51.100.1/24), and serves DHCP on it. A guest or
// port tagged with vid reaches it through the hypervisor's eth0. It needs
// 802.1Q support in the kernel: see CheckVLAN.
func (l *LAN) AddVLAN(t TB, vid int, addr netip.Prefix) *DHCPServer {
	t.Helper()
	if err := CheckVLAN(); err != nil {
		t.Fatalf("adding VLAN %d to the router: %v", vid, err)
	}
	name := RouterIf + "." + strconv.Itoa(vid)
	l.Router.MustExec(t, "ip", "link", "add", "link", RouterIf, "name", name, "type", "vlan", "id", strconv.Itoa(vid))
	return l.ServeDHCP(t, name, addr)
}

// DHCPServers returns the LAN's DHCP servers, in the order they started.
func (l *LAN) DHCPServers() []*DHCPServer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*DHCPServer(nil), l.dhcp...)
}

// Leases returns the leases of all the LAN's DHCP servers.
func (l *LAN) Leases() ([]Lease, error) {
	var all []Lease
	for _, s := range l.DHCPServers() {
		ls, err := s.Leases()
		if err != nil {
			return nil, err
		}
		all = append(all, ls...)
	}
	return all, nil
}

// WaitLease waits until one of the LAN's DHCP servers has leased an address
// to mac.
func (l *LAN) WaitLease(mac string, timeout time.Duration) (Lease, error) {
	if len(l.DHCPServers()) == 0 {
		return Lease{}, fmt.Errorf("waiting for a lease for %s: the LAN serves no DHCP", mac)
	}
	return waitLease(mac, timeout, nil, l.Leases)
}
