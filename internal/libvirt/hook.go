package libvirt

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/policy"
	"github.com/tapbridge/tapbridge/internal/state"
	"github.com/tapbridge/tapbridge/internal/vmport"
)

// HookOps are the operations of libvirt's QEMU hook (libvirt passes
// "DOMAIN OP SUBOP EXTRA") that Hook acts on; it ignores the others.
//
//   - prepare: the domain XML is checked (invalid tapbridge metadata
//     stops the domain here) and saved, for qemu-ifup to find;
//   - start: libvirt has made the domain's TAPs, and enslaved and brought
//     up those of <interface type='bridge'>, but QEMU does not run yet:
//     no frame of the guest exists. Each such TAP on the configured bridge
//     gets its port policy now, before QEMU can send one;
//   - release: the domain has stopped and libvirt has deleted its TAPs:
//     their policies, the fronts qemu-ifup made for type='ethernet'
//     interfaces (when no downscript did it), and the saved XML go.
const (
	OpPrepare = "prepare"
	OpStart   = "start"
	OpRelease = "release"
)

// Hook runs libvirt's QEMU hook for the domain whose XML is xmlIn. c is
// tapbridge's configuration (its bridge and port-policy keys); the domain's
// metadata overrides it per interface. It returns an error, which makes
// libvirt refuse to start the domain, when the metadata is invalid or a
// port policy cannot be applied; in that case the policies it applied are
// removed again.
func Hook(c *config.Conf, args []string, xmlIn io.Reader) error {
	if len(args) < 3 {
		return fmt.Errorf("want DOMAIN OPERATION SUBOPERATION [EXTRA] as libvirt passes them, got %d arguments", len(args))
	}
	op := args[1]
	switch op {
	case OpPrepare, OpStart, OpRelease:
	default:
		// Read what libvirt writes anyway: a hook that exits before
		// reading a large domain XML would fail libvirt's write.
		_, _ = io.Copy(io.Discard, xmlIn)
		return nil
	}
	data, err := io.ReadAll(xmlIn)
	if err != nil {
		return fmt.Errorf("reading the domain XML: %w", err)
	}
	d, err := Parse(data)
	if err != nil {
		return fmt.Errorf("domain %q: %w", args[0], err)
	}
	switch op {
	case OpPrepare:
		if err := checkDomain(c, d); err != nil {
			return err
		}
		for _, i := range d.Interfaces {
			if i.Type == "ethernet" {
				return save(d, data) // for its script, qemu-ifup
			}
		}
		return nil
	case OpStart:
		return start(c, d)
	default:
		return release(c, d)
	}
}

// ours reports whether i is a type='bridge' interface on the configured
// bridge, whose TAP gets a policy from the hook.
func ours(c *config.Conf, i Interface) bool {
	return i.Type == "bridge" && i.Bridge == c.Bridge
}

// portConf returns the configuration of interface i: c with the domain's
// metadata for i applied.
func portConf(c *config.Conf, d *Domain, i Interface) (*config.Conf, error) {
	s, err := d.For(i)
	if err != nil {
		return nil, err
	}
	cc := *c
	if err := s.Apply(&cc, i.MAC); err != nil {
		return nil, fmt.Errorf("domain %q: interface %s: %w", d.Name, i.MAC, err)
	}
	return &cc, nil
}

// checkDomain refuses a domain whose metadata is invalid or whose bridge
// interfaces on tapbridge's bridge would get a policy that cannot be
// enforced (a check without the value it needs).
func checkDomain(c *config.Conf, d *Domain) error {
	if d.PortErr != nil {
		return d.PortErr
	}
	for _, i := range d.Interfaces {
		cc, err := portConf(c, d, i)
		if err != nil {
			return err
		}
		if !ours(c, i) {
			continue
		}
		if _, err := vmport.Spec(cc, vmport.Port{Name: "libvirt", GuestMAC: i.MAC}); err != nil {
			return fmt.Errorf("domain %q: interface %s on bridge %q: %w", d.Name, i.MAC, i.Bridge, err)
		}
	}
	return nil
}

// started is what Hook records at "start" of a domain's TAPs: libvirt
// passes the XML of "stopped" and "release" without the TAPs' names.
type started struct {
	Bridge   []string `json:"bridge,omitempty"`   // TAPs of type='bridge' on tapbridge's bridge
	Ethernet []string `json:"ethernet,omitempty"` // TAPs of type='ethernet'
}

// start applies the policy of every bridge interface on the configured
// bridge; on failure it removes those it applied. It first records the
// domain's TAPs, so that release finds them even after a crash here.
func start(c *config.Conf, d *Domain) error {
	if err := checkDomain(c, d); err != nil {
		return err
	}
	var rec started
	for _, i := range d.Interfaces {
		switch {
		case i.Target == "":
		case ours(c, i):
			rec.Bridge = append(rec.Bridge, i.Target)
		case i.Type == "ethernet":
			rec.Ethernet = append(rec.Ethernet, i.Target)
		}
	}
	if len(rec.Bridge)+len(rec.Ethernet) > 0 {
		if err := saveStarted(d, rec); err != nil {
			return err
		}
	}
	var done []string
	for _, i := range d.Interfaces {
		if !ours(c, i) {
			continue
		}
		if i.Target == "" {
			return undo(done, fmt.Errorf("domain %q: interface %s on bridge %q has no target dev in the XML of the start hook", d.Name, i.MAC, i.Bridge))
		}
		cc, err := portConf(c, d, i)
		if err != nil {
			return undo(done, err)
		}
		spec, err := vmport.Spec(cc, vmport.Port{Name: i.Target, GuestMAC: i.MAC})
		if err != nil {
			return undo(done, fmt.Errorf("domain %q: TAP %q: %w", d.Name, i.Target, err))
		}
		if err := withPolicyLock(func() error { return policy.Apply(i.Target, spec) }); err != nil {
			return undo(done, fmt.Errorf("domain %q: TAP %q on bridge %q: %w", d.Name, i.Target, i.Bridge, err))
		}
		done = append(done, i.Target)
	}
	return nil
}

// undo removes the policies of ports and returns err.
func undo(ports []string, err error) error {
	for _, p := range ports {
		_ = withPolicyLock(func() error { return policy.Remove(p) })
	}
	return err
}

// release removes what the domain's interfaces left, from what start
// recorded: the policies of its bridge TAPs, and the fronts and policies of
// its ethernet TAPs (when no downscript removed them), each only when the
// TAP is gone (a TAP of that name that exists belongs to another domain by
// now, or was never deleted: either way it keeps its policy). Then the
// domain's saved XML and record go.
func release(c *config.Conf, d *Domain) error {
	if !validUUID(d.UUID) {
		return nil // nothing was saved under its name
	}
	var rec started
	err := state.ReadJSON(startedPath(d.UUID), &rec)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var errs []error
	for _, t := range rec.Bridge {
		if tapExists(t) {
			continue
		}
		if err := withPolicyLock(func() error { return policy.Remove(t) }); err != nil {
			errs = append(errs, err)
		}
	}
	for _, t := range rec.Ethernet {
		if tapExists(t) {
			continue
		}
		cc := *c
		if b := vmport.BridgeOf(t); b != "" {
			cc.Bridge = b
		}
		if err := vmport.Detach(&cc, t); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...) // the record stays, for the next release
	}
	for _, p := range []string{startedPath(d.UUID), savedPath(d.UUID)} {
		if err := state.Remove(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func startedPath(uuid string) string { return filepath.Join(SavedDir(), uuid+".started") }

func saveStarted(d *Domain, rec started) error {
	if !validUUID(d.UUID) {
		return fmt.Errorf("domain %q: no valid <uuid> in the XML of the start hook", d.Name)
	}
	return state.WriteJSON(startedPath(d.UUID), rec)
}

// tapExists reports whether a link called name exists. On an error other
// than not-found it says yes: nothing is removed on a guess.
func tapExists(name string) bool {
	_, err := netlinksafe.LinkByName(name)
	var nf netlink.LinkNotFoundError
	return !errors.As(err, &nf)
}

func withPolicyLock(f func() error) error {
	lk, err := state.LockPolicy()
	if err != nil {
		return err
	}
	defer lk.Unlock()
	return f()
}

// validUUID says whether s looks like a domain UUID: 32 to 36 hex digits
// and dashes (what the regular expression ^[0-9a-fA-F-]{32,36}$ matches).
// A function rather than a package-level regexp, whose compilation every
// start of the hook binary would pay.
func validUUID(s string) bool {
	if len(s) < 32 || len(s) > 36 {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F', c == '-':
		default:
			return false
		}
	}
	return true
}

func savedPath(uuid string) string { return filepath.Join(SavedDir(), uuid+".xml") }

// save keeps the domain XML for qemu-ifup (Find), atomically, readable by
// root only (it is the operator's domain definition).
func save(d *Domain, data []byte) error {
	if !validUUID(d.UUID) {
		return fmt.Errorf("domain %q: no valid <uuid> in the XML of the prepare hook", d.Name)
	}
	path := savedPath(d.UUID)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
