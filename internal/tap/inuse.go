package tap

import (
	"errors"

	"github.com/vishvananda/netlink"
)

// InUse reports whether a process (usually a QEMU) holds the TAP name open.
// The kernel reports the number of attached queues of multi-queue TAPs
// only; for the others a descriptor is attached for a moment with the
// TAP's own flags, which fails with EBUSY when one is attached already. It
// changes nothing: owner, group and persistence stay as they are.
func InUse(name string) (bool, error) {
	info, err := Inspect(name)
	if err != nil {
		return false, err
	}
	if info.MultiQueue {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return false, err
		}
		return l.(*netlink.Tuntap).Queues > 0, nil
	}
	f, _, err := open(name, Options{Owner: NoID, Group: NoID, VnetHdr: info.VnetHdr})
	if errors.Is(err, ErrBusy) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return false, f.Close()
}
