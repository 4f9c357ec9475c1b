package uplink

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/bridge"
	"github.com/tapbridge/tapbridge/internal/failpoint"
	"github.com/tapbridge/tapbridge/internal/ifname"
	"github.com/tapbridge/tapbridge/internal/nldump"
	"github.com/tapbridge/tapbridge/internal/state"
)

// DefaultProbeTimeout is how long Up waits for the default gateway to answer
// on the bridge before it rolls back.
const DefaultProbeTimeout = 5 * time.Second

// Options say which uplink goes into which bridge.
type Options struct {
	Bridge string
	Uplink string
	// MTU of the bridge, if it is created; 0 means the uplink's MTU. It may
	// not exceed the uplink's MTU.
	MTU int
	// ProbeTimeout bounds the gateway probe; 0 means DefaultProbeTimeout.
	ProbeTimeout time.Duration
	NoProbe      bool
	// Force lets Down go ahead while VM ports remain on the bridge.
	Force bool
	// Log, when set, receives one line per step taken.
	Log func(format string, args ...any)
}

func (o Options) logf(format string, args ...any) {
	if o.Log != nil {
		o.Log(format, args...)
	}
}

// ErrNotBridgeable matches every refusal to enslave an uplink.
var ErrNotBridgeable = errors.New("cannot be bridged")

// ErrNoUplink matches an uplink that does not exist.
var ErrNoUplink = errors.New("no such uplink")

// missingError is the lookup error of a missing uplink, also matching
// ErrNoUplink.
type missingError struct{ err error }

func (e missingError) Error() string   { return "uplink: " + e.err.Error() }
func (e missingError) Unwrap() []error { return []error{e.err, ErrNoUplink} }

// Result says what Up or Down did.
type Result struct {
	Changed bool
	// Started is true only when this run took the snapshot and started the
	// migration: only such a run may undo it (a run that resumed one must
	// not tear down a bridge VMs may be using).
	Started bool
	// SetAside, when not empty, is the one line that reports a journal
	// that did not describe the live host and was set aside.
	SetAside string
	// Message is one line for the user: what happened, or why nothing did.
	Message string
}

// Up puts o.Uplink into o.Bridge with its addresses, routes and rules. It is
// idempotent and, after a crash at any step, finishes the job from the
// journal.
func Up(o Options) (Result, error) {
	if err := o.validate(); err != nil {
		return Result{}, err
	}
	if o.Bridge == o.Uplink {
		return Result{}, fmt.Errorf("uplink %q: cannot be its own bridge", o.Uplink)
	}
	lk, err := state.LockBridge(o.Bridge)
	if err != nil {
		return Result{}, err
	}
	defer lk.Unlock()
	return upLocked(o)
}

// validate checks the bridge and uplink names before anything is touched.
func (o Options) validate() error {
	if err := ifname.Validate("bridge", o.Bridge); err != nil {
		return err
	}
	return ifname.Validate("uplink", o.Uplink)
}

// UpLocked is Up for a caller that already holds the bridge lock (the CNI
// plugin and qemu-ifup, which go on to attach a port under the same lock).
func UpLocked(o Options) (Result, error) {
	if err := o.validate(); err != nil {
		return Result{}, err
	}
	return upLocked(o)
}

func upLocked(o Options) (Result, error) {
	ulk, err := state.LockUplink(o.Uplink)
	if err != nil {
		return Result{}, err
	}
	defer ulk.Unlock()
	var aside string
	j, err := readJournal(o.Bridge)
	if err == nil {
		if j, aside, err = trusted(o, j); err != nil {
			return Result{}, err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Result{}, err
	}
	fresh := j == nil
	if j != nil {
		if j.Uplink != o.Uplink {
			return Result{}, fmt.Errorf("bridge %q already holds uplink %q; run 'tapbridge down --bridge %s' first", o.Bridge, j.Uplink, o.Bridge)
		}
		if j.Phase == phaseDone {
			if problems := j.check(); len(problems) == 0 {
				return Result{SetAside: aside, Message: fmt.Sprintf("bridge %q already holds uplink %q; nothing changed", o.Bridge, o.Uplink)}, nil
			} else if j.uplinkInBridge() {
				// The migration is complete; what differs is the admin's
				// business since (an address added or removed on the
				// bridge). Replaying the snapshot would undo it.
				return Result{SetAside: aside, Message: fmt.Sprintf("bridge %q already holds uplink %q; nothing changed (differs from the snapshot: %s)", o.Bridge, o.Uplink, strings.Join(problems, "; "))}, nil
			}
		}
		o.logf("resuming from journal %s (phase %s)", journalPath(o.Bridge), j.Phase)
	} else if j, err = preflight(o); err != nil {
		if aside != "" {
			err = fmt.Errorf("%w (%s)", err, aside)
		}
		return Result{}, err
	}
	j.Phase = phaseUp
	if err := j.save(); err != nil {
		return Result{}, err
	}
	failpoint.Hit("up:journal")
	// Only a run that started the migration undoes it on failure. A run
	// that resumes one (after a crash, or a front end finding the uplink
	// out of its bridge) must not tear down a bridge VMs may be using
	// because, say, the gateway is briefly away: it reports and keeps the
	// journal.
	fail := func(err error) error {
		if fresh {
			return j.rollback(o, err)
		}
		return fmt.Errorf("%w; nothing rolled back: the journal %s is kept (fix the cause and re-run 'tapbridge up', or restore with 'tapbridge down --bridge %s')", err, journalPath(o.Bridge), o.Bridge)
	}
	if err := j.migrate(o); err != nil {
		return Result{}, fail(err)
	}
	if !o.NoProbe {
		if err := j.probe(o); err != nil {
			return Result{}, fail(err)
		}
	}
	j.Phase = phaseDone
	if err := j.save(); err != nil {
		return Result{}, err
	}
	return Result{Changed: true, Started: fresh, SetAside: aside, Message: fmt.Sprintf("bridge %q now holds uplink %q with %d addresses, %d routes and %d rules", o.Bridge, o.Uplink, len(j.Addrs), len(j.Routes), len(j.Rules))}, nil
}

// trusted returns j when it describes the live host and its snapshot still
// matches what is live; else it sets j aside and returns nil and the line
// that reports it.
func trusted(o Options, j *Journal) (*Journal, string, error) {
	why, err := j.identity()
	if err != nil {
		return nil, "", err
	}
	if why == "" && !(j.Phase == phaseDone && j.uplinkInBridge()) {
		// A snapshot about to be replayed must match the live state.
		if why, err = j.snapshotMatches(); err != nil {
			return nil, "", err
		}
		if why != "" {
			why = "its snapshot no longer matches the live state: " + why
		}
	}
	if why == "" {
		return j, "", nil
	}
	aside, err := j.setAside(o, why)
	return nil, aside, err
}

// uplinkInBridge reports whether the uplink is a port of the bridge now.
func (j *Journal) uplinkInBridge() bool {
	up, err1 := bridge.Link(j.Uplink)
	br, err2 := bridge.Get(j.Bridge)
	return err1 == nil && err2 == nil && up.Attrs().MasterIndex == br.Attrs().Index
}

// rollback restores the snapshot after a failed Up and returns the error
// that caused it, with what the rollback did.
func (j *Journal) rollback(o Options, cause error) error {
	o.logf("rolling back: %v", cause)
	if _, err := j.restoreLive(o); err != nil {
		return fmt.Errorf("%w; rollback failed too: %v (journal kept in %s; re-run 'tapbridge down --bridge %s')", cause, err, journalPath(j.Bridge), j.Bridge)
	}
	return fmt.Errorf("%w; rolled back, %q holds its addresses again", cause, j.Uplink)
}

// Down restores the uplink of bridge from the journal. It is idempotent.
func Down(o Options) (Result, error) {
	if err := ifname.Validate("bridge", o.Bridge); err != nil {
		return Result{}, err
	}
	lk, err := state.LockBridge(o.Bridge)
	if err != nil {
		return Result{}, err
	}
	defer lk.Unlock()
	return DownLocked(o)
}

// DownLocked is Down for a caller that already holds the bridge lock (a
// front end undoing the migration its own failed attach started).
//
// It acts only on a journal that describes the live host; one that does
// not is set aside and Down refuses, naming the difference. It refuses
// while VM ports remain on the bridge, unless o.Force.
func DownLocked(o Options) (Result, error) {
	j, err := readJournal(o.Bridge)
	if errors.Is(err, fs.ErrNotExist) {
		return Result{Message: fmt.Sprintf("bridge %q holds no uplink put there by tapbridge; nothing changed", o.Bridge)}, nil
	}
	if err != nil {
		return Result{}, err
	}
	o.Uplink = j.Uplink
	why, err := j.identity()
	if err != nil {
		return Result{}, err
	}
	if why == "" && j.Phase == phaseDone {
		if _, err := bridge.Get(j.Bridge); errors.Is(err, bridge.ErrNotFound) {
			why = fmt.Sprintf("bridge %q no longer exists: the migration was undone without tapbridge", j.Bridge)
		}
	}
	if why != "" && j.otherLiveNetNS() {
		// With /run shared, it may be the journal of a namespace that is
		// alive and will want it for its own down: refuse, keep it.
		return Result{}, fmt.Errorf("the journal %s does not describe this host: %s; nothing changed (it is left for that namespace)", journalPath(j.Bridge), why)
	}
	if why != "" {
		aside, err := j.setAside(o, why)
		if err != nil {
			return Result{}, err
		}
		return Result{SetAside: aside}, fmt.Errorf("%s; nothing changed", aside)
	}
	if !o.Force {
		if br, err := bridge.Get(j.Bridge); err == nil {
			ports, err := bridge.Ports(br)
			if err != nil {
				return Result{}, err
			}
			var vms []string
			for _, p := range ports {
				if p.Attrs().Name != j.Uplink {
					vms = append(vms, p.Attrs().Name)
				}
			}
			if len(vms) > 0 {
				return Result{}, fmt.Errorf("bridge %q still has %d VM ports (%s): they would lose the LAN; stop or detach them first, or run 'tapbridge down --force'", j.Bridge, len(vms), strings.Join(vms, ", "))
			}
		}
	}
	msg, err := j.restoreLive(o)
	if err != nil {
		return Result{}, err
	}
	return Result{Changed: true, Message: msg}, nil
}

// sysfs is where the Wi-Fi check looks; tests point it elsewhere.
var sysfs = "/sys/class/net"

// isWireless reports whether the link has a wireless (cfg80211) device in
// sysfs. sysfs shows the namespace it was mounted in, so the answer is
// trusted only when sysfs's ifindex for the name matches the link's.
func isWireless(l netlink.Link) bool {
	dir := filepath.Join(sysfs, l.Attrs().Name)
	idx, err := os.ReadFile(filepath.Join(dir, "ifindex"))
	if err != nil || strings.TrimSpace(string(idx)) != strconv.Itoa(l.Attrs().Index) {
		return false
	}
	for _, f := range []string{"wireless", "phy80211"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return true
		}
	}
	return false
}

// Check says why the uplink cannot go into the bridge, or nil. It changes
// nothing.
func check(o Options, up netlink.Link) error {
	a := up.Attrs()
	if isWireless(up) {
		return fmt.Errorf("uplink %q is a Wi-Fi interface: %w (Wi-Fi stations cannot be bridged; use routing or an Ethernet uplink)", o.Uplink, ErrNotBridgeable)
	}
	if _, ok := up.(*netlink.Bridge); ok {
		return fmt.Errorf("uplink %q is itself a bridge: %w", o.Uplink, ErrNotBridgeable)
	}
	if a.EncapType != "ether" || len(a.HardwareAddr) != 6 {
		return fmt.Errorf("uplink %q is not an Ethernet device (link type %s): %w", o.Uplink, a.EncapType, ErrNotBridgeable)
	}
	if a.MasterIndex != 0 {
		m, err := netlink.LinkByIndex(a.MasterIndex)
		if err != nil {
			return fmt.Errorf("uplink %q has a master (ifindex %d): %w", o.Uplink, a.MasterIndex, ErrNotBridgeable)
		}
		switch m.(type) {
		case *netlink.Bond:
			return fmt.Errorf("uplink %q is a slave of bond %q: %w (use %q as the uplink)", o.Uplink, m.Attrs().Name, ErrNotBridgeable, m.Attrs().Name)
		case *netlink.Bridge:
			return fmt.Errorf("uplink %q is already a port of bridge %q: %w (tapbridge did not put it there)", o.Uplink, m.Attrs().Name, ErrNotBridgeable)
		}
		return fmt.Errorf("uplink %q is enslaved to %s %q: %w", o.Uplink, m.Type(), m.Attrs().Name, ErrNotBridgeable)
	}
	if o.MTU > a.MTU {
		return fmt.Errorf("mtu %d exceeds the MTU %d of uplink %q", o.MTU, a.MTU, o.Uplink)
	}
	return nil
}

// preflight refuses what cannot work, before anything changes, and takes
// the snapshot.
func preflight(o Options) (*Journal, error) {
	up, err := bridge.Link(o.Uplink)
	if err != nil {
		return nil, missingError{err}
	}
	created := false
	br, err := bridge.Get(o.Bridge)
	if errors.Is(err, bridge.ErrNotFound) {
		created = true
	} else if err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	if err := check(o, up); err != nil {
		return nil, err
	}
	if br != nil && br.Attrs().MTU > up.Attrs().MTU {
		return nil, fmt.Errorf("bridge %q has MTU %d, above the MTU %d of uplink %q: the host's traffic would not fit through the uplink", o.Bridge, br.Attrs().MTU, up.Attrs().MTU, o.Uplink)
	}
	j, err := snapshot(o, up, created)
	if err == nil && br != nil {
		j.BridgeMAC = br.Attrs().HardwareAddr.String()
		j.BridgeWasDown = br.Attrs().Flags&net.FlagUp == 0
		own, err := globalAddrs(br)
		if err != nil {
			return nil, err
		}
		j.BridgeAddrs = sortedKeys(own)
	}
	return j, err
}

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

	upNow, err := bridge.Link(j.Uplink)
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

	up, err := bridge.Link(j.Uplink)
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

// rename returns rules with the interface name from replaced by to.
func rename(rules []netlink.Rule, from, to string) []netlink.Rule {
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
		nr := rename([]netlink.Rule{r}, from, to)[0]
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

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func sysctlPath(family, link, key string) string {
	return filepath.Join("/proc/sys/net", family, "conf", link, key)
}

// readSysctl returns a per-interface sysctl of the current namespace, or ""
// when it cannot be read.
func readSysctl(family, link, key string) string {
	b, err := os.ReadFile(sysctlPath(family, link, key))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// writeSysctl is best effort: a read-only /proc/sys must not block the
// migration.
func writeSysctl(family, link, key, value string) {
	_ = os.WriteFile(sysctlPath(family, link, key), []byte(value), 0o644)
}

// Ensure is the front ends' fast path: when the journal says the migration
// is complete and the uplink is still a port of the bridge, it returns at
// once (two reads, no dumps, nothing replayed); otherwise it runs
// UpLocked, which acts on the journal only when it describes the live host
// and its snapshot matches what is live, and else sets it aside and starts
// afresh from what is live now. Only when Result.Started did this call
// start the migration. The caller holds the bridge lock.
func Ensure(o Options) (Result, error) {
	if j, err := readJournal(o.Bridge); err == nil && j.Phase == phaseDone && j.Uplink == o.Uplink {
		up, err1 := bridge.Link(o.Uplink)
		br, err2 := bridge.Get(o.Bridge)
		if err1 == nil && err2 == nil && up.Attrs().MasterIndex == br.Attrs().Index {
			return Result{}, nil
		}
	}
	return UpLocked(o)
}
