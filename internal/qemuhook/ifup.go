package qemuhook

import (
	"errors"
	"io/fs"
	"os"

	"github.com/tapbridge/tapbridge/internal/acl"
	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/ifname"
	"github.com/tapbridge/tapbridge/internal/link"
	"github.com/tapbridge/tapbridge/internal/tap"
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
	routed := false
	fail := func(err error) error { return &Error{Op: "attach", TAP: name, Bridge: br, Routed: routed, Err: err} }
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
	routed = c.Routed // the error then names the mode, not a bridge
	if err := checkACL(c, c.ACL != "", osReadFile); err != nil {
		return fail(err)
	}
	if err := vmport.CheckTAP(name, c.Bridge); err != nil {
		return fail(err)
	}
	port, err := vmport.PortOf(c, name)
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
	l, err := link.Get(name)
	switch {
	case errors.Is(err, link.ErrNotFound):
	case err != nil:
		return fail(err)
	default:
		if err := tap.Check(l); err != nil {
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
