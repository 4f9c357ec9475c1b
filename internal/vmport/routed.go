package vmport

import (
	"fmt"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/mac"
	"github.com/tapbridge/tapbridge/internal/macguard"
	"github.com/tapbridge/tapbridge/internal/routed"
	"github.com/tapbridge/tapbridge/internal/state"
)

// attachRouted attaches p routed ("routed": true): no bridge, the guest's
// addresses routed to the port (package routed). The addresses are
// required; the source-address check is always on.
func attachRouted(c *config.Conf, p Port) error {
	ips := p.GuestIPs
	if len(ips) == 0 {
		var err error
		if ips, err = config.ParseIPs("ips", c.IPs); err != nil {
			return err
		}
	}
	if len(ips) == 0 {
		return fmt.Errorf("port %q: %w", p.Name, config.FieldError("ips", nil, "routed mode needs the VM's addresses: set \"ips\" (--ips for tapbridge tap add, %s for qemu-ifup) or configure \"ipam\"", config.EnvIPs))
	}
	// Serialized with attaches to the bridge, which may be moving the
	// uplink (the proxy entries go where the host's addresses are).
	lk, err := state.LockBridge(c.Bridge)
	if err != nil {
		return err
	}
	defer lk.Unlock()
	err = routed.Attach(routed.Spec{
		Port:      p.Name,
		Uplink:    c.Uplink,
		IPs:       ips,
		MTU:       c.MTU,
		Isolated:  c.Isolated,
		DHCPGuard: orTrue(c.DHCPGuard),
		RAGuard:   orTrue(c.RAGuard),
	})
	if err != nil {
		return fmt.Errorf("routed port %q (uplink %q): %w", p.Name, c.Uplink, err)
	}
	return nil
}

// attachKnownMAC lets the guest's MAC out of the uplink ("uplinkMACs"),
// then attaches p as usual; on failure the MAC is withdrawn again.
func attachKnownMAC(c *config.Conf, p Port) error {
	guest := p.GuestMAC
	if guest == nil && c.MAC != "" {
		m, err := mac.Parse(c.MAC)
		if err != nil {
			return config.FieldError("mac", err, "invalid")
		}
		guest = m
	}
	listed, err := c.UplinkMACs.Parsed()
	if err != nil {
		return err
	}
	if err := macguard.Allow(c.Uplink, p.Name, guest, listed); err != nil {
		return err
	}
	cc := *c
	cc.UplinkMACs = nil
	if err := Attach(&cc, p); err != nil {
		_ = macguard.Forget(p.Name)
		return err
	}
	return nil
}

// detachExtras withdraws the port's MAC from the uplink guard and, when
// the port is a routed one, detaches it; routed reports that case, in
// which nothing is left to do.
func detachExtras(name string) (isRouted bool, err error) {
	if err := macguard.Forget(name); err != nil {
		return false, err
	}
	isRouted, err = routed.Detach(name)
	if err != nil {
		return true, fmt.Errorf("routed port %q: %w", name, err)
	}
	return isRouted, nil
}

// checkRouted verifies a routed port: attached, up, its routes in place.
func checkRouted(name string) error {
	return routed.Check(name)
}

// pruneRouted detaches the routed ports that are gone.
func pruneRouted() ([]string, error) {
	return routed.Prune()
}

// rehomeRouted moves the routed ports' proxy entries and sysctls to where
// the uplink's addresses now are, after the uplink moved into a bridge or
// out of it. Best effort: a routed VM is not worth failing a bridged
// attach, or a migration, for; RehomeRouted reports what failed.
func rehomeRouted() { _, _ = routed.Rehome() }

// RehomeRouted is rehomeRouted for `tapbridge up` and `down`: it returns
// the ports it moved and what failed.
func RehomeRouted() ([]string, error) { return routed.Rehome() }
