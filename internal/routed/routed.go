package routed

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/ifname"
	"github.com/tapbridge/tapbridge/internal/link"
	"github.com/tapbridge/tapbridge/internal/nldump"
	"github.com/tapbridge/tapbridge/internal/state"
)

// The guest's gateway: addresses the host holds on every routed port.
var (
	GatewayIPv4 = netip.MustParseAddr("169.254.0.1")
	GatewayIPv6 = netip.MustParseAddr("fe80::1")
)

var (
	// ErrNoAddresses is wrapped when a routed port is given no address.
	ErrNoAddresses = errors.New("routed mode needs the VM's addresses")
	// ErrNoPort is wrapped when the port does not exist.
	ErrNoPort = errors.New("no such port")
	// ErrInUse is wrapped when an address belongs to the host or another
	// port already.
	ErrInUse = errors.New("address in use")
)

// Spec is what a routed port gets.
type Spec struct {
	Port   string       // the VM's TAP or host veth
	Uplink string       // the interface facing the provider (or the bridge holding it)
	IPs    []netip.Addr // the VM's addresses; required
	MTU    int          // the port's MTU; 0: the uplink's

	Isolated  bool // no traffic to or from other routed ports
	DHCPGuard bool // drop DHCP server messages from the VM
	RAGuard   bool // drop router advertisements and redirects from the VM
}

// record is what Attach changed for one port: Detach undoes exactly that.
type record struct {
	Port     string       `json:"port"`
	Index    int          `json:"index"`
	Uplink   string       `json:"uplink"` // where the proxy entries are
	IPs      []netip.Addr `json:"ips"`
	Routes   []netip.Addr `json:"routes,omitempty"`
	Proxies  []netip.Addr `json:"proxies,omitempty"`
	Gateways []string     `json:"gateways,omitempty"` // addresses added to the port
	Sysctls  []string     `json:"sysctls,omitempty"`
	Filtered bool         `json:"filtered,omitempty"` // set elements added
	Spec     Spec         `json:"spec"`
}

func recordPath(port string) string { return state.NetNSPath("routed", "ports", port+".json") }

func (r *record) save() error { return state.WriteJSON(recordPath(r.Port), r) }

func readRecord(port string) (*record, error) {
	r := &record{}
	err := state.ReadJSON(recordPath(port), r)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if r.Port != port {
		return nil, fmt.Errorf("routed record of %q names port %q", port, r.Port)
	}
	return r, nil
}

// Ports returns the names of the ports that have a routed record.
func Ports() ([]string, error) {
	entries, err := os.ReadDir(state.NetNSPath("routed", "ports"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok && !strings.HasPrefix(n, ".") {
			out = append(out, n)
		}
	}
	return out, nil
}

// Is reports whether port is attached routed (has a record).
func Is(port string) bool {
	_, err := os.Stat(recordPath(port))
	return err == nil
}

// Attach routes s.IPs to s.Port. It is idempotent, and on failure it
// leaves nothing of what it did.
func Attach(s Spec) error {
	if err := ifname.Validate("port", s.Port); err != nil {
		return err
	}
	if err := ifname.Validate("uplink", s.Uplink); err != nil {
		return err
	}
	if len(s.IPs) == 0 {
		return fmt.Errorf("port %q: %w", s.Port, ErrNoAddresses)
	}
	lk, err := state.LockRouted()
	if err != nil {
		return err
	}
	defer lk.Unlock()
	return attachLocked(s)
}

// attachLocked is Attach under the routed lock.
func attachLocked(s Spec) error {
	port, up, err := check(s)
	if err != nil {
		return err
	}
	old, err := readRecord(s.Port)
	if err != nil {
		return err
	}
	if old != nil && (old.Index != port.Attrs().Index || old.Uplink != up.Attrs().Name || !sameSpec(old.Spec, s)) {
		// Attached before with other values, or another port of that
		// name: start from nothing.
		if err := detachLocked(old); err != nil {
			return err
		}
		old = nil
	}
	r := old
	if r == nil {
		r = &record{Port: s.Port, Index: port.Attrs().Index, Uplink: up.Attrs().Name, IPs: s.IPs}
	}
	r.Spec = s
	if err := r.save(); err != nil {
		return err
	}
	if err := attach(r, port, up); err != nil {
		if derr := detachLocked(r); derr != nil {
			return fmt.Errorf("%w (and undoing it: %v)", err, derr)
		}
		return err
	}
	return nil
}

// Rehome attaches again the routed ports whose proxy entries and sysctls
// are on another interface than the one that now holds their uplink's
// addresses: after the uplink moved into a bridge (tapbridge up, a bridged
// attach) or out of it (tapbridge down). It returns the names of the ports
// it moved; with nothing to move it costs a directory listing and a link
// lookup per uplink. A port that cannot be attached again is left
// detached, and its error returned.
func Rehome() ([]string, error) {
	holders := map[string]string{} // uplink -> the interface holding its addresses
	var moved []string
	var errs []error
	err := eachRecord(func(r *record) error {
		n := r.Port
		h, ok := holders[r.Spec.Uplink]
		if !ok {
			if up, err := holder(r.Spec.Uplink); err == nil {
				h = up.Attrs().Name
			}
			holders[r.Spec.Uplink] = h
		}
		if h == "" || h == r.Uplink {
			return nil // the uplink is gone, or the port is where it belongs
		}
		if err := detachLocked(r); err != nil {
			errs = append(errs, fmt.Errorf("routed port %q: %w", n, err))
			return nil
		}
		if err := attachLocked(r.Spec); err != nil {
			errs = append(errs, fmt.Errorf("routed port %q: attaching it again on %q: %w", n, h, err))
			return nil
		}
		moved = append(moved, n)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return moved, errors.Join(errs...)
}

// eachRecord calls f with the record of every routed port, holding the
// routed lock; a port whose record cannot be read is passed over. An error
// from f ends the walk and is returned.
func eachRecord(f func(r *record) error) error {
	lk, err := state.LockRouted()
	if err != nil {
		return err
	}
	defer lk.Unlock()
	names, err := Ports()
	if err != nil {
		return err
	}
	for _, n := range names {
		r, err := readRecord(n)
		if err != nil || r == nil {
			continue
		}
		if err := f(r); err != nil {
			return err
		}
	}
	return nil
}

// holder returns the interface that holds the addresses of uplink: the
// uplink itself, or the bridge it is a port of.
func holder(uplink string) (netlink.Link, error) {
	up, err := netlinksafe.LinkByName(uplink)
	if err != nil {
		return nil, fmt.Errorf("uplink %q: %w", uplink, err)
	}
	master, err := link.Master(up)
	if err != nil {
		return nil, fmt.Errorf("uplink %q: reading its master: %w", uplink, err)
	}
	if master != nil {
		if _, ok := master.(*netlink.Bridge); !ok {
			return nil, fmt.Errorf("uplink %q is a port of %q, a %s: name that as the uplink", uplink, master.Attrs().Name, master.Type())
		}
		return master, nil // the bridge holds the host's addresses
	}
	return up, nil
}

// sameSpec reports whether a and b ask for the same attachment.
func sameSpec(a, b Spec) bool {
	return a.Port == b.Port && a.Uplink == b.Uplink && slices.Equal(a.IPs, b.IPs) && a.MTU == b.MTU &&
		a.Isolated == b.Isolated && a.DHCPGuard == b.DHCPGuard && a.RAGuard == b.RAGuard
}

// check validates the port, the uplink and the addresses against the live
// host. It returns the port and the interface that holds the uplink's
// addresses: the uplink, or the bridge it is a port of.
func check(s Spec) (port, up netlink.Link, err error) {
	port, err = netlinksafe.LinkByName(s.Port)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, nil, fmt.Errorf("port %q: %w", s.Port, ErrNoPort)
		}
		return nil, nil, fmt.Errorf("port %q: %w", s.Port, err)
	}
	if port.Attrs().MasterIndex != 0 {
		return nil, nil, fmt.Errorf("port %q is a port of a bridge; a routed port stands alone", s.Port)
	}
	if s.Uplink == s.Port {
		return nil, nil, fmt.Errorf("port %q is the uplink", s.Port)
	}
	if up, err = holder(s.Uplink); err != nil {
		return nil, nil, err
	}
	if up.Attrs().Index == port.Attrs().Index {
		return nil, nil, fmt.Errorf("port %q holds the addresses of uplink %q", s.Port, s.Uplink)
	}
	addrs, err := nldump.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, nil, fmt.Errorf("listing addresses: %w", err)
	}
	for _, ip := range s.IPs {
		switch {
		case !ip.IsValid() || ip.Zone() != "":
			return nil, nil, fmt.Errorf("address %s: not a plain IPv4 or IPv6 address", ip)
		case !ip.IsGlobalUnicast():
			return nil, nil, fmt.Errorf("address %s: a routed VM needs global unicast addresses", ip)
		}
		for _, a := range addrs {
			if h, ok := netip.AddrFromSlice(a.IP); ok && h.Unmap() == ip && a.LinkIndex != port.Attrs().Index {
				return nil, nil, fmt.Errorf("address %s: %w: it is an address of the host", ip, ErrInUse)
			}
		}
	}
	return port, up, nil
}

// attach does the work of Attach, recording each change in r.
func attach(r *record, port, up netlink.Link) error {
	s := r.Spec
	var v4, v6 bool
	for _, ip := range s.IPs {
		v4, v6 = v4 || ip.Is4(), v6 || ip.Is6()
	}
	// Everything but the proxy entries is recorded before it is done: what
	// Detach then finds missing it skips, and the rest is the port's own
	// (its routes, its gateway addresses) or reference-counted (sysctls).
	// Proxy entries are recorded once made: one that exists already is
	// someone else's and is left alone.
	conf := func(fam, link, name string) string { return "net/" + fam + "/conf/" + link + "/" + name }
	var wants []want
	if v6 {
		wants = append(wants,
			want{conf("ipv6", s.Port, "disable_ipv6"), s.Port, "0", nil},
			want{conf("ipv6", s.Port, "accept_ra"), s.Port, "0", nil},
			// Before forwarding: with forwarding on, accept_ra 1 means off.
			want{conf("ipv6", up.Attrs().Name, "accept_ra"), up.Attrs().Name, "2", func(cur string) bool { return cur == "1" }},
			want{"net/ipv6/conf/all/forwarding", "", "1", nil},
			want{conf("ipv6", up.Attrs().Name, "proxy_ndp"), up.Attrs().Name, "1", nil},
		)
	}
	if !v6 {
		// The host has no IPv6 business with an IPv4-only VM: no DAD,
		// router solicitations or MLD reports towards it.
		wants = append(wants, want{conf("ipv6", s.Port, "disable_ipv6"), s.Port, "1", nil})
	}
	wants = append(wants,
		want{conf("ipv4", s.Port, "forwarding"), s.Port, "1", nil},
		want{conf("ipv4", up.Attrs().Name, "forwarding"), up.Attrs().Name, "1", nil},
	)
	gws := []netlink.Addr{{IPNet: prefixNet(netip.PrefixFrom(GatewayIPv4, 32)), Scope: unix.RT_SCOPE_LINK}}
	if v6 {
		gws = append(gws, netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(GatewayIPv6, 64)), Flags: unix.IFA_F_NODAD})
	}
	r.Filtered = true
	for _, w := range wants {
		if !slices.Contains(r.Sysctls, w.key) {
			r.Sysctls = append(r.Sysctls, w.key)
		}
	}
	for _, a := range gws {
		if !slices.Contains(r.Gateways, a.IPNet.String()) {
			r.Gateways = append(r.Gateways, a.IPNet.String())
		}
	}
	r.Routes = slices.Clone(s.IPs)
	if err := r.save(); err != nil {
		return err
	}

	// The filter first: the port never forwards without it.
	if err := addElements(s); err != nil {
		return fmt.Errorf("port %q: programming nftables: %w", s.Port, err)
	}
	mtu := s.MTU
	if mtu == 0 {
		mtu = up.Attrs().MTU
	}
	if port.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(port, mtu); err != nil {
			return fmt.Errorf("setting MTU of %q to %d: %w", s.Port, mtu, err)
		}
	}
	sc, err := loadSysctls()
	if err != nil {
		return err
	}
	if _, err := sc.acquire(s.Port, wants); err != nil {
		return fmt.Errorf("port %q: %w", s.Port, err)
	}
	for _, a := range gws {
		if err := netlink.AddrAdd(port, &a); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("adding gateway address %s to %q: %w", a.IPNet, s.Port, err)
		}
	}
	if err := netlink.LinkSetUp(port); err != nil {
		return fmt.Errorf("bringing %q up: %w", s.Port, err)
	}

	// A host route per address. One that exists is fine when it is the
	// port's own (a re-run); another port's address is refused.
	for _, ip := range s.IPs {
		rt := hostRoute(ip, port.Attrs().Index)
		err := netlink.RouteAdd(rt)
		if errors.Is(err, unix.EEXIST) {
			if owner, idx := routeOwner(ip); idx != port.Attrs().Index {
				r.Routes = slices.DeleteFunc(r.Routes, func(a netip.Addr) bool { return a == ip })
				return fmt.Errorf("address %s: %w: %s", ip, ErrInUse, owner)
			}
			err = nil
		}
		if err != nil {
			return fmt.Errorf("adding route %s dev %s: %w", rt.Dst, s.Port, err)
		}
	}

	// Proxy neighbour entries for the addresses on the uplink's link.
	onLink, err := onLinkPrefixes(up)
	if err != nil {
		return err
	}
	for _, ip := range s.IPs {
		if slices.Contains(r.Proxies, ip) || !containsAny(onLink, ip) {
			continue
		}
		err := netlink.NeighAdd(proxyNeigh(ip, up.Attrs().Index))
		if errors.Is(err, unix.EEXIST) {
			continue // someone else's entry: left alone, also by Detach
		}
		if err != nil {
			return fmt.Errorf("adding proxy neighbour entry %s on %q: %w", ip, up.Attrs().Name, err)
		}
		r.Proxies = append(r.Proxies, ip)
		if err := r.save(); err != nil {
			return err
		}
	}
	return nil
}

// routeOwner says where ip is routed already, for an error, and the
// ifindex of that interface (0 when unknown).
func routeOwner(ip netip.Addr) (string, int) {
	fam := netlink.FAMILY_V4
	if ip.Is6() {
		fam = netlink.FAMILY_V6
	}
	rs, err := nldump.RouteListFiltered(fam, &netlink.Route{Dst: prefixNet(netip.PrefixFrom(ip, ip.BitLen()))}, netlink.RT_FILTER_DST)
	if err == nil && len(rs) > 0 {
		if l, err := netlink.LinkByIndex(rs[0].LinkIndex); err == nil {
			return fmt.Sprintf("it is routed to %q already", l.Attrs().Name), rs[0].LinkIndex
		}
	}
	return "a route to it exists already", 0
}

func hostRoute(ip netip.Addr, index int) *netlink.Route {
	return &netlink.Route{
		LinkIndex: index,
		Dst:       prefixNet(netip.PrefixFrom(ip, ip.BitLen())),
		Scope:     netlink.SCOPE_LINK,
		Protocol:  unix.RTPROT_STATIC,
	}
}

func proxyNeigh(ip netip.Addr, index int) *netlink.Neigh {
	fam := netlink.FAMILY_V4
	if ip.Is6() {
		fam = netlink.FAMILY_V6
	}
	return &netlink.Neigh{LinkIndex: index, Family: fam, Flags: netlink.NTF_PROXY, IP: net.IP(ip.AsSlice())}
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// onLinkPrefixes returns the prefixes of the uplink's global addresses:
// the addresses the provider's router resolves on the link.
func onLinkPrefixes(up netlink.Link) ([]netip.Prefix, error) {
	addrs, err := nldump.AddrList(up, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("listing the addresses of %q: %w", up.Attrs().Name, err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || !ip.Unmap().IsGlobalUnicast() || a.Flags&unix.IFA_F_NOPREFIXROUTE != 0 {
			continue
		}
		ones, _ := a.Mask.Size()
		if ones == ip.Unmap().BitLen() {
			continue // a /32 or /128 puts nothing else on the link
		}
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones).Masked())
	}
	return out, nil
}

func containsAny(ps []netip.Prefix, ip netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Detach removes what Attach did for port. It reports whether port was a
// routed port (had a record); it succeeds when the port is gone.
func Detach(port string) (bool, error) {
	if err := ifname.Validate("port", port); err != nil {
		return false, err
	}
	lk, err := state.LockRouted()
	if err != nil {
		return false, err
	}
	defer lk.Unlock()
	r, err := readRecord(port)
	if err != nil || r == nil {
		return false, err
	}
	return true, detachLocked(r)
}

// detachLocked undoes r, in the reverse order of attach, and removes it.
// What is gone already is skipped; the record goes only when all is undone.
func detachLocked(r *record) error {
	var errs []error
	var port netlink.Link
	if l, err := netlinksafe.LinkByName(r.Port); err == nil && l.Attrs().Index == r.Index {
		port = l
	}
	if up, err := netlinksafe.LinkByName(r.Uplink); err == nil {
		for _, ip := range r.Proxies {
			if err := netlink.NeighDel(proxyNeigh(ip, up.Attrs().Index)); err != nil && !gone(err) {
				errs = append(errs, fmt.Errorf("deleting proxy neighbour entry %s on %q: %w", ip, r.Uplink, err))
			}
		}
	}
	r.Proxies = nil
	if port != nil {
		for _, ip := range r.Routes {
			if err := netlink.RouteDel(hostRoute(ip, r.Index)); err != nil && !gone(err) {
				errs = append(errs, fmt.Errorf("deleting route %s dev %s: %w", ip, r.Port, err))
			}
		}
		for _, g := range r.Gateways {
			p, err := netip.ParsePrefix(g)
			if err != nil {
				continue
			}
			if err := netlink.AddrDel(port, &netlink.Addr{IPNet: prefixNet(p)}); err != nil && !gone(err) {
				errs = append(errs, fmt.Errorf("deleting gateway address %s from %q: %w", g, r.Port, err))
			}
		}
	}
	r.Routes, r.Gateways = nil, nil
	if sc, err := loadSysctls(); err != nil {
		errs = append(errs, err)
	} else if err := sc.release(r.Port, r.Sysctls); err != nil {
		errs = append(errs, err)
	}
	if r.Filtered {
		last := true
		if ports, err := Ports(); err == nil {
			last = len(ports) == 1 && ports[0] == r.Port
		}
		if err := delElements(r.Spec, last); err != nil {
			errs = append(errs, fmt.Errorf("port %q: removing nftables elements: %w", r.Port, err))
		}
	}
	if len(errs) > 0 {
		_ = r.save()
		return errors.Join(errs...)
	}
	return state.Remove(recordPath(r.Port))
}

// gone reports whether a netlink error means the object is not there.
func gone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EADDRNOTAVAIL)
}

// Prune detaches the routed ports whose interface is gone or was made
// anew (a QEMU killed without running its down script), and returns their
// names.
func Prune() ([]string, error) {
	var pruned []string
	err := eachRecord(func(r *record) error {
		n := r.Port
		l, err := netlinksafe.LinkByName(n)
		var nf netlink.LinkNotFoundError
		switch {
		case err == nil && l.Attrs().Index == r.Index:
			return nil // still there
		case err != nil && !errors.As(err, &nf):
			return fmt.Errorf("looking for routed port %q: %w", n, err)
		}
		if err := detachLocked(r); err != nil {
			return err
		}
		pruned = append(pruned, n)
		return nil
	})
	return pruned, err
}

// Check verifies that port is attached routed: its record describes the
// live port, which is up, with a route for each address.
func Check(port string) error {
	r, err := readRecord(port)
	if err != nil {
		return err
	}
	if r == nil {
		return fmt.Errorf("%q is not a routed port", port)
	}
	l, err := netlinksafe.LinkByName(port)
	if err != nil {
		return fmt.Errorf("routed port %q: %w", port, err)
	}
	if l.Attrs().Index != r.Index {
		return fmt.Errorf("routed port %q was made anew since it was attached", port)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("routed port %q is down", port)
	}
	for _, ip := range r.IPs {
		fam := netlink.FAMILY_V4
		if ip.Is6() {
			fam = netlink.FAMILY_V6
		}
		rs, err := nldump.RouteListFiltered(fam, hostRoute(ip, r.Index), netlink.RT_FILTER_DST|netlink.RT_FILTER_OIF)
		if err != nil {
			return fmt.Errorf("listing routes: %w", err)
		}
		if len(rs) == 0 {
			return fmt.Errorf("routed port %q: no route for %s", port, ip)
		}
	}
	return nil
}
