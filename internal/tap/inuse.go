package tap

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"

	"github.com/tapbridge/tapbridge/internal/bridge"
)

// InUse reports whether a process (usually a QEMU) holds the TAP name open.
// The kernel reports the number of attached queues (IFLA_TUN_NUM_QUEUES)
// and, for a multi-queue TAP, of the queues a QEMU holds but has disabled
// (IFLA_TUN_NUM_DISABLED_QUEUES); either above zero means a holder. A
// multi-queue TAP accepts another descriptor while a QEMU holds it, so
// attaching one for a moment proves nothing there; for the others that
// probe (EBUSY when held) is kept as a second opinion. It changes nothing:
// owner, group and persistence stay as they are.
func InUse(name string) (bool, error) {
	info, err := Inspect(name)
	if err != nil {
		return false, err
	}
	l, err := bridge.Link(name)
	if err != nil {
		return false, err
	}
	t, ok := l.(*netlink.Tuntap)
	if !ok {
		return false, fmt.Errorf("%q is a %s device: %w", name, l.Type(), ErrNotTAP)
	}
	if t.Queues+t.DisabledQueues > 0 {
		return true, nil
	}
	if info.MultiQueue {
		return false, nil
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
