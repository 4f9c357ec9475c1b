package policy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/ifname"
	"github.com/tapbridge/tapbridge/internal/link"
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
	// ErrNoPolicy is wrapped when a port has no nftables policy.
	ErrNoPolicy = errors.New("no port policy")
)

// Spec is the policy of one VM port. The zero Spec filters nothing and
// clears the port's isolation, guard and root block.
//
// Every guard (MACSpoofCheck, IPSpoofCheck, DHCPGuard, RAGuard, BPDUGuard)
// also drops, from the VM, every VLAN-tagged frame (802.1Q, 802.1ad, 0x9100;
// a VM port is an access port), a fragmented DHCPv4 message (a first
// fragment to UDP 67 or 68), and an IPv6 packet with a fragment header that
// is ND, RA, redirect, MLD or DHCPv6 or whose headers do not all fit its
// first fragment (echo request/reply and other protocols' fragments pass).
type Spec struct {
	MAC net.HardwareAddr // the VM's own MAC (may be nil)
	IPs []netip.Addr     // the VM's allowed IPv4 and IPv6 addresses

	// MACSpoofCheck drops frames whose source MAC is not MAC, and, as
	// IPSpoofCheck with a MAC does, DHCPv4 client messages whose chaddr is
	// not MAC (or whose htype/hlen are not Ethernet/6): one VM cannot take
	// the DHCP server's pool under made-up client addresses (nor relay DHCP
	// for other clients). A client identifier (option 61) is not checked.
	MACSpoofCheck bool
	// IPSpoofCheck drops IPv4 packets whose source, ARP packets whose sender
	// IP (and, when MAC is known, sender MAC) and IPv6 packets whose source
	// is not one of the VM's addresses. DHCPv4 from 0.0.0.0 (UDP 68 -> 67)
	// and ARP probes from 0.0.0.0 stay allowed.
	//
	// The VM's addresses are IPs and its own link-local address: the
	// EUI-64 address of MAC (fe80::, MAC with the U/L bit flipped and
	// ff:fe inserted), which is what Linux guests use by default, plus any
	// fe80:: address given in IPs. No other link-local address is the
	// VM's: a guest using stable-privacy or random link-local addresses
	// (NetworkManager, Windows) needs its address in IPs. With MAC unknown
	// only the fe80:: addresses in IPs are the VM's.
	//
	// Neighbour discovery is held to the same: an NA's target must be the
	// VM's; NS, NA and RS may carry no option or exactly one link-layer
	// address option, which must hold MAC. With MAC unknown such an option
	// cannot be checked and the message is dropped (fail-closed): give the
	// MAC, or the VM has no working IPv6. From :: only duplicate address
	// detection of the VM's own addresses, router solicitations and MLD
	// reports pass. Router advertisements and redirects (when RAGuard is
	// off) are checked for their source only.
	IPSpoofCheck bool
	// DHCPGuard drops what only a DHCP server or relay agent sends, keyed
	// on the destination port and message, whatever the source port: UDP
	// to 68 (DHCPv4 client port), BOOTREPLY to 67, UDP to 546 (DHCPv6
	// client port) and ADVERTISE, REPLY, RECONFIGURE and RELAY-REPL to 547.
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
	// take part in the spanning tree, and drops every frame from the VM to
	// an IEEE 802.1D reserved group address (01:80:c2:00:00:00 to 0f: STP,
	// pause, LACP, 802.1X, LLDP...), with the kernel's STP on or off. A VM
	// may send none of them across the bridge: they are link-local to the
	// VM's port by definition, and a VM's LLDP or 802.1X would speak for
	// the host's uplink.
	BPDUGuard bool
}

// filters reports whether s needs nftables data.
func (s Spec) filters() bool {
	return s.MACSpoofCheck || s.IPSpoofCheck || s.DHCPGuard || s.RAGuard || s.BPDUGuard
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
	if r := recordOf(s).String(); len(r) > maxComment {
		return fmt.Errorf("%w: IPs: %d addresses do not fit the port's policy record (%d bytes, at most %d)", ErrInvalid, len(s.IPs), len(r), maxComment)
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
// the policy s, replacing whatever policy it had: Filter, then Configure.
// It is idempotent.
func Apply(port string, s Spec) error {
	link, br, err := validPort(port, s)
	if err != nil {
		return err
	}
	if err := Filter(port, s); err != nil {
		return err
	}
	return configure(port, link, br, s)
}

// ApplyPort is Apply for a caller that has just made link a port of br
// (vmport.Attach): it does not look the two up again.
func ApplyPort(link netlink.Link, br *netlink.Bridge, s Spec) error {
	port := link.Attrs().Name
	if err := ifname.Validate("port", port); err != nil {
		return err
	}
	if err := s.Validate(); err != nil {
		return fmt.Errorf("port %q: %w", port, err)
	}
	if err := checkVLAN(port, br, s); err != nil {
		return err
	}
	if err := Filter(port, s); err != nil {
		return err
	}
	return configure(port, link, br, s)
}

// validPort checks port and s, and that the policy fits the bridge that
// port is a port of, before anything changes.
func validPort(port string, s Spec) (netlink.Link, *netlink.Bridge, error) {
	if err := ifname.Validate("port", port); err != nil {
		return nil, nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, nil, fmt.Errorf("port %q: %w", port, err)
	}
	link, br, err := bridgePort(port)
	if err != nil {
		return nil, nil, err
	}
	if err := checkVLAN(port, br, s); err != nil {
		return nil, nil, err
	}
	return link, br, nil
}

// Filter programs the nftables part of s for port, by name: the port need
// not exist yet, nor be a bridge port, so that its frames are filtered
// from the moment it can forward. It adds and deletes elements of the
// shared sets only, in one atomic batch, replacing what port had; a Spec
// without MAC, IP, DHCP, RA or BPDU guard removes the port's data. It is
// idempotent, and costs the same at the thousandth port as at the first.
func Filter(port string, s Spec) error {
	if err := ifname.Validate("port", port); err != nil {
		return err
	}
	if err := s.Validate(); err != nil {
		return fmt.Errorf("port %q: %w", port, err)
	}
	if !s.filters() {
		if err := removeRules(port); err != nil {
			return fmt.Errorf("port %q: removing nftables filters: %w", port, err)
		}
		return nil
	}
	if err := applyRules(port, s); err != nil {
		return fmt.Errorf("port %q: programming nftables filters: %w", port, err)
	}
	return nil
}

// Configure sets the bridge port settings of s on port, a port of a bridge
// in the current network namespace: isolation, BPDU guard and root block,
// and its VLANs when s.VLAN is set or the bridge filters VLANs.
func Configure(port string, s Spec) error {
	link, br, err := validPort(port, s)
	if err != nil {
		return err
	}
	return configure(port, link, br, s)
}

func checkVLAN(port string, br *netlink.Bridge, s Spec) error {
	if s.VLAN != 0 && !vlanFiltering(br) {
		return fmt.Errorf("port %q: VLAN %d on bridge %q: %w (EnsureUplinkVLANs turns it on)", port, s.VLAN, br.Attrs().Name, ErrVLANFilteringOff)
	}
	return nil
}

func configure(port string, link netlink.Link, br *netlink.Bridge, s Spec) error {
	if err := setPortFlags(link, s.Isolated, s.BPDUGuard); err != nil {
		return fmt.Errorf("port %q: setting isolated %t, bpdu guard and root block %t: %w", port, s.Isolated, s.BPDUGuard, err)
	}
	if s.VLAN != 0 || vlanFiltering(br) {
		if err := setPortVLAN(link, br, s.VLAN); err != nil {
			return fmt.Errorf("port %q: %w", port, err)
		}
	}
	return nil
}

// setPortFlags sets the bridge port flags isolated, bpdu guard and root
// block (the last two both to guard) in one RTM_SETLINK, as `ip link set
// PORT type bridge_slave isolated on bpdu_guard on root_block on` does:
// one round trip instead of three.
func setPortFlags(link netlink.Link, isolated, guard bool) error {
	b := func(v bool) []byte {
		if v {
			return []byte{1}
		}
		return []byte{0}
	}
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_BRIDGE)
	msg.Index = int32(link.Attrs().Index)
	req.AddData(msg)
	info := nl.NewRtAttr(unix.IFLA_PROTINFO|unix.NLA_F_NESTED, nil)
	info.AddRtAttr(nl.IFLA_BRPORT_ISOLATED, b(isolated))
	info.AddRtAttr(nl.IFLA_BRPORT_GUARD, b(guard))
	info.AddRtAttr(nl.IFLA_BRPORT_PROTECT, b(guard))
	req.AddData(info)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// Remove deletes the port's nftables data (its elements of the shared
// sets). It succeeds when they (or the port, or the whole table) are
// already gone. The port's bridge settings go with the port itself.
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
	l, err := netlinksafe.LinkByName(port)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, nil, fmt.Errorf("port %q: %w", port, ErrNoPort)
		}
		return nil, nil, fmt.Errorf("port %q: %w", port, err)
	}
	m, err := link.Master(l)
	if err != nil {
		return nil, nil, fmt.Errorf("port %q: reading its master: %w", port, err)
	}
	if m == nil {
		return nil, nil, fmt.Errorf("port %q: %w: it has no master", port, ErrNotBridgePort)
	}
	br, ok := m.(*netlink.Bridge)
	if !ok {
		return nil, nil, fmt.Errorf("port %q: %w: its master %q is a %s", port, ErrNotBridgePort, m.Attrs().Name, m.Type())
	}
	return l, br, nil
}
