package uplink

import (
	"errors"
	"fmt"
	"net"
	"sort"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/bridge"
	"github.com/tapbridge/tapbridge/internal/failpoint"
	"github.com/tapbridge/tapbridge/internal/link"
)

// migrate applies the snapshot onto the bridge, make-before-break. Every
// step is idempotent.
func (j *Journal) migrate(o Options) error {
	hw, err := net.ParseMAC(j.MAC)
	if err != nil {
		return fmt.Errorf("journal: bad MAC %q: %w", j.MAC, err)
	}
	mtu := j.MTU
	if o.MTU > 0 {
		mtu = o.MTU
	}
	br, created, err := bridge.Ensure(bridge.Spec{Name: j.Bridge, MAC: hw, MTU: mtu})
	if err != nil {
		return err
	}
	if created {
		o.logf("created bridge %s (MAC %s, MTU %d, STP off, forward delay 0)", j.Bridge, hw, mtu)
	} else if br.Attrs().HardwareAddr.String() != hw.String() {
		// The host's addresses move with their MAC: an existing bridge
		// takes the uplink's, or the LAN's ARP caches, the host's DHCP lease
		// and the switch's port security would all break.
		if err := netlink.LinkSetHardwareAddr(br, hw); err != nil {
			return fmt.Errorf("giving bridge %q the MAC %s of uplink %q: %w", j.Bridge, hw, j.Uplink, err)
		}
		o.logf("bridge %s takes %s's MAC %s", j.Bridge, j.Uplink, hw)
	}
	// Until the routes point at the bridge, a reply from the LAN comes in on
	// the bridge while the route back still names the uplink: strict
	// rp_filter would drop it.
	writeSysctl("ipv4", j.Bridge, "rp_filter", "2")
	failpoint.Hit("up:bridge")

	upNow, err := link.Get(j.Uplink)
	if err != nil {
		return fmt.Errorf("uplink: %w", err)
	}
	live, err := globalAddrs(upNow)
	if err != nil {
		return err
	}
	onBr, err := globalAddrs(br)
	if err != nil {
		return err
	}
	for _, a := range j.Addrs {
		if _, ok := onBr[a.CIDR]; ok {
			// Moved by an earlier, interrupted run: what it is now (its
			// lifetimes renewed by a DHCP client since, say) stays.
			continue
		}
		// NODAD: the address is already ours, on the uplink.
		n, err := a.netlink(j.Uplink, j.Bridge, unix.IFA_F_NODAD*boolInt(a.ip().To4() == nil))
		if err != nil {
			return fmt.Errorf("journal: bad address %q: %w", a.CIDR, err)
		}
		// The remaining lifetime, not the one at snapshot time: from the
		// uplink while it still holds the address, else counted down
		// from the snapshot (a resumed run).
		if l, ok := live[a.CIDR]; ok {
			n.PreferedLft, n.ValidLft = l.PreferedLft, l.ValidLft
		} else {
			n.PreferedLft, n.ValidLft = remaining(a.PreferedLft, j.Time), remaining(a.ValidLft, j.Time)
			if a.ValidLft > 0 && n.ValidLft == 0 {
				o.logf("%s expired since the snapshot: not added", a.CIDR)
				continue
			}
		}
		if err := netlink.AddrReplace(br, n); err != nil {
			return fmt.Errorf("adding %s to bridge %q: %w", a.CIDR, j.Bridge, err)
		}
	}
	o.logf("added %d addresses to %s", len(j.Addrs), j.Bridge)
	failpoint.Hit("up:addrs")

	up, err := link.Get(j.Uplink)
	if err != nil {
		return fmt.Errorf("uplink: %w", err)
	}
	if up.Attrs().MasterIndex != br.Attrs().Index {
		if err := netlink.LinkSetMasterByIndex(up, br.Attrs().Index); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) {
				return fmt.Errorf("enslaving %q to bridge %q: %w (Wi-Fi stations cannot be bridged)", j.Uplink, j.Bridge, err)
			}
			return fmt.Errorf("enslaving %q to bridge %q: %w", j.Uplink, j.Bridge, err)
		}
	}
	if j.WasUp {
		if err := netlink.LinkSetUp(up); err != nil {
			return fmt.Errorf("bringing %q up: %w", j.Uplink, err)
		}
	}
	o.logf("enslaved %s to %s", j.Uplink, j.Bridge)
	failpoint.Hit("up:enslave")

	if err := moveRoutes(j.Routes, br.Attrs().Index); err != nil {
		return err
	}
	o.logf("moved %d routes to %s", len(j.Routes), j.Bridge)
	failpoint.Hit("up:routes")

	if err := moveRules(j.Rules, j.Uplink, j.Bridge); err != nil {
		return err
	}
	failpoint.Hit("up:rules")

	if err := delAddrs(up, j.Addrs); err != nil {
		return err
	}
	o.logf("removed the addresses from %s", j.Uplink)
	failpoint.Hit("up:flush")
	if j.RPFilter != "" {
		writeSysctl("ipv4", j.Bridge, "rp_filter", j.RPFilter)
	}
	return nil
}

func moveRoutes(routes []Route, idx int) error {
	for _, r := range routes {
		n, err := r.netlink(idx)
		if err != nil {
			return fmt.Errorf("journal: bad route %+v: %w", r, err)
		}
		if err := netlink.RouteReplace(n); err != nil {
			return fmt.Errorf("moving route %s: %w", describe(r), err)
		}
	}
	return nil
}

func describe(r Route) string {
	s := r.Dst
	if r.isDefault() {
		s = "default"
	}
	if r.Gw != "" {
		s += " via " + r.Gw
	}
	if r.Table != unix.RT_TABLE_MAIN {
		s += fmt.Sprintf(" table %d", r.Table)
	}
	return s
}

// renameInRules returns rules with the interface name from replaced by to.
func renameInRules(rules []netlink.Rule, from, to string) []netlink.Rule {
	out := make([]netlink.Rule, len(rules))
	for i, r := range rules {
		if r.IifName == from {
			r.IifName = to
		}
		if r.OifName == from {
			r.OifName = to
		}
		out[i] = r
	}
	return out
}

// moveRules replaces each rule naming from (rules are given as they name
// from) by the same rule naming to: the new one first, then the old one goes.
func moveRules(rules []netlink.Rule, from, to string) error {
	for _, r := range rules {
		nr := renameInRules([]netlink.Rule{r}, from, to)[0]
		if err := netlink.RuleAdd(&nr); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("adding rule %s: %w", nr, err)
		}
		old := r
		if err := netlink.RuleDel(&old); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("deleting rule %s: %w", old, err)
		}
	}
	return nil
}

// delAddrs removes the snapshot's addresses from link: IPv4 secondaries
// before their primary, since deleting a primary deletes its secondaries
// (unless promote_secondaries is set).
func delAddrs(link netlink.Link, addrs []Addr) error {
	ordered := make([]Addr, len(addrs))
	copy(ordered, addrs)
	sort.SliceStable(ordered, func(x, y int) bool {
		return ordered[x].Flags&unix.IFA_F_SECONDARY != 0 && ordered[y].Flags&unix.IFA_F_SECONDARY == 0
	})
	for _, a := range ordered {
		n, err := netlink.ParseAddr(a.CIDR)
		if err != nil {
			return fmt.Errorf("journal: bad address %q: %w", a.CIDR, err)
		}
		if err := netlink.AddrDel(link, n); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("removing %s from %q: %w", a.CIDR, link.Attrs().Name, err)
		}
	}
	return nil
}
