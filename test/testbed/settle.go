package testbed

import (
	"fmt"
	"strings"
	"time"

	"github.com/tapbridge/tapbridge/internal/nldump"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Settle waits until the kernel has finished, in the namespace, the work
// it does asynchronously after a link changes (WaitSettled), so that a dump
// of the namespace's links, addresses and routes shows what a user sees on
// a quiet host, and two dumps differ only by what was done in between.
// It fails t when the namespace does not settle.
func (n *NetNS) Settle(t TB) {
	t.Helper()
	if err := n.WaitSettled(30 * time.Second * slowdown()); err != nil {
		t.Fatalf("%v", err)
	}
}

// WaitSettled waits up to timeout until the namespace has settled:
//
//   - every up link's operational state agrees with its carrier. The
//     driver sets the carrier (IFF_LOWER_UP) at once; the operational
//     state (IFF_RUNNING, "NO-CARRIER" and "state UP/DOWN" in ip(8)), the
//     routes' "linkdown" flag and, once a link first has a carrier, its
//     IPv6 link-local address and routes follow only when the kernel's
//     linkwatch gets to the link. Linkwatch handles most links at most
//     once a second and at most 100 per run, so on a host that just made
//     1000 TAPs (as a test of a full bridge does) the wait is ten seconds
//     for every namespace. A veth or bridge that has a carrier but is
//     still "UNKNOWN" has not been seen by linkwatch yet either: both
//     always report a carrier change when created or opened;
//   - no IPv6 address of an up link with a carrier is tentative (duplicate
//     address detection is off in the test bed's namespaces, but the
//     address stays tentative until the kernel's DAD work has run);
//   - every IPv6 address of an up link has its local route (table local)
//     on that link. The kernel adds it from the same address work queue,
//     after the request that added the address has returned; an address
//     added with nodad (as `tapbridge up` moves the uplink's IPv6
//     addresses to the bridge) is never tentative meanwhile. The work
//     needs the RTNL, so while other namespaces are torn down it can come
//     well after the request.
//
// Linux 6.7 and later bring one link up to date when it is asked for by
// name (RTM_GETLINK; "net: core: synchronize link-watch when carrier is
// queried"), so there `ip link show dev eth0` never shows a stale state;
// 6.1 does not, and no kernel does it for a dump (`ip addr`, `ip -o
// link`). This wait reads dumps, so it holds on both.
func (n *NetNS) WaitSettled(timeout time.Duration) error {
	h, err := netns.GetFromPath(n.Path)
	if err != nil {
		return fmt.Errorf("opening netns %q: %w", n, err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return fmt.Errorf("netlink in netns %q: %w", n, err)
	}
	defer nl.Close()
	deadline := time.Now().Add(timeout)
	for {
		pending, err := unsettled(nl)
		if err != nil {
			return fmt.Errorf("netns %q: %w", n, err)
		}
		if len(pending) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netns %q did not settle in %s: %s", n, timeout, strings.Join(pending, "; "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// unsettled lists what the kernel has yet to bring up to date in the
// namespace of nl.
func unsettled(nl *netlink.Handle) ([]string, error) {
	// A dump the kernel interrupted (a link or address changed meanwhile)
	// is asked again (nldump.Retry), as tapbridge's own dumps are.
	links, err := nldump.Retry("links", nl.LinkList)
	if err != nil {
		return nil, err
	}
	var pending []string
	for _, l := range links {
		a := l.Attrs()
		if a.RawFlags&unix.IFF_UP == 0 || a.RawFlags&unix.IFF_DORMANT != 0 {
			continue
		}
		carrier := a.RawFlags&unix.IFF_LOWER_UP != 0
		running := a.RawFlags&unix.IFF_RUNNING != 0
		kind := l.Type()
		switch {
		case carrier != running:
			pending = append(pending, fmt.Sprintf("%s: carrier %v, operational state %s", a.Name, carrier, a.OperState))
		case carrier && a.OperState == netlink.OperUnknown && (kind == "veth" || kind == "bridge"):
			pending = append(pending, fmt.Sprintf("%s (%s): carrier, operational state still unknown", a.Name, kind))
		}
	}
	addrs, err := nldump.Retry("addresses", func() ([]netlink.Addr, error) { return nl.AddrList(nil, netlink.FAMILY_V6) })
	if err != nil {
		return nil, err
	}
	routes, err := nldump.Retry("routes", func() ([]netlink.Route, error) {
		return nl.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, err
	}
	return append(pending, PendingIPv6(links, addrs, routes)...), nil
}

// PendingIPv6 lists the IPv6 address work the kernel has yet to do, given
// a namespace's links, its IPv6 addresses and its IPv6 routes of every
// table (complete dumps): on an up link, an address still tentative while
// the link has a carrier (one without a carrier, such as a TAP nobody
// holds, stays tentative: that is its settled state), or an address
// without its local route on that link.
func PendingIPv6(links []netlink.Link, addrs []netlink.Addr, routes []netlink.Route) []string {
	byIndex := map[int]*netlink.LinkAttrs{}
	for _, l := range links {
		byIndex[l.Attrs().Index] = l.Attrs()
	}
	local := map[string]bool{}
	for _, r := range routes {
		if r.Type == unix.RTN_LOCAL && r.Dst != nil {
			local[fmt.Sprintf("%d %s", r.LinkIndex, r.Dst.IP)] = true
		}
	}
	var pending []string
	for _, a := range addrs {
		l := byIndex[a.LinkIndex]
		if l == nil || l.RawFlags&unix.IFF_UP == 0 {
			continue
		}
		switch {
		case a.Flags&unix.IFA_F_DADFAILED != 0:
		case a.Flags&unix.IFA_F_TENTATIVE != 0:
			if l.RawFlags&unix.IFF_LOWER_UP != 0 {
				pending = append(pending, fmt.Sprintf("%s on %s tentative", a.IP, l.Name))
			}
		case !local[fmt.Sprintf("%d %s", a.LinkIndex, a.IP)]:
			pending = append(pending, fmt.Sprintf("%s on %s without its local route", a.IP, l.Name))
		}
	}
	return pending
}
