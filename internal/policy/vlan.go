package policy

import (
	"errors"
	"fmt"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/ifname"
	"github.com/tapbridge/tapbridge/internal/nldump"
)

// EnsureUplinkVLANs makes bridge filter VLANs and uplink (a port of bridge;
// "" for none) carry vlans tagged. The bridge itself ("self") and the uplink
// keep the bridge's default PVID (1) untagged, set before filtering is
// turned on, so the host's own address on the bridge and the LAN's untagged
// traffic keep working throughout. It only adds: VLANs already on the
// uplink stay. It is idempotent.
func EnsureUplinkVLANs(bridge, uplink string, vlans []int) error {
	if err := ifname.Validate("bridge", bridge); err != nil {
		return err
	}
	if uplink != "" {
		if err := ifname.Validate("uplink", uplink); err != nil {
			return err
		}
	}
	for _, v := range vlans {
		if v < 1 || v > 4094 {
			return fmt.Errorf("bridge %q: %w: VLAN %d: must be 1..4094", bridge, ErrInvalid, v)
		}
	}
	l, err := netlinksafe.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %q: %w", bridge, err)
	}
	br, ok := l.(*netlink.Bridge)
	if !ok {
		return fmt.Errorf("bridge %q: is a %s, not a bridge", bridge, l.Type())
	}
	pvid := defaultPVID(br)
	if err := netlink.BridgeVlanAdd(br, pvid, true, true, true, false); err != nil {
		return fmt.Errorf("bridge %q: adding VLAN %d pvid untagged to the bridge itself: %w", bridge, pvid, vlanErr(err))
	}
	if uplink != "" {
		up, err := netlinksafe.LinkByName(uplink)
		if err != nil {
			return fmt.Errorf("uplink %q: %w", uplink, err)
		}
		if up.Attrs().MasterIndex != br.Attrs().Index {
			return fmt.Errorf("uplink %q: %w: not a port of bridge %q", uplink, ErrNotBridgePort, bridge)
		}
		if err := netlink.BridgeVlanAdd(up, pvid, true, true, false, false); err != nil {
			return fmt.Errorf("uplink %q: adding VLAN %d pvid untagged: %w", uplink, pvid, vlanErr(err))
		}
		for _, v := range vlans {
			if uint16(v) == pvid {
				continue // stays untagged: re-adding it tagged would take the host off the LAN
			}
			if err := netlink.BridgeVlanAdd(up, uint16(v), false, false, false, false); err != nil {
				return fmt.Errorf("uplink %q: adding VLAN %d tagged: %w", uplink, v, vlanErr(err))
			}
		}
	}
	if !vlanFiltering(br) {
		// Only the filtering flag: a Bridge read back from the kernel
		// would also write its MAC, MTU and timers. The bridge is named,
		// not indexed: given both, the kernel takes the name as a rename,
		// and 6.1 (Debian 12) refuses any rename of an up device with
		// EBUSY, even to the name it already has.
		on := true
		attrs := netlink.NewLinkAttrs()
		attrs.Name = br.Attrs().Name
		if err := netlink.LinkModify(&netlink.Bridge{LinkAttrs: attrs, VlanFiltering: &on}); err != nil {
			return fmt.Errorf("bridge %q: turning on vlan_filtering: %w", bridge, vlanErr(err))
		}
	}
	return nil
}

// setPortVLAN makes vlan (the bridge's default PVID when 0) the port's only
// VLAN, as PVID untagged. The new VLAN is added before the old ones go.
func setPortVLAN(link netlink.Link, br *netlink.Bridge, vlan int) error {
	want := uint16(vlan)
	if want == 0 {
		want = defaultPVID(br)
	}
	all, err := nldump.BridgeVlanList()
	if err != nil {
		return fmt.Errorf("listing bridge VLANs: %w", err)
	}
	if err := netlink.BridgeVlanAdd(link, want, true, true, false, false); err != nil {
		return fmt.Errorf("adding VLAN %d pvid untagged: %w", want, vlanErr(err))
	}
	for _, v := range all[int32(link.Attrs().Index)] {
		if v.Vid == want {
			continue
		}
		if err := netlink.BridgeVlanDel(link, v.Vid, false, false, false, false); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("removing VLAN %d: %w", v.Vid, vlanErr(err))
		}
	}
	return nil
}

func vlanFiltering(br *netlink.Bridge) bool {
	return br.VlanFiltering != nil && *br.VlanFiltering
}

// defaultPVID is the VLAN untagged traffic belongs to on br: 1 unless the
// bridge was told otherwise.
func defaultPVID(br *netlink.Bridge) uint16 {
	if br.VlanDefaultPVID != nil && *br.VlanDefaultPVID != 0 {
		return *br.VlanDefaultPVID
	}
	return 1
}

// vlanErr says that EOPNOTSUPP from a VLAN operation means a kernel built
// without bridge VLAN filtering.
func vlanErr(err error) error {
	if errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("%w: %w", ErrVLANUnsupported, err)
	}
	return err
}
