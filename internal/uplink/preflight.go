package uplink

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"

	"github.com/tapbridge/tapbridge/internal/bridge"
	"github.com/tapbridge/tapbridge/internal/link"
)

// checkBridgeable says why the uplink cannot go into the bridge, or nil. It changes
// nothing.
func checkBridgeable(o Options, up netlink.Link) error {
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
	if m, err := link.Master(up); err != nil {
		return fmt.Errorf("uplink %q has a master (ifindex %d): %w", o.Uplink, a.MasterIndex, ErrNotBridgeable)
	} else if m != nil {
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
	up, err := link.Get(o.Uplink)
	if err != nil {
		return nil, missingError{err}
	}
	created := false
	br, err := bridge.Get(o.Bridge)
	if errors.Is(err, link.ErrNotFound) {
		created = true
	} else if err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	if err := checkBridgeable(o, up); err != nil {
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
