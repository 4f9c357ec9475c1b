package tap

import (
	"fmt"

	"github.com/vishvananda/netlink"

	"github.com/tapbridge/tapbridge/internal/link"
)

// InUse reports whether a process (usually a QEMU) holds the TAP name open,
// from what the kernel reports, without touching the TAP:
//
//   - the carrier: tun switches it on when a descriptor attaches and off
//     when the last one detaches (__tun_detach), so carrier on means a
//     holder (unless the holder turned it off with TUNSETCARRIER, which
//     QEMU never does);
//   - for a multi-queue TAP, the attached and the disabled queues
//     (IFLA_TUN_NUM_QUEUES, IFLA_TUN_NUM_DISABLED_QUEUES): a queue QEMU
//     disabled for a guest using fewer queues is still held.
//
// Attaching a descriptor for a moment and watching for EBUSY is not done:
// a multi-queue TAP takes another queue while a QEMU holds it, so that
// proves nothing there, and on an up TAP it switches the carrier on for a
// moment, which gives the TAP an IPv6 link-local address.
func InUse(name string) (bool, error) {
	l, err := link.Get(name)
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
	_, _, carrier, err := ids(t.Attrs().Index)
	if err != nil {
		return false, fmt.Errorf("reading the carrier of TAP %q: %w", name, err)
	}
	return carrier, nil
}
