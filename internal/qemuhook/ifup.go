package qemuhook

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/vishvananda/netlink"

	"github.com/tapbridge/tapbridge/internal/acl"
	"github.com/tapbridge/tapbridge/internal/bridge"
	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/ifname"
	"github.com/tapbridge/tapbridge/internal/vmport"
)

// DefaultACL is the ACL read when the configuration names none. A variable
// so that tests can point it elsewhere.
var DefaultACL = acl.DefaultPath

// Ifup puts the TAP name, which QEMU has just created, on the configured
// bridge, as qemu-ifup. getenv is QEMU's environment (os.Getenv).
//
// The ACL is applied when the configuration names one ("acl") or the
// default ACL file exists: QEMU runs qemu-ifup with the privileges it has,
// usually root, so the ACL is the operator's guard against a VM definition
// naming the wrong bridge, not a security boundary as in the helper.
func Ifup(name string, getenv func(string) string) error {
	l, br, err := loadConf(getenv, true)
	fail := func(err error) error { return &Error{Op: "attach", TAP: name, Bridge: br, Err: err} }
	if err != nil {
		return fail(err)
	}
	if err := ifname.Validate("TAP", name); err != nil {
		return fail(err)
	}
	if err := fromLibvirt(l, name, getenv); err != nil {
		return fail(err)
	}
	br = l.conf.Bridge
	c := l.conf
	if err := checkACL(c, c.ACL != "", osReadFile); err != nil {
		return fail(err)
	}
	if err := checkTAP(name, c.Bridge); err != nil {
		return fail(err)
	}
	port, err := portOf(c, name)
	if err != nil {
		return fail(err)
	}
	if err := vmport.Attach(c, port); err != nil {
		return fail(err)
	}
	logDone("attach", c.Bridge, name, port.GuestMAC)
	return nil
}

// Ifdown takes the TAP name off its bridge and removes its port policy, as
// qemu-ifdown. It succeeds when the TAP is already gone. It needs nothing
// from the configuration but a bridge name for the lock when the TAP is on
// no bridge, so a broken configuration does not stop it.
func Ifdown(name string, getenv func(string) string) error {
	_, br, _ := loadConf(getenv, true)
	fail := func(err error) error { return &Error{Op: "detach", TAP: name, Bridge: br, Err: err} }
	if err := ifname.Validate("TAP", name); err != nil {
		return fail(err)
	}
	link, err := bridge.Link(name)
	switch {
	case errors.Is(err, bridge.ErrNotFound):
	case err != nil:
		return fail(err)
	default:
		if err := isTAP(link); err != nil {
			return fail(err)
		}
	}
	if b := vmport.BridgeOf(name); b != "" {
		br = b
	}
	c := &config.Conf{Bridge: br}
	if err := c.Validate(); err != nil {
		return fail(err)
	}
	if err := vmport.Detach(c, name); err != nil {
		return fail(err)
	}
	logDone("detach", br, name, nil)
	return nil
}

// checkTAP refuses anything but a TAP that is free or already on br:
// qemu-ifup run by hand with the uplink's name must not enslave it.
func checkTAP(name, br string) error {
	link, err := bridge.Link(name)
	if errors.Is(err, bridge.ErrNotFound) {
		return fmt.Errorf("TAP %q does not exist (QEMU creates it before it runs the script)", name)
	}
	if err != nil {
		return err
	}
	if err := isTAP(link); err != nil {
		return err
	}
	if m := link.Attrs().MasterIndex; m != 0 {
		master, err := netlink.LinkByIndex(m)
		if err != nil {
			return fmt.Errorf("looking up the master of %q: %w", name, err)
		}
		if master.Attrs().Name != br {
			return fmt.Errorf("%q is already a port of %q; detach it first", name, master.Attrs().Name)
		}
	}
	return nil
}

// isTAP refuses links that are not TAP devices.
func isTAP(link netlink.Link) error {
	t, ok := link.(*netlink.Tuntap)
	if !ok {
		return fmt.Errorf("%q is not a TAP but a %s link; refusing to touch it", link.Attrs().Name, link.Type())
	}
	if t.Mode != netlink.TUNTAP_MODE_TAP {
		return fmt.Errorf("%q is a TUN (layer 3) device, not a TAP; it cannot join a bridge", link.Attrs().Name)
	}
	return nil
}

// portOf describes the port for vmport: the guest MAC and IPs the
// configuration (or the per-VM environment) gives.
func portOf(c *config.Conf, name string) (vmport.Port, error) {
	m, err := c.GuestMAC("")
	if err != nil {
		return vmport.Port{}, err
	}
	ips, err := config.ParseIPs("ips", c.IPs)
	if err != nil {
		return vmport.Port{}, err
	}
	return vmport.Port{Name: name, GuestMAC: m, GuestIPs: ips}, nil
}

// checkACL applies the ACL the configuration names, else DefaultACL. When
// required is false a missing default ACL means no ACL.
func checkACL(c *config.Conf, required bool, read acl.ReadFunc) error {
	path := c.ACL
	if path == "" {
		path = DefaultACL
		if _, err := os.Stat(path); !required && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
	}
	a, err := acl.Load(path, read)
	if err != nil {
		return err
	}
	return a.Check(c.Bridge)
}

func osReadFile(path string) ([]byte, error) { return os.ReadFile(path) }
