package bridge

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/ifname"
	"github.com/tapbridge/tapbridge/internal/link"
	"github.com/tapbridge/tapbridge/internal/mac"
	"github.com/tapbridge/tapbridge/internal/nldump"
)

// MaxPorts is how many ports the kernel lets a bridge have.
const MaxPorts = 1023

// ErrFull matches a bridge that has MaxPorts ports already.
var ErrFull = errors.New("no free port number")

// ErrNotBridge matches a name that exists but is not a bridge.
var ErrNotBridge = errors.New("not a bridge")

// Spec describes the bridge to ensure.
type Spec struct {
	Name string
	// MAC is set at creation. Nil means a random locally administered MAC,
	// still set explicitly so that ports never change it.
	MAC net.HardwareAddr
	// MTU is set at creation; 0 means the kernel default (1500).
	MTU int
}

// Get returns the bridge called name, or an error matching link.ErrNotFound or
// ErrNotBridge.
func Get(name string) (*netlink.Bridge, error) {
	l, err := link.Get(name)
	if err != nil {
		return nil, err
	}
	br, ok := l.(*netlink.Bridge)
	if !ok {
		return nil, fmt.Errorf("%q is a %s device: %w", name, l.Type(), ErrNotBridge)
	}
	return br, nil
}

// Ensure returns the bridge s.Name, creating it (and bringing it up) when it
// does not exist. created reports whether this call made it.
func Ensure(s Spec) (br *netlink.Bridge, created bool, err error) {
	if err := ifname.Validate("bridge", s.Name); err != nil {
		return nil, false, err
	}
	br, err = Get(s.Name)
	if err == nil {
		if br.Attrs().Flags&net.FlagUp == 0 {
			if err := netlink.LinkSetUp(br); err != nil {
				return nil, false, fmt.Errorf("bringing bridge %q up: %w", s.Name, err)
			}
			br.Attrs().Flags |= net.FlagUp
		}
		return br, false, nil
	}
	if !errors.Is(err, link.ErrNotFound) {
		return nil, false, err
	}
	hw := s.MAC
	if hw == nil {
		if hw, err = mac.Random(); err != nil {
			return nil, false, err
		}
	}
	if err := create(s.Name, hw, s.MTU); err != nil {
		if errors.Is(err, unix.EEXIST) {
			// Made meanwhile by someone not holding our lock: use it if it is
			// a bridge.
			br, err := Get(s.Name)
			return br, false, err
		}
		return nil, false, fmt.Errorf("creating bridge %q: %w", s.Name, err)
	}
	br, err = Get(s.Name)
	if err == nil {
		err = netlink.LinkSetUp(br)
		br.Attrs().Flags |= net.FlagUp
	}
	if err != nil {
		_ = Delete(s.Name)
		return nil, false, fmt.Errorf("bringing new bridge %q up: %w", s.Name, err)
	}
	return br, true, nil
}

// Delete removes the bridge name. It succeeds if the bridge is already gone.
func Delete(name string) error {
	br, err := Get(name)
	if errors.Is(err, link.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := netlink.LinkDel(br); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("deleting bridge %q: %w", name, err)
	}
	return nil
}

// Ports returns the links enslaved to br.
func Ports(br netlink.Link) ([]netlink.Link, error) {
	// A partial dump would report an empty bridge, which is then deleted.
	links, err := nldump.LinkList()
	if err != nil {
		return nil, err
	}
	var ports []netlink.Link
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			ports = append(ports, l)
		}
	}
	return ports, nil
}

// Attach makes port a port of br: MTU set to the bridge's, MAC first byte
// set to 0xFE (setMAC), and enslaved. It leaves the port's up state alone:
// a port that is down forwards nothing, so the caller brings it up once its
// policy is in place. It is idempotent. A port that
// already has another master is refused before anything changes; if a later
// step fails, the port is put back as it was.
func Attach(port netlink.Link, br *netlink.Bridge, setMAC bool) (err error) {
	a := port.Attrs()
	if a.MasterIndex != 0 && a.MasterIndex != br.Attrs().Index {
		return fmt.Errorf("%q is already a port of another master (ifindex %d)", a.Name, a.MasterIndex)
	}
	defer func() {
		if err != nil {
			restore(port)
		}
	}()
	if br.Attrs().MTU != 0 && a.MTU != br.Attrs().MTU {
		if err := netlink.LinkSetMTU(port, br.Attrs().MTU); err != nil {
			return fmt.Errorf("setting MTU of %q to %d (the MTU of bridge %q): %w", a.Name, br.Attrs().MTU, br.Attrs().Name, err)
		}
	}
	if setMAC && len(a.HardwareAddr) == 6 && a.HardwareAddr[0] != 0xFE {
		if err := netlink.LinkSetHardwareAddr(port, mac.HostPort(a.HardwareAddr)); err != nil {
			return fmt.Errorf("setting MAC of %q: %w", a.Name, err)
		}
	}
	if a.MasterIndex != br.Attrs().Index {
		if err := netlink.LinkSetMasterByIndex(port, br.Attrs().Index); err != nil {
			if errors.Is(err, unix.EXFULL) {
				// Port numbers are 10 bits and 0 is reserved (BR_MAX_PORTS).
				return fmt.Errorf("attaching %q: bridge %q is full (%d ports): %w", a.Name, br.Attrs().Name, MaxPorts, ErrFull)
			}
			return fmt.Errorf("attaching %q to bridge %q: %w", a.Name, br.Attrs().Name, err)
		}
	}
	return nil
}

// Restore puts port back as it was before Attach: its master, MTU, MAC and
// up state as recorded in port's attributes. Best effort; for rollbacks.
func Restore(port netlink.Link) { restore(port) }

func restore(port netlink.Link) {
	a := port.Attrs()
	cur, err := link.Get(a.Name)
	if err != nil {
		return
	}
	c := cur.Attrs()
	if a.MasterIndex == 0 && c.MasterIndex != 0 {
		_ = netlink.LinkSetNoMaster(cur)
	}
	if a.Flags&net.FlagUp == 0 && c.Flags&net.FlagUp != 0 {
		_ = netlink.LinkSetDown(cur)
	}
	if c.MTU != a.MTU {
		_ = netlink.LinkSetMTU(cur, a.MTU)
	}
	if c.HardwareAddr.String() != a.HardwareAddr.String() {
		_ = netlink.LinkSetHardwareAddr(cur, a.HardwareAddr)
	}
}

// Detach releases port from its bridge. It succeeds if the port is gone or
// not enslaved.
func Detach(name string) error {
	l, err := link.Get(name)
	if errors.Is(err, link.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if l.Attrs().MasterIndex == 0 {
		return nil
	}
	if err := netlink.LinkSetNoMaster(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("detaching %q from its bridge: %w", name, err)
	}
	return nil
}

// create makes the bridge in one RTM_NEWLINK message, so that it never
// exists, even for a moment, with another MAC, MTU, STP state or forward
// delay than the ones asked for.
func create(name string, hw net.HardwareAddr, mtu int) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	req.AddData(nl.NewRtAttr(unix.IFLA_ADDRESS, []byte(hw)))
	if mtu > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(mtu))))
	}
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	data.AddRtAttr(nl.IFLA_BR_FORWARD_DELAY, nl.Uint32Attr(0))
	data.AddRtAttr(nl.IFLA_BR_STP_STATE, nl.Uint32Attr(0))
	req.AddData(info)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}
