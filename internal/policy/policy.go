package policy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	"github.com/tapbridge/tapbridge/internal/ifname"
)

var (
	// ErrInvalid is wrapped by every error of Spec.Validate.
	ErrInvalid = errors.New("invalid port policy")
	// ErrNoPort is wrapped when the port does not exist.
	ErrNoPort = errors.New("no such port")
	// ErrNotBridgePort is wrapped when the port is not a port of a bridge.
	ErrNotBridgePort = errors.New("not a bridge port")
	// ErrVLANUnsupported is wrapped when the kernel has no bridge VLAN
	// filtering (CONFIG_BRIDGE_VLAN_FILTERING).
	ErrVLANUnsupported = errors.New("bridge vlan filtering is not supported by this kernel (CONFIG_BRIDGE_VLAN_FILTERING)")
	// ErrVLANFilteringOff is wrapped when a port asks for an access VLAN on
	// a bridge whose vlan_filtering is off: call EnsureUplinkVLANs first.
	ErrVLANFilteringOff = errors.New("vlan_filtering is off on the bridge")
)

// Spec is the policy of one VM port. The zero Spec filters nothing and
// clears the port's isolation, guard and root block.
type Spec struct {
	MAC net.HardwareAddr // the VM's own MAC (may be nil)
	IPs []netip.Addr     // the VM's allowed IPv4 and IPv6 addresses

	// MACSpoofCheck drops frames whose source MAC is not MAC.
	MACSpoofCheck bool
	// IPSpoofCheck drops IPv4 packets whose source, ARP packets whose sender
	// IP (and, when MAC is known, sender MAC), IPv6 packets whose source and
	// neighbour advertisements whose target is not one of IPs. DHCPv4 from
	// 0.0.0.0, ARP probes from 0.0.0.0, IPv6 link-local (fe80::/10) and
	// ICMPv6 from :: (duplicate address detection of the VM's own or a
	// link-local address, router solicitations, MLD reports) stay allowed.
	// Frames carrying a second VLAN tag (whose IP header the filter cannot
	// see) are dropped.
	IPSpoofCheck bool
	// DHCPGuard drops DHCPv4 server messages (UDP 67 -> 68) and DHCPv6
	// server messages (UDP 547 -> 546).
	DHCPGuard bool
	// RAGuard drops ICMPv6 router advertisements (134) and redirects (137).
	RAGuard bool
	// Isolated sets bridge port isolation: isolated ports cannot talk to
	// each other, only to non-isolated ports (the uplink).
	Isolated bool
	// VLAN is the port's access VLAN (1..4094), 0 for none. The port gets
	// it as PVID untagged and no other VLAN. Needs vlan_filtering on the
	// bridge (EnsureUplinkVLANs).
	VLAN int
	// BPDUGuard sets the port's BPDU guard and root block, so a VM cannot
	// take part in the spanning tree.
	BPDUGuard bool
}

// filters reports whether s needs an nftables chain.
func (s Spec) filters() bool {
	return s.MACSpoofCheck || s.IPSpoofCheck || s.DHCPGuard || s.RAGuard
}

// Validate says what is wrong with s, naming the field.
func (s Spec) Validate() error {
	if s.MAC != nil {
		if len(s.MAC) != 6 {
			return fmt.Errorf("%w: MAC %q: not a 6-byte Ethernet address", ErrInvalid, s.MAC)
		}
		if s.MAC[0]&1 != 0 {
			return fmt.Errorf("%w: MAC %q: a multicast address cannot be a VM's own", ErrInvalid, s.MAC)
		}
		if isZero(s.MAC) {
			return fmt.Errorf("%w: MAC %q: all zeroes", ErrInvalid, s.MAC)
		}
	}
	if s.MACSpoofCheck && s.MAC == nil {
		return fmt.Errorf("%w: MACSpoofCheck needs the VM's MAC (MAC is empty)", ErrInvalid)
	}
	for _, ip := range s.IPs {
		switch {
		case !ip.IsValid():
			return fmt.Errorf("%w: IPs: invalid address", ErrInvalid)
		case ip.Zone() != "":
			return fmt.Errorf("%w: IPs: %s: an address with a zone cannot be filtered", ErrInvalid, ip)
		case ip.Unmap().IsUnspecified(), ip.IsMulticast(), ip.Unmap().IsLoopback(), ip.Unmap() == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
			return fmt.Errorf("%w: IPs: %s cannot be a VM's own address", ErrInvalid, ip)
		}
	}
	if s.IPSpoofCheck && len(s.IPs) == 0 {
		return fmt.Errorf("%w: IPSpoofCheck needs the VM's addresses (IPs is empty)", ErrInvalid)
	}
	if s.VLAN < 0 || s.VLAN > 4094 {
		return fmt.Errorf("%w: VLAN %d: must be 1..4094, or 0 for none", ErrInvalid, s.VLAN)
	}
	return nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Apply gives port (a port of a bridge in the current network namespace)
// the policy s, replacing whatever policy it had. It is idempotent.
//
// The port's nftables chain and map element are added or replaced in one
// atomic batch; a Spec without MAC, IP, DHCP or RA filtering removes them.
// Isolation, BPDU guard and root block are then set to s's values, and the
// port's VLANs are set when s.VLAN is set or the bridge filters VLANs.
func Apply(port string, s Spec) error {
	if err := ifname.Validate("port", port); err != nil {
		return err
	}
	if err := s.Validate(); err != nil {
		return fmt.Errorf("port %q: %w", port, err)
	}
	link, br, err := bridgePort(port)
	if err != nil {
		return err
	}
	if s.VLAN != 0 && !vlanFiltering(br) {
		return fmt.Errorf("port %q: VLAN %d on bridge %q: %w (EnsureUplinkVLANs turns it on)", port, s.VLAN, br.Attrs().Name, ErrVLANFilteringOff)
	}

	if s.filters() {
		if err := applyRules(port, s); err != nil {
			return fmt.Errorf("port %q: programming nftables filters: %w", port, err)
		}
	} else if err := removeRules(port); err != nil {
		return fmt.Errorf("port %q: removing nftables filters: %w", port, err)
	}

	if err := netlink.LinkSetIsolated(link, s.Isolated); err != nil {
		return fmt.Errorf("port %q: setting isolated %t: %w", port, s.Isolated, err)
	}
	if err := netlink.LinkSetGuard(link, s.BPDUGuard); err != nil {
		return fmt.Errorf("port %q: setting bpdu guard %t: %w", port, s.BPDUGuard, err)
	}
	if err := netlink.LinkSetRootBlock(link, s.BPDUGuard); err != nil {
		return fmt.Errorf("port %q: setting root block %t: %w", port, s.BPDUGuard, err)
	}
	if s.VLAN != 0 || vlanFiltering(br) {
		if err := setPortVLAN(link, br, s.VLAN); err != nil {
			return fmt.Errorf("port %q: %w", port, err)
		}
	}
	return nil
}

// Remove deletes the port's nftables chain and map element. It succeeds when
// they (or the port, or the whole table) are already gone. The port's bridge
// settings go with the port itself.
func Remove(port string) error {
	if err := ifname.Validate("port", port); err != nil {
		return err
	}
	if err := removeRules(port); err != nil {
		return fmt.Errorf("port %q: removing nftables filters: %w", port, err)
	}
	return nil
}

// bridgePort returns the port and the bridge it is a port of.
func bridgePort(port string) (netlink.Link, *netlink.Bridge, error) {
	link, err := netlinksafe.LinkByName(port)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, nil, fmt.Errorf("port %q: %w", port, ErrNoPort)
		}
		return nil, nil, fmt.Errorf("port %q: %w", port, err)
	}
	master := link.Attrs().MasterIndex
	if master == 0 {
		return nil, nil, fmt.Errorf("port %q: %w: it has no master", port, ErrNotBridgePort)
	}
	m, err := netlink.LinkByIndex(master)
	if err != nil {
		return nil, nil, fmt.Errorf("port %q: reading its master (index %d): %w", port, master, err)
	}
	br, ok := m.(*netlink.Bridge)
	if !ok {
		return nil, nil, fmt.Errorf("port %q: %w: its master %q is a %s", port, ErrNotBridgePort, m.Attrs().Name, m.Type())
	}
	return link, br, nil
}
