package qemuhook

import (
	"errors"
	"fmt"

	"github.com/tapbridge/tapbridge/internal/bridge"
	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/ifname"
	"github.com/tapbridge/tapbridge/internal/tap"
	"github.com/tapbridge/tapbridge/internal/vmport"
)

// TAPResult says what AddTAP or DeleteTAP did.
type TAPResult struct {
	Name    string
	Bridge  string
	Changed bool   // false when the TAP was already as asked
	Port    string // the bridge port that stands for the TAP (its front)
	MTU     int    // of the port and the TAP
	MAC     string // of the port
}

// AddTAP makes the persistent TAP name (owner, group and flags from the
// configuration) and attaches it like qemu-ifup does: for QEMU run by an
// unprivileged user with script=no. It is idempotent: a TAP of that name
// that nobody holds is reused. When the attach fails a TAP it created is
// deleted again; one that existed before is left as it was found.
func AddTAP(c *config.Conf, name string) (TAPResult, error) {
	res := TAPResult{Name: name, Bridge: c.Bridge}
	if err := ifname.Validate("TAP", name); err != nil {
		return res, err
	}
	opts := tap.Options{Owner: c.OwnerID(), Group: c.GroupID(), MultiQueue: c.MultiQueue, VnetHdr: c.VnetHdr}
	existed, inUse := false, false
	switch _, err := bridge.Link(name); {
	case errors.Is(err, bridge.ErrNotFound):
		res.Changed = true
	case err != nil:
		return res, err
	default:
		existed = true
		if err := checkTAP(name, c.Bridge); err != nil {
			return res, err
		}
		info, err := tap.Inspect(name)
		if err != nil {
			return res, err
		}
		want := tap.Info{Owner: opts.Owner, Group: opts.Group, Persistent: true, VnetHdr: opts.VnetHdr, MultiQueue: opts.MultiQueue}
		res.Changed = info != want || vmport.Check(c, name) != nil
		// A TAP as asked that a QEMU holds is left alone (a re-run while
		// the VM runs); one that differs is made anew by tap.Create, which
		// refuses when it is in use.
		if info == want {
			if inUse, err = tap.InUse(name); err != nil {
				return res, err
			}
		}
	}
	if !inUse {
		if _, err := tap.Create(name, opts); err != nil {
			return res, err
		}
	}
	port, err := portOf(c, name)
	if err == nil {
		err = vmport.Attach(c, port)
	}
	if err != nil {
		if !existed {
			_ = tap.Delete(name)
		}
		return res, err
	}
	res.Port = vmport.BridgePort(name)
	if l, err := bridge.Link(res.Port); err == nil {
		res.MTU, res.MAC = l.Attrs().MTU, l.Attrs().HardwareAddr.String()
	}
	return res, nil
}

// DeleteTAP detaches the persistent TAP name (vmport.Detach) and deletes
// it. It succeeds when the TAP is already gone, and refuses a link that is
// not a TAP and a TAP a running QEMU holds.
func DeleteTAP(c *config.Conf, name string) (TAPResult, error) {
	res := TAPResult{Name: name, Bridge: c.Bridge}
	if err := ifname.Validate("TAP", name); err != nil {
		return res, err
	}
	link, err := bridge.Link(name)
	if errors.Is(err, bridge.ErrNotFound) {
		return res, vmport.Detach(c, name) // leftover policy, if any
	}
	if err != nil {
		return res, err
	}
	if err := isTAP(link); err != nil {
		return res, err
	}
	if busy, err := tap.InUse(name); err != nil {
		return res, err
	} else if busy {
		return res, fmt.Errorf("TAP %q: %w: stop the QEMU that holds it first", name, tap.ErrBusy)
	}
	on := *c
	if b := vmport.BridgeOf(name); b != "" {
		on.Bridge, res.Bridge = b, b
	}
	if err := vmport.Detach(&on, name); err != nil {
		return res, err
	}
	if err := tap.Delete(name); err != nil {
		return res, err
	}
	res.Changed = true
	return res, nil
}
