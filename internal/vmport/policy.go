package vmport

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/mac"
	"github.com/tapbridge/tapbridge/internal/policy"
	"github.com/tapbridge/tapbridge/internal/state"
)

// Spec turns the configuration's port-policy keys and what is known of the
// guest into the policy of its port. The guest's MAC and addresses come from
// the front end (CNI result and args, QEMU's environment) and, failing that,
// from the configuration's "mac" and "ips". A check that needs a value
// nobody gave fails closed, with an error that says which key to set.
func Spec(c *config.Conf, p Port) (policy.Spec, error) {
	guestMAC := p.GuestMAC
	if guestMAC == nil && c.MAC != "" {
		m, err := mac.Parse(c.MAC)
		if err != nil {
			return policy.Spec{}, config.FieldError("mac", err, "invalid")
		}
		guestMAC = m
	}
	ips := p.GuestIPs
	if len(ips) == 0 {
		var err error
		if ips, err = config.ParseIPs("ips", c.IPs); err != nil {
			return policy.Spec{}, err
		}
	}
	if c.MACSpoofCheck && guestMAC == nil {
		return policy.Spec{}, config.FieldError("macSpoofCheck", nil, "needs the guest's MAC: set \"mac\" (--mac for tapbridge tap add, %s for qemu-ifup, runtimeConfig.mac or CNI_ARGS MAC= for CNI)", config.EnvMAC)
	}
	if c.IPSpoofCheck && len(ips) == 0 {
		return policy.Spec{}, config.FieldError("ipSpoofCheck", nil, "needs the guest's addresses: set \"ips\" (--ips for tapbridge tap add, %s for qemu-ifup) or configure \"ipam\"", config.EnvIPs)
	}
	s := policy.Spec{
		MAC:           guestMAC,
		IPs:           ips,
		MACSpoofCheck: c.MACSpoofCheck,
		IPSpoofCheck:  c.IPSpoofCheck,
		DHCPGuard:     orTrue(c.DHCPGuard),
		RAGuard:       orTrue(c.RAGuard),
		Isolated:      c.Isolated,
		VLAN:          c.VLAN,
		BPDUGuard:     orTrue(c.BPDUGuard),
	}
	return s, s.Validate()
}

// orTrue is the value of an optional key that defaults to on.
func orTrue(b *bool) bool { return b == nil || *b }

// applyPolicy programs spec (from Spec) on the port, which Attach has just
// made a port of br. The caller holds the policy lock (Attach takes it
// before it makes or rewires the front).
func applyPolicy(c *config.Conf, port netlink.Link, br *netlink.Bridge, spec policy.Spec) error {
	if err := policy.ApplyPort(port, br, spec); err != nil {
		if errors.Is(err, policy.ErrVLANUnsupported) {
			return fmt.Errorf("port %q: %w", port.Attrs().Name, config.FieldError("vlan", err, "%d", c.VLAN))
		}
		return err
	}
	return nil
}

// removePolicy removes whatever applyPolicy added. Idempotent.
func removePolicy(name string) error {
	lk, err := state.LockPolicy()
	if err != nil {
		return err
	}
	defer lk.Unlock()
	return policy.Remove(name)
}

// ensureVLANs turns on VLAN filtering and tags the uplink's VLANs. The
// caller holds the bridge lock.
func ensureVLANs(c *config.Conf) error {
	if err := policy.EnsureUplinkVLANs(c.Bridge, c.Uplink, c.UplinkVLANs); err != nil {
		if errors.Is(err, policy.ErrVLANUnsupported) {
			err = policy.ErrVLANUnsupported // the one line that matters
		}
		if len(c.UplinkVLANs) > 0 {
			return config.FieldError("uplinkVlans", err, "%v", c.UplinkVLANs)
		}
		return config.FieldError("vlan", err, "%d", c.VLAN)
	}
	return nil
}
