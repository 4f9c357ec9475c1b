package vmport

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/bridge"
	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/failpoint"
	"github.com/tapbridge/tapbridge/internal/front"
	"github.com/tapbridge/tapbridge/internal/link"
	"github.com/tapbridge/tapbridge/internal/policy"
	"github.com/tapbridge/tapbridge/internal/state"
	"github.com/tapbridge/tapbridge/internal/uplink"
)

// Port is a VM's host-side port and what is known of the guest behind it.
type Port struct {
	Name     string           // the TAP (host mode, QEMU hooks) or host veth (CNI netns mode)
	GuestMAC net.HardwareAddr // the guest NIC's MAC, if known
	GuestIPs []netip.Addr     // the guest's addresses, if known
}

// ensureSegment makes the VM's LAN segment ready for a port: the bridge
// exists, holds the configured uplink (migrating it, through package
// uplink, when it does not yet), and filters VLANs when the configuration
// names any. It returns how to undo what this call started, for a caller
// whose next step fails; undo is never nil. The caller holds the bridge
// lock.
func ensureSegment(c *config.Conf) (br *netlink.Bridge, undo func(), err error) {
	undo = func() {}
	if c.Uplink != "" {
		timeout, err := c.ProbeDuration()
		if err != nil {
			return nil, undo, err
		}
		res, err := uplink.Ensure(uplink.Options{Bridge: c.Bridge, Uplink: c.Uplink, MTU: c.MTU, ProbeTimeout: timeout})
		if err != nil {
			return nil, undo, err
		}
		if res.SetAside != "" {
			// One line for the operator (QEMU's stderr, the runtime's log).
			fmt.Fprintln(os.Stderr, "tapbridge: "+res.SetAside)
		}
		if res.Started { // not a resumed migration: that one is not ours to undo
			undo = func() { _, _ = uplink.DownLocked(uplink.Options{Bridge: c.Bridge, Force: true}) }
		}
		if res.Changed {
			rehomeRouted()
		}
	}
	br, created, err := bridge.Ensure(bridge.Spec{Name: c.Bridge, MTU: c.MTU})
	if errors.Is(err, bridge.ErrNotBridge) {
		return nil, undo, fmt.Errorf("bridge %q exists and is not a bridge: %w", c.Bridge, err)
	}
	if err != nil {
		return nil, undo, err
	}
	if created {
		undo = func() { _ = bridge.Delete(c.Bridge) }
	}
	if c.VLAN == 0 && len(c.UplinkVLANs) == 0 {
		return br, undo, nil
	}
	if err := ensureVLANs(c); err != nil {
		undo()
		return nil, func() {}, err
	}
	br, err = bridge.Get(c.Bridge) // with VLAN filtering on
	return br, undo, err
}

// Attach puts p on the configured bridge, under the bridge lock. A TAP
// (the QEMU hooks, the helper, `tap add`, CNI host mode) joins through a
// front (package front), so that its tenant cannot change the MAC the
// bridge knows the port by; the host end of a veth (CNI netns mode) joins
// itself. The port is enslaved while it is down, gets its policy, and only
// then comes up: it never forwards a frame its policy has not seen.
func Attach(c *config.Conf, p Port) error {
	if c.Routed {
		return attachRouted(c, p)
	}
	if c.UplinkMACs.Enabled() {
		return attachKnownMAC(c, p)
	}
	lk, err := state.LockBridge(c.Bridge)
	if err != nil {
		return err
	}
	defer lk.Unlock()
	spec, err := Spec(c, p)
	if err != nil {
		return fmt.Errorf("port %q: %w", p.Name, err) // before anything changes
	}
	br, undoBridge, err := ensureSegment(c)
	if err != nil {
		return err
	}
	link, err := link.Get(p.Name)
	if err != nil {
		undoBridge()
		return err
	}
	// The policy lock is held from before the front is made (or the front
	// of an earlier TAP of the same name rewired, see front.Create) until
	// the port's policy is in place: a Prune, which holds it, never finds
	// the front stale and deletes it once it stands for this TAP.
	plk, err := state.LockPolicy()
	if err != nil {
		undoBridge()
		return err
	}
	defer plk.Unlock()
	undoFront := func() {}
	if _, isTAP := link.(*netlink.Tuntap); isTAP {
		var created bool
		if link, created, err = front.Create(link, br.Attrs().MTU); err != nil {
			undoBridge()
			return fmt.Errorf("TAP %q: %w", p.Name, err)
		}
		if created {
			undoFront = func() { _ = front.Delete(p.Name) }
		}
	}
	port := link.Attrs().Name
	fail := func(err error) error {
		_ = policy.Remove(port) // under the policy lock
		bridge.Restore(link)
		undoFront()
		undoBridge()
		return err
	}
	if m := link.Attrs().MasterIndex; m != 0 && m != br.Attrs().Index {
		// a rewired front that was a port of another bridge
		if _, isVeth := link.(*netlink.Veth); isVeth && port != p.Name {
			if err := netlink.LinkSetNoMaster(link); err != nil {
				return fail(fmt.Errorf("releasing %q from its earlier bridge: %w", port, err))
			}
			link.Attrs().MasterIndex = 0
		}
	}
	if err := bridge.Attach(link, br, true); err != nil {
		return fail(err)
	}
	failpoint.Hit("attach:enslaved") // on the bridge, down, no policy yet
	if err := applyPolicy(c, link, br, spec); err != nil {
		return fail(err)
	}
	// The host has no business on a bridge port's own IP stack: an IPv6
	// link-local address there would send DAD, router solicitations and
	// MLD reports towards the guest.
	front.DisableIPv6(port)
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(link); err != nil {
			return fail(fmt.Errorf("bringing %q up: %w", port, err))
		}
	}
	return nil
}

// Detach takes the port off its bridge and then removes its policy. name is
// what Attach was given: a TAP, whose front is deleted, or a veth's host
// end. It succeeds when the port is already gone.
func Detach(c *config.Conf, name string) error {
	if isRouted, err := detachExtras(name); isRouted || err != nil {
		return err
	}
	lk, err := state.LockBridge(c.Bridge)
	if err != nil {
		return err
	}
	defer lk.Unlock()
	fp, _, err := front.Port(name)
	switch {
	case err == nil:
		// Down and off the bridge first; then the front's deletion (an
		// unregistration, which waits for RCU grace periods) and the
		// policy's removal (an nftables commit, which waits for one too)
		// overlap instead of adding up.
		port := fp.Attrs().Name
		if fp.Attrs().Flags&net.FlagUp != 0 {
			if err := netlink.LinkSetDown(fp); err != nil && !errors.Is(err, unix.ENODEV) {
				return fmt.Errorf("taking %q down: %w", port, err)
			}
		}
		if fp.Attrs().MasterIndex != 0 {
			if err := netlink.LinkSetNoMaster(fp); err != nil && !errors.Is(err, unix.ENODEV) {
				return fmt.Errorf("detaching %q from its bridge: %w", port, err)
			}
		}
		failpoint.Hit("detach:unbridged") // off the bridge, policy still there
		return front.DeletePortWhile(name, fp, func() error { return removePolicy(port) })
	case !errors.Is(err, link.ErrNotFound):
		return err
	}
	// A veth's host end, or a TAP attached by an older tapbridge directly;
	// or a TAP whose front a killed detach already deleted, leaving the
	// front's policy.
	if err := bridge.Detach(name); err != nil {
		return err
	}
	port, _ := front.Names(name)
	if err := removePolicy(port); err != nil {
		return err
	}
	return removePolicy(name)
}

// BridgePort returns the name of the bridge port that stands for name: the
// port of its front for a TAP that has one, else name itself.
func BridgePort(name string) string {
	if fp, _, err := front.Port(name); err == nil {
		return fp.Attrs().Name
	}
	return name
}

// BridgeOf returns the name of the bridge that the port standing for name
// (BridgePort) is on, or "" when it is on none or gone.
func BridgeOf(name string) string {
	l, err := link.Get(BridgePort(name))
	if err != nil {
		return ""
	}
	master, _ := link.MasterName(l)
	return master
}

// Check verifies that the port is up on the configured bridge with the
// bridge's MTU.
func Check(c *config.Conf, name string) error {
	if c.Routed {
		return checkRouted(name)
	}
	br, err := bridge.Get(c.Bridge)
	if err != nil {
		return err
	}
	l, err := link.Get(name)
	if err != nil {
		return err
	}
	if _, isTAP := l.(*netlink.Tuntap); isTAP {
		if l, err = front.Check(l); err != nil {
			return fmt.Errorf("TAP %q: %w", name, err)
		}
		name = l.Attrs().Name
	}
	a := l.Attrs()
	switch {
	case a.MasterIndex != br.Attrs().Index:
		return fmt.Errorf("%q is not a port of bridge %q", name, c.Bridge)
	case a.MTU != br.Attrs().MTU:
		return fmt.Errorf("%q has MTU %d, bridge %q has %d", name, a.MTU, c.Bridge, br.Attrs().MTU)
	case a.Flags&net.FlagUp == 0:
		return fmt.Errorf("%q is down", name)
	}
	return nil
}

// RemoveUnusedBridge deletes the bridge that a failed attach created, if no
// port (another attachment's, or an uplink) has joined it since. It takes
// the bridge lock, as every change to the bridge does.
func RemoveUnusedBridge(c *config.Conf) {
	lk, err := state.LockBridge(c.Bridge)
	if err != nil {
		return
	}
	defer lk.Unlock()
	br, err := bridge.Get(c.Bridge)
	if err != nil {
		return
	}
	if ports, err := bridge.Ports(br); err == nil && len(ports) == 0 {
		_ = bridge.Delete(c.Bridge)
	}
}
