package tap

import (
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/ifname"
	"github.com/tapbridge/tapbridge/internal/link"
)

// NoID means "no owner" or "no group": any process with CAP_NET_ADMIN may
// open the TAP, and no other.
const NoID = -1

// ErrNotTAP matches a name that exists but is not a TAP device.
var ErrNotTAP = errors.New("not a TAP device")

// ErrBusy matches a TAP that another process (usually a QEMU) holds open.
var ErrBusy = errors.New("TAP is in use by another process")

// Options are the properties of a TAP that only its creation sets.
type Options struct {
	Owner      int // uid allowed to open it, or NoID
	Group      int // gid allowed to open it, or NoID
	MultiQueue bool
	VnetHdr    bool
}

// DefaultOptions is a TAP with neither owner nor group.
var DefaultOptions = Options{Owner: NoID, Group: NoID}

func (o Options) flags() uint16 {
	f := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if o.VnetHdr {
		f |= unix.IFF_VNET_HDR
	}
	if o.MultiQueue {
		f |= unix.IFF_MULTI_QUEUE
	}
	return f
}

// open attaches a new /dev/net/tun descriptor to the TAP name (a pattern
// such as "tap%d" lets the kernel choose), creating it if needed, and
// returns the descriptor and the TAP's real name.
func open(name string, o Options) (*os.File, string, error) {
	if err := o.checkIDs(); err != nil {
		return nil, "", fmt.Errorf("TAP %q: %w", name, err)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", fmt.Errorf("opening /dev/net/tun: %w", err)
	}
	req, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, "", fmt.Errorf("TAP %q: %w", name, err)
	}
	req.SetUint16(o.flags())
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, req); err != nil {
		unix.Close(fd)
		switch {
		case errors.Is(err, unix.EBUSY):
			return nil, "", fmt.Errorf("TAP %q: %w (is a QEMU still running with it?)", name, ErrBusy)
		case errors.Is(err, unix.EINVAL):
			return nil, "", fmt.Errorf("TAP %q: exists with other flags (vnet_hdr/multi_queue) or is not a TAP: %w", name, err)
		}
		return nil, "", fmt.Errorf("creating TAP %q: %w", name, err)
	}
	real := req.Name()
	if o.Owner != NoID {
		if err := unix.IoctlSetInt(fd, unix.TUNSETOWNER, o.Owner); err != nil {
			unix.Close(fd)
			return nil, "", fmt.Errorf("setting owner of TAP %q to uid %d: %w", real, o.Owner, err)
		}
	}
	if o.Group != NoID {
		if err := unix.IoctlSetInt(fd, unix.TUNSETGROUP, o.Group); err != nil {
			unix.Close(fd)
			return nil, "", fmt.Errorf("setting group of TAP %q to gid %d: %w", real, o.Group, err)
		}
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun"), real, nil
}

// Create makes the persistent TAP name, owned by o.Owner/o.Group, and
// returns its link. A TAP of that name left behind (by a crashed QEMU or an
// earlier run) is reused when nobody holds it; one in use fails with ErrBusy.
func Create(name string, o Options) (netlink.Link, error) {
	if err := ifname.Validate("tap", name); err != nil {
		return nil, err
	}
	info, err := Inspect(name)
	exists := err == nil
	if err != nil && !errors.Is(err, link.ErrNotFound) {
		return nil, err
	}
	// A leftover TAP (a crashed QEMU's, an earlier run's) is reused when
	// nobody holds it. The kernel cannot clear an owner or group nor change
	// the flags of a TAP, so one that differs in those is made anew.
	if exists && (info.VnetHdr != o.VnetHdr || info.MultiQueue != o.MultiQueue ||
		info.Owner != NoID && o.Owner == NoID || info.Group != NoID && o.Group == NoID) {
		// Never delete a TAP a process holds. Attaching a descriptor for a
		// moment proves nothing on a multi-queue TAP, which takes another
		// queue while a QEMU holds the others: InUse asks the kernel.
		busy, err := InUse(name)
		if err != nil {
			return nil, err
		}
		if busy {
			return nil, fmt.Errorf("TAP %q: %w, with other flags, owner or group than asked: stop the QEMU that holds it first", name, ErrBusy)
		}
		if err := Delete(name); err != nil {
			return nil, err
		}
	}
	if exists && info == (Info{Owner: o.Owner, Group: o.Group, Persistent: true, VnetHdr: o.VnetHdr, MultiQueue: o.MultiQueue}) {
		// Already as asked. Attaching a descriptor would switch an up
		// TAP's carrier on for a moment and give it a link-local address.
		busy, err := InUse(name)
		if err != nil {
			return nil, err
		}
		if busy {
			return nil, fmt.Errorf("TAP %q: %w (is a QEMU still running with it?)", name, ErrBusy)
		}
		return link.Get(name)
	}
	f, _, err := open(name, o)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.TUNSETPERSIST, 1); err != nil {
		return nil, fmt.Errorf("making TAP %q persistent: %w", name, err)
	}
	return link.Get(name)
}

// Open creates a non-persistent TAP, which disappears when the last
// descriptor to it is closed, and returns the descriptor. name may be a
// pattern like "tap%d".
func Open(name string, o Options) (*os.File, string, error) {
	if name != "" {
		if err := ifname.Validate("tap", name); err != nil {
			return nil, "", err
		}
	}
	return open(name, o)
}

// Delete removes the TAP name. It succeeds when the TAP is already gone and
// refuses to delete anything that is not a TAP.
func Delete(name string) error {
	l, err := link.Get(name)
	if errors.Is(err, link.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, ok := l.(*netlink.Tuntap); !ok {
		return fmt.Errorf("%q is a %s device: %w", name, l.Type(), ErrNotTAP)
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("deleting TAP %q: %w", name, err)
	}
	return nil
}

// Info describes an existing TAP.
type Info struct {
	Owner, Group int // NoID when unset
	Persistent   bool
	VnetHdr      bool
	MultiQueue   bool
}

// Inspect returns what the kernel says about the TAP name.
func Inspect(name string) (Info, error) {
	l, err := link.Get(name)
	if err != nil {
		return Info{}, err
	}
	t, ok := l.(*netlink.Tuntap)
	if !ok {
		return Info{}, fmt.Errorf("%q is a %s device: %w", name, l.Type(), ErrNotTAP)
	}
	// netlink reports an unset owner as 0 (the kernel omits the attribute),
	// so ask again for the raw attributes.
	owner, group, _, err := ids(t.Attrs().Index)
	if err != nil {
		return Info{}, fmt.Errorf("reading owner of TAP %q: %w", name, err)
	}
	return Info{
		Owner:      owner,
		Group:      group,
		Persistent: !t.NonPersist,
		VnetHdr:    t.Flags&netlink.TUNTAP_VNET_HDR != 0,
		MultiQueue: t.Flags&netlink.TUNTAP_MULTI_QUEUE != 0,
	}, nil
}

// ids returns IFLA_TUN_OWNER and IFLA_TUN_GROUP of the link, NoID when
// absent, and IFLA_CARRIER.
func ids(index int) (owner, group int, carrier bool, err error) {
	top, data, err := link.Raw(index)
	if err != nil {
		return NoID, NoID, false, err
	}
	owner, group = NoID, NoID
	if v := top[unix.IFLA_CARRIER]; len(v) > 0 {
		carrier = v[0] != 0
	}
	if v := data[nl.IFLA_TUN_OWNER]; len(v) == 4 {
		owner = int(nl.NativeEndian().Uint32(v))
	}
	if v := data[nl.IFLA_TUN_GROUP]; len(v) == 4 {
		group = int(nl.NativeEndian().Uint32(v))
	}
	return owner, group, carrier, nil
}

// Check refuses a link that is not a TAP device, naming it and what it is.
func Check(link netlink.Link) error {
	t, ok := link.(*netlink.Tuntap)
	if !ok {
		return fmt.Errorf("%q is not a TAP but a %s link; refusing to touch it", link.Attrs().Name, link.Type())
	}
	if t.Mode != netlink.TUNTAP_MODE_TAP {
		return fmt.Errorf("%q is a TUN (layer 3) device, not a TAP; it cannot join a bridge", link.Attrs().Name)
	}
	return nil
}
