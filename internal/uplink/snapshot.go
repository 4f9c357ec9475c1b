package uplink

import (
	"fmt"
	"net"
	"sort"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/nldump"
	"github.com/tapbridge/tapbridge/internal/state"
)

func snapshot(o Options, up netlink.Link, created bool) (*Journal, error) {
	a := up.Attrs()
	host, err := state.CurrentHost()
	if err != nil {
		return nil, err
	}
	j := &Journal{
		Version:       JournalVersion,
		Host:          host,
		UplinkIndex:   a.Index,
		UplinkPermMAC: permMAC(up),
		Bridge:        o.Bridge,
		Uplink:        o.Uplink,
		BridgeCreated: created,
		Time:          time.Now().UTC(),
		MAC:           a.HardwareAddr.String(),
		MTU:           a.MTU,
		WasUp:         a.Flags&net.FlagUp != 0,
		RPFilter:      readSysctl("ipv4", o.Uplink, "rp_filter"),
	}
	// Every dump here is complete or fails: a snapshot missing an address
	// would lose it when the uplink's addresses are removed.
	addrs, err := nldump.AddrList(up, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	for _, ad := range addrs {
		// IPv6 link-local addresses belong to the link, not the host.
		if ad.IP.To4() == nil && ad.Scope != int(netlink.SCOPE_UNIVERSE) {
			continue
		}
		j.Addrs = append(j.Addrs, addrFrom(ad))
	}
	routes, err := nldump.RouteListFiltered(netlink.FAMILY_ALL,
		&netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, err
	}
	for _, r := range routes {
		for _, hop := range r.MultiPath {
			if hop.LinkIndex == a.Index {
				// Moving one nexthop of a multipath route is not done yet;
				// deleting the uplink's addresses would drop it silently.
				return nil, fmt.Errorf("uplink %q carries a nexthop of the multipath route %s: %w (tapbridge does not move multipath routes; move it off %q first)", o.Uplink, r.Dst, ErrNotBridgeable, o.Uplink)
			}
		}
		// Kernel routes (connected, local, broadcast, multicast) follow the
		// addresses by themselves.
		if r.LinkIndex != a.Index || r.Protocol == unix.RTPROT_KERNEL || len(r.MultiPath) > 0 {
			continue
		}
		j.Routes = append(j.Routes, routeFrom(r))
	}
	// Default routes last, so traffic leaves through the bridge only once
	// everything more specific already does.
	sort.SliceStable(j.Routes, func(x, y int) bool { return !j.Routes[x].isDefault() && j.Routes[y].isDefault() })
	rules, err := nldump.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	for _, r := range rules {
		if r.IifName == o.Uplink || r.OifName == o.Uplink {
			j.Rules = append(j.Rules, r)
		}
		if r.IifName == o.Bridge || r.OifName == o.Bridge {
			j.BridgeRules = append(j.BridgeRules, ruleKey(r))
		}
	}
	return j, nil
}
