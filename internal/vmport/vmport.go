package vmport

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/tapbridge/tapbridge/internal/bridge"
	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/state"
	"github.com/tapbridge/tapbridge/internal/uplink"
)

// Port is a VM's host-side port and what is known of the guest behind it.
type Port struct {
	Name     string           // the TAP (host mode, QEMU hooks) or host veth (CNI netns mode)
	GuestMAC net.HardwareAddr // the guest NIC's MAC, if known
	GuestIPs []netip.Addr     // the guest's addresses, if known
}

// EnsureBridge makes the configured bridge exist and, when the config names
// an uplink, hold it; with VLANs configured, it turns on VLAN filtering. If
// that last step fails, what this call changed (a new bridge, a migrated
// uplink) is undone. The caller must hold the bridge lock.
func EnsureBridge(c *config.Conf) (*netlink.Bridge, error) {
	br, _, err := ensureBridge(c)
	return br, err
}

// ensureBridge is EnsureBridge that also returns how to undo what it
// changed, for a caller whose next step fails; undo is never nil.
func ensureBridge(c *config.Conf) (br *netlink.Bridge, undo func(), err error) {
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
		if res.Changed {
			undo = func() { _, _ = uplink.DownLocked(uplink.Options{Bridge: c.Bridge}) }
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

// Attach puts p on the configured bridge, under the bridge lock.
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
	br, undoBridge, err := ensureBridge(c)
	if err != nil {
		return err
	}
	link, err := bridge.Link(p.Name)
	if err != nil {
		undoBridge()
		return err
	}
	if err := bridge.Attach(link, br, true); err != nil {
		undoBridge() // Attach rolled the port back itself
		return err
	}
	if err := applyPolicy(c, p.Name, spec); err != nil {
		_ = removePolicy(p.Name)
		bridge.Restore(link)
		undoBridge()
		return err
	}
	return nil
}

// Detach takes the port off its bridge and removes its policy. It succeeds
// when the port is already gone.
func Detach(c *config.Conf, name string) error {
	if isRouted, err := detachExtras(name); isRouted || err != nil {
		return err
	}
	lk, err := state.LockBridge(c.Bridge)
	if err != nil {
		return err
	}
	defer lk.Unlock()
	if err := removePolicy(name); err != nil {
		return err
	}
	return bridge.Detach(name)
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
	l, err := bridge.Link(name)
	if err != nil {
		return err
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
