package uplink

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/bridge"
	"github.com/tapbridge/tapbridge/internal/failpoint"
	"github.com/tapbridge/tapbridge/internal/handover"
	"github.com/tapbridge/tapbridge/internal/link"
	"github.com/tapbridge/tapbridge/internal/nldump"
	"github.com/tapbridge/tapbridge/internal/state"
)

// The journal is evidence, not truth. Before it is acted on, it must
// describe the live host (identity) and, before its snapshot is replayed,
// that snapshot must still match what is live (snapshotMatches); else it
// is set aside (setAside) and the caller starts afresh from what is live
// now, or refuses.

// identity says why j does not describe the live host and uplink, or "".
func (j *Journal) identity() (string, error) {
	if j.Version != JournalVersion {
		return fmt.Sprintf("it has schema version %d, this tapbridge reads version %d", j.Version, JournalVersion), nil
	}
	live, err := state.CurrentHost()
	if err != nil {
		return "", err
	}
	if d := j.Host.Differs(live); d != "" {
		return d, nil
	}
	up, err := link.Get(j.Uplink)
	if errors.Is(err, link.ErrNotFound) {
		return fmt.Sprintf("its uplink %q no longer exists", j.Uplink), nil
	}
	if err != nil {
		return "", err
	}
	if up.Attrs().Index != j.UplinkIndex {
		return fmt.Sprintf("%q is now another device (ifindex %d, the journal's was %d)", j.Uplink, up.Attrs().Index, j.UplinkIndex), nil
	}
	if perm := permMAC(up); perm != j.UplinkPermMAC {
		return fmt.Sprintf("%q is now another device (permanent MAC %s, the journal's was %s)", j.Uplink, orNone(perm), orNone(j.UplinkPermMAC)), nil
	}
	return "", nil
}

// otherLiveNetNS reports whether j was written in this boot in another
// network namespace that still exists (a process is in it, or a bind mount
// such as /run/netns/NAME holds it): its journal is that namespace's. A
// live namespace that only inherited the dead writer's inode number is not
// it (the cookies differ).
func (j *Journal) otherLiveNetNS() bool {
	live, err := state.CurrentHost()
	if err != nil || j.Host.BootID != live.BootID || j.Host.NetNS == live.NetNS {
		return false
	}
	return state.NetNSAlive(j.Host.NetNS, j.Host.NetNSCookie)
}

// permMAC is the link's permanent (burnt-in) MAC, IFLA_PERM_ADDRESS, or ""
// for a device that has none (veth, dummy).
func permMAC(l netlink.Link) string {
	if hw := l.Attrs().PermHWAddr; len(hw) > 0 && !allZero(hw) {
		return hw.String()
	}
	return ""
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// snapshotMatches says how the snapshot no longer matches the live state,
// or "": every snapshot address must still be on the uplink or the bridge,
// and the uplink must hold no global address the snapshot lacks (one the
// admin gave it after tapbridge moved its addresses away).
func (j *Journal) snapshotMatches() (string, error) {
	up, err := link.Get(j.Uplink)
	if err != nil {
		return "", err
	}
	onUp, err := globalAddrs(up)
	if err != nil {
		return "", err
	}
	onBr := map[string]netlink.Addr{}
	if br, err := bridge.Get(j.Bridge); err == nil {
		if onBr, err = globalAddrs(br); err != nil {
			return "", err
		}
	} else if !errors.Is(err, link.ErrNotFound) {
		return "", err
	}
	var diffs []string
	inSnap := map[string]bool{}
	for _, a := range j.Addrs {
		inSnap[a.CIDR] = true
		_, u := onUp[a.CIDR]
		_, b := onBr[a.CIDR]
		if !u && !b {
			diffs = append(diffs, fmt.Sprintf("%s is on neither %q nor %q", a.CIDR, j.Uplink, j.Bridge))
		}
	}
	for _, c := range sortedKeys(onUp) {
		if !inSnap[c] {
			diffs = append(diffs, fmt.Sprintf("%q holds %s, which the snapshot lacks", j.Uplink, c))
		}
	}
	return strings.Join(diffs, ", "), nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// globalAddrs returns the addresses of l that belong to the host: every
// IPv4 address and the IPv6 addresses of global scope (link-local ones
// belong to the link), by CIDR. The dump is complete or fails.
func globalAddrs(l netlink.Link) (map[string]netlink.Addr, error) {
	addrs, err := nldump.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	m := map[string]netlink.Addr{}
	for _, a := range addrs {
		if a.IP.To4() == nil && a.Scope != int(netlink.SCOPE_UNIVERSE) {
			continue
		}
		m[a.IPNet.String()] = a
	}
	return m, nil
}

// setAside moves the journal out of the way, with the reason written into
// it, and returns the one line that reports it.
func (j *Journal) setAside(o Options, reason string) (string, error) {
	j.SetAside = reason
	if err := j.save(); err != nil {
		return "", err
	}
	to, err := state.SetAside(journalPath(j.Bridge))
	if err != nil {
		return "", err
	}
	line := fmt.Sprintf("journal of bridge %q set aside as %s: %s", j.Bridge, to, reason)
	o.logf("%s", line)
	return line, nil
}

// Lifetimes of addresses, in seconds; forever is 0xffffffff.
const forever = 0xffffffff

// remaining is what is left of a lifetime lft (seconds) taken at since; 0
// when it ran out.
func remaining(lft int, since time.Time) int {
	if lft <= 0 || uint32(lft) == forever {
		return lft
	}
	left := lft - int(time.Since(since).Seconds())
	if left < 0 {
		return 0
	}
	return left
}

// restoreLive moves back onto the uplink what is live on the bridge now:
// its addresses (with their remaining lifetimes), its routes in every
// table and the rules naming it, including those added after up; then it
// releases the uplink and removes the bridge if tapbridge created it and
// no port remains. The snapshot only says what the uplink's own state was
// (its up/down state, the bridge's own MAC and addresses) and what to
// report as changed since. Every step is idempotent.
func (j *Journal) restoreLive(o Options) (string, error) {
	j.Phase = phaseRestoring
	if err := j.save(); err != nil {
		return "", err
	}
	up, err := link.Get(j.Uplink)
	if err != nil {
		return "", fmt.Errorf("uplink: %w (the journal %s is kept)", err, journalPath(j.Bridge))
	}
	br, err := bridge.Get(j.Bridge)
	if err != nil && !errors.Is(err, link.ErrNotFound) {
		return "", err
	}
	var addrs []netlink.Addr
	var routes []netlink.Route
	var rules []netlink.Rule
	if br != nil {
		if addrs, routes, rules, err = j.liveOnBridge(br); err != nil {
			return "", err
		}
	}
	// Primaries before secondaries: a secondary added first would become
	// the primary.
	sort.SliceStable(addrs, func(x, y int) bool {
		return addrs[x].Flags&unix.IFA_F_SECONDARY == 0 && addrs[y].Flags&unix.IFA_F_SECONDARY != 0
	})
	for _, a := range addrs {
		n := a
		n.LinkIndex = up.Attrs().Index
		n.Label = relabel(a.Label, j.Bridge, j.Uplink)
		if n.IP.To4() == nil {
			n.Flags |= unix.IFA_F_NODAD // already ours, on the bridge
		} else if n.Broadcast == nil {
			n.Broadcast = net.IPv4zero
		}
		if err := netlink.AddrReplace(up, &n); err != nil {
			return "", fmt.Errorf("adding %s back to %q: %w", a.IPNet, j.Uplink, err)
		}
	}
	failpoint.Hit("down:addrs")
	// Default routes last, as on the way up.
	sort.SliceStable(routes, func(x, y int) bool { return !isDefaultRoute(routes[x]) && isDefaultRoute(routes[y]) })
	for _, r := range routes {
		n := r
		n.LinkIndex = up.Attrs().Index
		n.ILinkIndex = 0
		if err := netlink.RouteReplace(&n); err != nil {
			return "", fmt.Errorf("moving route %s back to %q: %w", r, j.Uplink, err)
		}
	}
	failpoint.Hit("down:routes")
	if err := moveRules(rules, j.Bridge, j.Uplink); err != nil {
		return "", err
	}
	failpoint.Hit("down:rules")

	if up.Attrs().MasterIndex != 0 && (br == nil || up.Attrs().MasterIndex == br.Attrs().Index) {
		if err := netlink.LinkSetNoMaster(up); err != nil {
			return "", fmt.Errorf("releasing %q from bridge %q: %w", j.Uplink, j.Bridge, err)
		}
	}
	if !j.WasUp {
		_ = netlink.LinkSetDown(up)
	}
	failpoint.Hit("down:release")
	// The host's DHCP client and IPv6 autoconfiguration go back to the
	// uplink while the bridge still holds the addresses (best effort: the
	// restore itself must not fail on it).
	if hmsg, err := handover.Run(handover.Options{From: j.Bridge, To: j.Uplink, Back: true, Timeout: o.probeTimeout(), Log: o.Log}); err != nil {
		o.logf("warning: %v", err)
	} else if hmsg != "" {
		o.logf("%s", hmsg)
	}
	msg := fmt.Sprintf("%q released from bridge %q with its %d addresses, %d routes and %d rules", j.Uplink, j.Bridge, len(addrs), len(routes), len(rules))
	if br != nil {
		if err := delLiveAddrs(br, addrs); err != nil {
			return "", err
		}
		failpoint.Hit("down:flush")
		ports, err := bridge.Ports(br)
		if err != nil {
			return "", err
		}
		if old, err := net.ParseMAC(j.BridgeMAC); err == nil && !j.BridgeCreated && br.Attrs().HardwareAddr.String() != old.String() {
			if err := netlink.LinkSetHardwareAddr(br, old); err != nil {
				return "", fmt.Errorf("giving bridge %q its MAC %s back: %w", j.Bridge, old, err)
			}
		}
		switch {
		case !j.BridgeCreated:
			msg += fmt.Sprintf("; bridge %q kept: tapbridge did not create it", j.Bridge)
			if j.BridgeWasDown {
				if err := netlink.LinkSetDown(br); err != nil {
					return "", fmt.Errorf("setting bridge %q down again: %w", j.Bridge, err)
				}
				msg += ", and down again as it was"
			}
		case len(ports) > 0:
			msg += fmt.Sprintf("; bridge %q kept: it still has %d ports", j.Bridge, len(ports))
		default:
			if err := bridge.Delete(j.Bridge); err != nil {
				return "", err
			}
			msg += fmt.Sprintf("; bridge %q deleted", j.Bridge)
		}
	}
	if d := j.differences(addrs, routes); d != "" {
		msg += "; " + d
	}
	if err := removeJournal(j.Bridge); err != nil {
		return "", err
	}
	return msg, nil
}

// liveOnBridge returns what restoreLive moves: the bridge's host addresses
// (not those it had before up, nor IPv6 link-local ones), the routes
// through it that neither the kernel nor router advertisements made, and
// the rules naming it (for a bridge tapbridge did not create, only those
// up moved there). Each dump is complete or fails.
func (j *Journal) liveOnBridge(br netlink.Link) ([]netlink.Addr, []netlink.Route, []netlink.Rule, error) {
	own := map[string]bool{}
	for _, c := range j.BridgeAddrs {
		own[c] = true
	}
	m, err := globalAddrs(br)
	if err != nil {
		return nil, nil, nil, err
	}
	var addrs []netlink.Addr
	for _, c := range sortedKeys(m) {
		if !own[c] {
			addrs = append(addrs, m[c])
		}
	}
	all, err := nldump.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, nil, nil, err
	}
	var routes []netlink.Route
	for _, r := range all {
		if r.LinkIndex != br.Attrs().Index || len(r.MultiPath) > 0 || r.Protocol == unix.RTPROT_KERNEL || r.Protocol == unix.RTPROT_RA {
			continue
		}
		if r.Type == unix.RTN_LOCAL || r.Type == unix.RTN_BROADCAST || r.Type == unix.RTN_MULTICAST {
			continue
		}
		r.Flags &= int(netlink.FLAG_ONLINK)
		routes = append(routes, r)
	}
	allRules, err := nldump.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		return nil, nil, nil, err
	}
	moved, before := map[string]bool{}, map[string]bool{}
	for _, r := range renameInRules(j.Rules, j.Uplink, j.Bridge) {
		moved[ruleKey(r)] = true
	}
	for _, k := range j.BridgeRules {
		before[k] = true
	}
	var rules []netlink.Rule
	for _, r := range allRules {
		if r.IifName != j.Bridge && r.OifName != j.Bridge {
			continue
		}
		// A rule that named the bridge before up is the bridge's, even
		// one the kernel showed detached while the bridge did not exist.
		if before[ruleKey(r)] && !moved[ruleKey(r)] || !j.BridgeCreated && !moved[ruleKey(r)] {
			continue
		}
		rules = append(rules, r)
	}
	return addrs, routes, rules, nil
}

// ruleKey identifies a rule, interfaces included (Rule.String omits them).
func ruleKey(r netlink.Rule) string {
	return fmt.Sprintf("%s iif %s oif %s mark %d", r, r.IifName, r.OifName, r.Mark)
}

func isDefaultRoute(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}

// relabel turns a label of the bridge (br0:1) into the uplink's (eth0:1).
func relabel(label, from, to string) string {
	if label == "" || !strings.HasPrefix(label, from) {
		return ""
	}
	l := to + label[len(from):]
	if len(l) > 15 {
		return to
	}
	return l
}

// delLiveAddrs removes addrs from link, secondaries first.
func delLiveAddrs(link netlink.Link, addrs []netlink.Addr) error {
	ordered := make([]netlink.Addr, len(addrs))
	copy(ordered, addrs)
	sort.SliceStable(ordered, func(x, y int) bool {
		return ordered[x].Flags&unix.IFA_F_SECONDARY != 0 && ordered[y].Flags&unix.IFA_F_SECONDARY == 0
	})
	for _, a := range ordered {
		n := &netlink.Addr{IPNet: a.IPNet}
		if err := netlink.AddrDel(link, n); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("removing %s from %q: %w", a.IPNet, link.Attrs().Name, err)
		}
	}
	return nil
}

// differences says what the live state moved back differs in from the
// snapshot up took: addresses and routes added or gone since.
func (j *Journal) differences(addrs []netlink.Addr, routes []netlink.Route) string {
	if j.Phase != phaseRestoring {
		return ""
	}
	snapA := map[string]bool{}
	for _, a := range j.Addrs {
		snapA[a.CIDR] = true
	}
	liveA := map[string]bool{}
	var added, gone []string
	for _, a := range addrs {
		c := a.IPNet.String()
		liveA[c] = true
		if !snapA[c] {
			added = append(added, c)
		}
	}
	for _, a := range j.Addrs {
		if !liveA[a.CIDR] {
			gone = append(gone, a.CIDR)
		}
	}
	snapR := map[string]bool{}
	for _, r := range j.Routes {
		snapR[describe(r)] = true
	}
	liveR := map[string]bool{}
	for _, r := range routes {
		d := describe(routeFrom(r))
		liveR[d] = true
		if !snapR[d] {
			added = append(added, "route "+d)
		}
	}
	for _, r := range j.Routes {
		if !liveR[describe(r)] {
			gone = append(gone, "route "+describe(r))
		}
	}
	var parts []string
	if len(added) > 0 {
		parts = append(parts, "added since up: "+strings.Join(added, ", "))
	}
	if len(gone) > 0 {
		parts = append(parts, "gone since up: "+strings.Join(gone, ", "))
	}
	if len(parts) == 0 {
		return "exactly as snapshotted by up"
	}
	return "differs from the snapshot of up (" + strings.Join(parts, "; ") + ")"
}
