package vmport

import (
	"errors"
	"fmt"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/ifname"
	"github.com/tapbridge/tapbridge/internal/link"
	"github.com/tapbridge/tapbridge/internal/tap"
)

// The lifecycle of a VM's TAP where tapbridge makes it (`tapbridge tap add`
// for QEMU with script=no, the CNI plugin's host mode), and the checks every
// front end makes before it attaches a TAP someone else made.

// TAPOptions are the TAP flags and ownership the configuration asks for.
func TAPOptions(c *config.Conf) tap.Options {
	return tap.Options{Owner: c.OwnerID(), Group: c.GroupID(), MultiQueue: c.MultiQueue, VnetHdr: c.VnetHdr}
}

// CheckTAP refuses anything but a TAP that is free or already on br:
// qemu-ifup run by hand with the uplink's name must not enslave it.
func CheckTAP(name, br string) error {
	l, err := link.Get(name)
	if errors.Is(err, link.ErrNotFound) {
		return fmt.Errorf("TAP %q does not exist (QEMU creates it before it runs the script)", name)
	}
	if err != nil {
		return err
	}
	if err := tap.Check(l); err != nil {
		return err
	}
	master, err := link.MasterName(l)
	if err != nil {
		return err
	}
	if master != "" && master != br {
		return fmt.Errorf("%q is already a port of %q; detach it first", name, master)
	}
	return nil
}

// PortOf describes the port name: the guest MAC and IPs the configuration
// (with the per-VM environment applied) gives.
func PortOf(c *config.Conf, name string) (Port, error) {
	m, err := c.GuestMAC("")
	if err != nil {
		return Port{}, err
	}
	ips, err := config.ParseIPs("ips", c.IPs)
	if err != nil {
		return Port{}, err
	}
	return Port{Name: name, GuestMAC: m, GuestIPs: ips}, nil
}

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
	opts := TAPOptions(c)
	existed, inUse := false, false
	switch _, err := link.Get(name); {
	case errors.Is(err, link.ErrNotFound):
		res.Changed = true
	case err != nil:
		return res, err
	default:
		existed = true
		if err := CheckTAP(name, c.Bridge); err != nil {
			return res, err
		}
		info, err := tap.Inspect(name)
		if err != nil {
			return res, err
		}
		want := tap.Info{Owner: opts.Owner, Group: opts.Group, Persistent: true, VnetHdr: opts.VnetHdr, MultiQueue: opts.MultiQueue}
		res.Changed = info != want || Check(c, name) != nil
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
	port, err := PortOf(c, name)
	if err == nil {
		err = Attach(c, port)
	}
	if err != nil {
		if !existed {
			_ = tap.Delete(name)
		}
		return res, err
	}
	res.Port = BridgePort(name)
	if l, err := link.Get(res.Port); err == nil {
		res.MTU, res.MAC = l.Attrs().MTU, l.Attrs().HardwareAddr.String()
	}
	return res, nil
}

// DeleteTAP detaches the persistent TAP name (Detach) and deletes
// it. It succeeds when the TAP is already gone, and refuses a link that is
// not a TAP and a TAP a running QEMU holds.
func DeleteTAP(c *config.Conf, name string) (TAPResult, error) {
	res := TAPResult{Name: name, Bridge: c.Bridge}
	if err := ifname.Validate("TAP", name); err != nil {
		return res, err
	}
	l, err := link.Get(name)
	if errors.Is(err, link.ErrNotFound) {
		return res, Detach(c, name) // leftover policy, if any
	}
	if err != nil {
		return res, err
	}
	if err := tap.Check(l); err != nil {
		return res, err
	}
	if busy, err := tap.InUse(name); err != nil {
		return res, err
	} else if busy {
		return res, fmt.Errorf("TAP %q: %w: stop the QEMU that holds it first", name, tap.ErrBusy)
	}
	on := *c
	if b := BridgeOf(name); b != "" {
		on.Bridge, res.Bridge = b, b
	}
	if err := Detach(&on, name); err != nil {
		return res, err
	}
	if err := tap.Delete(name); err != nil {
		return res, err
	}
	res.Changed = true
	return res, nil
}
