package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/bridge"
	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/link"
	"github.com/tapbridge/tapbridge/internal/tap"
	"github.com/tapbridge/tapbridge/internal/vmport"
	"github.com/tapbridge/tapbridge/test/testbed"
)

// The LAN of the bench: the router (lan0) and the hypervisor's br0, which
// holds eth0, the other end of the router's veth.
const (
	routerAddr = "192.0.2.1/24"
	hostAddr   = "192.0.2.2/24"
	guestMAC   = "52:54:00:fa:00:01" // the VM of the hook, helper and frames runs
	guestIP    = "192.0.2.10"
)

// env is the bench's world: a tmpfs for its files, the namespaces, the
// configurations and scripts the contenders run with, and the TAPs that
// stand for the VMs already attached.
type env struct {
	o      options
	tmp    string
	mounts []string // unmounted in reverse order by close
	hv     *testbed.NetNS
	router *testbed.NetNS
	hvFD   int
	selfNS int // the namespace this thread came from
	runDir string

	confOff, confOn, confDefault string // guards off, all on, the defaults
	acl                          string
	shellUp, shellDown           string
	goFloor                      string
	helperACL                    bool // /etc/qemu/bridge.conf is in place for qemu-bridge-helper

	sandboxes []*testbed.NetNS
	held      []*os.File // the TAPs of the VMs attached to make up the scale
	attached  int
}

// newEnv builds the world on the calling (locked) thread, which it leaves
// inside the hypervisor namespace.
func newEnv(o options) (e *env, err error) {
	e = &env{o: o, hvFD: -1, selfNS: -1}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.tmp, err = os.MkdirTemp("", "tapbridge-bench-"); err != nil {
		return e, err
	}
	// A tmpfs: the hooks' state lives on one in /run/tapbridge, where an
	// fsync costs nothing, and overlayfs needs an upper directory that is
	// not itself on an overlay.
	if err := e.mount("tmpfs", e.tmp, "tmpfs", "size=256m,mode=0755"); err != nil {
		return e, err
	}
	e.runDir = e.path("run")
	if err := os.Setenv("TAPBRIDGE_RUN_DIR", e.runDir); err != nil {
		return e, err
	}
	e.acl = e.path("bridge.acl")
	if err := e.write("bridge.acl", "allow br0\n", 0o644); err != nil {
		return e, err
	}
	if err := e.overlayEtc(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: no /etc/qemu/bridge.conf for qemu-bridge-helper, skipping that anchor: %v\n", err)
	} else {
		e.helperACL = true
	}
	if err := e.writeConfs(); err != nil {
		return e, err
	}
	if err := e.writeScripts(); err != nil {
		return e, err
	}
	if err := e.buildGoFloor(); err != nil {
		return e, err
	}
	if e.hv, err = testbed.CreateNetNS(); err != nil {
		return e, err
	}
	if e.router, err = testbed.CreateNetNS(); err != nil {
		return e, err
	}
	if e.selfNS, err = unix.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
		return e, err
	}
	if e.hvFD, err = unix.Open(e.hv.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
		return e, err
	}
	if err := unix.Setns(e.hvFD, unix.CLONE_NEWNET); err != nil {
		return e, fmt.Errorf("entering %s: %w", e.hv, err)
	}
	// A sysfs of the hypervisor namespace, for the shell script's
	// /sys/class/net/BR/bridge test (ip netns exec does the same).
	if err := e.mount("sysfs", "/sys", "sysfs", ""); err != nil {
		return e, err
	}
	return e, e.buildLAN()
}

func (e *env) path(name string) string { return filepath.Join(e.tmp, name) }

func (e *env) write(name, content string, mode os.FileMode) error {
	p := e.path(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(content), mode)
}

func (e *env) mount(source, target, fstype, data string) error {
	if err := unix.Mount(source, target, fstype, 0, data); err != nil {
		return fmt.Errorf("mounting %s on %s: %w", fstype, target, err)
	}
	e.mounts = append(e.mounts, target)
	return nil
}

// overlayEtc makes /etc/qemu/bridge.conf ("allow br0") appear, in this
// mount namespace only, for qemu-bridge-helper, whose ACL path is compiled
// in.
func (e *env) overlayEtc() error {
	if err := e.write("etc-upper/qemu/bridge.conf", "allow br0\n", 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(e.path("etc-work"), 0o755); err != nil {
		return err
	}
	return e.mount("overlay", "/etc", "overlay", "lowerdir=/etc,upperdir="+e.path("etc-upper")+",workdir="+e.path("etc-work"))
}

// writeConfs writes the three configurations of the runs: every guard
// off, every guard on (with the VM's MAC and address, as an operator sets
// them per VM), and the defaults (DHCP, RA and BPDU guards).
func (e *env) writeConfs() error {
	no := false
	for i, c := range []struct {
		file *string
		conf map[string]any
	}{
		{&e.confOff, map[string]any{"dhcpGuard": no, "raGuard": no, "bpduGuard": no}},
		{&e.confOn, map[string]any{
			"macSpoofCheck": true, "ipSpoofCheck": true, "dhcpGuard": true, "raGuard": true,
			"bpduGuard": true, "isolated": true, "mac": guestMAC, "ips": []string{guestIP},
		}},
		{&e.confDefault, map[string]any{}},
	} {
		c.conf["bridge"], c.conf["acl"] = "br0", e.acl
		data, err := json.Marshal(c.conf)
		if err != nil {
			return err
		}
		name := fmt.Sprintf("conf-%d.json", i)
		if err := e.write(name, string(data), 0o644); err != nil {
			return err
		}
		*c.file = e.path(name)
	}
	return nil
}

// debianIfup is a Debian-style qemu-ifup, written for this bench after the
// shape of the one Debian ships in qemu-system-common: bring the TAP up,
// find the bridge the default route goes through, check that it is a
// bridge, and enslave the TAP to it.
const debianIfup = `#!/bin/sh
PATH=$PATH:/sbin:/usr/sbin
ip link set "$1" up || exit 1
for dev in $(ip route show default | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1) }'); do
	if [ -d "/sys/class/net/$dev/bridge/." ]; then
		ip link set "$1" master "$dev"
		exit
	fi
done
echo "$0: no bridge behind the default route for $1" >&2
exit 1
`

// debianIfdown is its counterpart (Debian ships none): delete the TAP.
const debianIfdown = `#!/bin/sh
PATH=$PATH:/sbin:/usr/sbin
ip link del "$1"
`

func (e *env) writeScripts() error {
	e.shellUp, e.shellDown = e.path("debian-ifup"), e.path("debian-ifdown")
	if err := e.write("debian-ifup", debianIfup, 0o755); err != nil {
		return err
	}
	return e.write("debian-ifdown", debianIfdown, 0o755)
}

// goFloorSource is the empty Go program: the runtime's own start.
const goFloorSource = "package main\n\nfunc main() {}\n"

func (e *env) buildGoFloor() error {
	dir := e.path("gofloor")
	if err := e.write("gofloor/main.go", goFloorSource, 0o644); err != nil {
		return err
	}
	if err := e.write("gofloor/go.mod", "module gofloor\n\ngo 1.26\n", 0o644); err != nil {
		return err
	}
	e.goFloor = filepath.Join(dir, "gofloor")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", e.goFloor, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the empty Go program: %v: %s", err, out)
	}
	return nil
}

// buildLAN makes br0 hold eth0, whose peer lan0 is the router's, with
// 192.0.2.2/24 on br0 and the default route through it (the shell script
// finds its bridge that way).
func (e *env) buildLAN() error {
	rfd, err := unix.Open(e.router.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(rfd)
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "lan0", PeerNamespace: netlink.NsFd(rfd)}); err != nil {
		return fmt.Errorf("creating eth0: %w", err)
	}
	for _, args := range [][]string{{"addr", "add", routerAddr, "dev", "lan0"}, {"link", "set", "lan0", "up"}} {
		if _, err := e.router.Exec("ip", args...); err != nil {
			return err
		}
	}
	br, _, err := bridge.Ensure(bridge.Spec{Name: "br0"})
	if err != nil {
		return err
	}
	eth0, err := link.Get("eth0")
	if err != nil {
		return err
	}
	if err := bridge.Attach(eth0, br, false); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(eth0); err != nil {
		return err
	}
	addr, err := netlink.ParseAddr(hostAddr)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(br, addr); err != nil {
		return err
	}
	return netlink.RouteAdd(&netlink.Route{LinkIndex: br.Attrs().Index, Gw: net.ParseIP("192.0.2.1")})
}

// grow attaches VMs, in process through vmport with every guard on, until
// n are attached: the host the front ends are measured on.
func (e *env) grow(n int) error {
	c, err := config.Load(e.confOn, false)
	if err != nil {
		return err
	}
	for e.attached < n {
		i := e.attached
		f, name, err := tap.Open(fmt.Sprintf("vm%04d", i), tap.DefaultOptions)
		if err != nil {
			return err
		}
		e.held = append(e.held, f)
		m := net.HardwareAddr{0x52, 0x54, 0x01, 0, byte(i >> 8), byte(i)}
		ip := netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + i%250)})
		if err := vmport.Attach(c, vmport.Port{Name: name, GuestMAC: m, GuestIPs: []netip.Addr{ip}}); err != nil {
			return fmt.Errorf("attaching VM %d of %d: %w", i+1, n, err)
		}
		e.attached++
	}
	return nil
}

// sandbox is a new namespace for a CNI attachment, deleted by close.
func (e *env) sandbox() (*testbed.NetNS, error) {
	s, err := testbed.CreateNetNS()
	if err != nil {
		return nil, err
	}
	e.sandboxes = append(e.sandboxes, s)
	return s, nil
}

// close undoes newEnv: TAPs closed, namespaces deleted, mounts and files
// removed.
func (e *env) close() {
	for _, f := range e.held {
		f.Close()
	}
	if e.selfNS >= 0 {
		_ = unix.Setns(e.selfNS, unix.CLONE_NEWNET)
		unix.Close(e.selfNS)
	}
	if e.hvFD >= 0 {
		unix.Close(e.hvFD)
	}
	var errs []error
	for _, n := range append(e.sandboxes, e.hv, e.router) {
		if n != nil {
			errs = append(errs, n.Delete())
		}
	}
	for i := len(e.mounts) - 1; i >= 0; i-- {
		errs = append(errs, unix.Unmount(e.mounts[i], unix.MNT_DETACH))
	}
	if e.tmp != "" {
		errs = append(errs, os.RemoveAll(e.tmp))
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(os.Stderr, "bench: cleaning up: %v\n", err)
	}
}
