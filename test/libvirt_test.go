package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tapbridge/tapbridge/test/testbed"
)

// libvirtd is Debian's libvirtd (packages libvirt-daemon,
// libvirt-daemon-driver-qemu, libvirt-clients) running as root in the test
// LAN's hypervisor namespace, in a mount namespace of its own: a tmpfs on
// /run, and /etc, /var and /usr/local as overlays whose changes (its
// configuration, tapbridge installed under /usr/local as `make install`
// does, the hook in /etc/libvirt/hooks/qemu.d) are discarded with the
// namespace. Nothing of the machine's own /etc, /var or /run changes, and
// the machine's libvirtd, if any, is never contacted.
type libvirtd struct {
	hv  *testbed.NetNS
	dir string // the test's files: the overlays' upper layers, logs, probes
	d   *testbed.Daemon
}

// libvirtSetup is the shell script that prepares the mount namespace and
// execs libvirtd. $1 is the test's directory, $2 tapbridge's bin/.
const libvirtSetup = `set -e
T=$1 BIN=$2 HOOK=$3
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs "$T/ovl"
for d in etc var usr/local; do
	u=$T/ovl/$(echo $d | tr / -)
	mkdir -p "$u/up" "$u/work"
	mount -t overlay overlay -o "lowerdir=/$d,upperdir=$u/up,workdir=$u/work" "/$d"
done
# Debian's libvirt-daemon-system would add the user libvirt resolves at start.
echo 'libvirt-qemu:x:64055:64055:libvirt:/var/lib/libvirt:/usr/sbin/nologin' >>/etc/passwd
echo 'libvirt-qemu:x:64055:' >>/etc/group
mkdir -p /etc/libvirt/hooks/qemu.d /etc/tapbridge /var/lib/libvirt /var/cache/libvirt /var/log/libvirt /run/libvirt
# QEMU as root without confinement: the guest's kernel and initramfs are the
# test's files; nothing here is about libvirt's own security.
cat >/etc/libvirt/qemu.conf <<EOF
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
stdio_handler = "file"
cgroup_controllers = [ ]
EOF
# make install, into the overlay
install -D -m 0755 "$BIN/tapbridge" /usr/local/bin/tapbridge
install -D -m 0755 "$BIN/qemu-ifup" /usr/local/libexec/tapbridge/qemu-ifup
ln -sf qemu-ifup /usr/local/libexec/tapbridge/qemu-ifdown
install -m 4755 "$BIN/qemu-ifup" /usr/local/libexec/tapbridge/tapbridge-bridge-helper
echo 'allow br0' >/etc/tapbridge/bridge.conf
# the hook, as docs/libvirt.md installs it
install -m 0755 "$HOOK" /etc/libvirt/hooks/qemu.d/tapbridge
# A probe that runs after tapbridge's hook: what is there at "start".
cat >/etc/libvirt/hooks/qemu.d/zz-probe <<EOF
#!/bin/sh
[ "\$2" = start ] || exit 0
{ echo "== status files"; ls /run/libvirt/qemu; echo "== links"; ip -o link; echo "== ruleset"; nft list ruleset; } >"$T/probe-\$1.txt" 2>&1
exit 0
EOF
chmod 0755 /etc/libvirt/hooks/qemu.d/zz-probe
cp "$T/tapbridge.conf" /etc/tapbridge/tapbridge.conf
exec libvirtd
`

// checkLibvirt says why libvirtd cannot be run here, or nil.
func checkLibvirt() error {
	if err := testbed.CheckGuest(); err != nil {
		return err
	}
	for _, p := range []struct{ bin, pkg string }{
		{"libvirtd", "libvirt-daemon"}, {"virsh", "libvirt-clients"}, {"nsenter", "util-linux"}, {"unshare", "util-linux"}, {"nft", "nftables"},
	} {
		if _, err := exec.LookPath(p.bin); err != nil {
			return fmt.Errorf("%s not found: install the Debian package %s", p.bin, p.pkg)
		}
	}
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so"); err != nil {
		return fmt.Errorf("libvirt's QEMU driver is missing: install the Debian package libvirt-daemon-driver-qemu")
	}
	return nil
}

// startLibvirtd starts libvirtd in hv with tapbridge's configuration conf
// and waits until virsh reaches it. Cleanup destroys every domain still
// running, then stops libvirtd by PID, and kills a QEMU that is left by
// its PID file.
func startLibvirtd(t *testing.T, hv *testbed.NetNS, conf string) *libvirtd {
	t.Helper()
	dir, err := os.MkdirTemp("", "tb-libvirt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Mkdir(filepath.Join(dir, "ovl"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tapbridge.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	hook, err := filepath.Abs("../conf/libvirt/qemu.d/tapbridge")
	if err != nil {
		t.Fatal(err)
	}
	cmd := hv.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", libvirtSetup, "sh", dir, binDir, hook)
	cmd.Env = libvirtEnv()
	l := &libvirtd{hv: hv, dir: dir, d: testbed.StartDaemon(t, "libvirtd", cmd)}
	t.Cleanup(func() { l.stop(t) })
	l.d.WaitReady(t, func() error { _, err := l.virsh("version"); return err })
	return l
}

// libvirtEnv is the environment of libvirtd and of the commands run in its
// namespaces. libvirtd runs its hooks, and its QEMU the bridge helper, with
// an environment of its own, without GOCOVERDIR: the coverage of those runs
// is not collected (docs/testing.md).
func libvirtEnv() []string {
	return testbed.Env("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LC_ALL=C")
}

// stop destroys the running domains, stops libvirtd (SIGTERM, then
// SIGKILL) and kills what QEMU is left, each by PID.
func (l *libvirtd) stop(t *testing.T) {
	if out, err := l.virsh("list", "--name"); err == nil {
		for _, name := range strings.Fields(out) {
			if _, err := l.virsh("destroy", name); err != nil {
				t.Logf("cleanup: %v", err)
			}
		}
	}
	qemus := qemuPIDs(l.root("/run/libvirt/qemu/*.pid"))
	l.d.Stop(t)
	killLeft(t, qemus)
}

// qemuPIDs reads the PID files of libvirt's QEMUs that match pattern.
func qemuPIDs(pattern string) []int {
	files, _ := filepath.Glob(pattern)
	var pids []int
	for _, f := range files {
		if filepath.Base(f) == "driver.pid" {
			continue // libvirtd's own
		}
		data, _ := os.ReadFile(f)
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && n > 1 {
			pids = append(pids, n)
		}
	}
	return pids
}

// killLeft kills, by PID, the QEMUs a stopped libvirtd left running: those
// that a failed test did not get to destroy.
func killLeft(t *testing.T, pids []int) {
	for _, q := range pids {
		if p, err := os.FindProcess(q); err == nil && p.Signal(syscall.Signal(0)) == nil {
			t.Logf("cleanup: killing QEMU %d that libvirt left", q)
			_ = p.Kill()
		}
	}
}

// session is the environment of the ordinary user (nobody) whose
// qemu:///session libvirtd runs in libvirtd's namespaces.
func (l *libvirtd) session() []string {
	return []string{"HOME=" + filepath.Join(l.dir, "session", "home"), "XDG_RUNTIME_DIR=" + filepath.Join(l.dir, "session", "run"), "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
}

// asNobody is the command line that runs args as nobody in libvirtd's
// namespaces, with the session's environment.
func (l *libvirtd) asNobody(args ...string) []string {
	return append(append([]string{"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "env"}, l.session()...), args...)
}

// startSession starts nobody's session libvirtd, whose qemu.conf names
// tapbridge's bridge helper, and waits until virsh reaches it. Cleanup
// destroys its domains and stops it by PID.
func (l *libvirtd) startSession(t *testing.T) {
	t.Helper()
	home, run := filepath.Join(l.dir, "session", "home"), filepath.Join(l.dir, "session", "run")
	for _, d := range []string{filepath.Join(home, ".config", "libvirt"), run} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	conf := "bridge_helper = \"/usr/local/libexec/tapbridge/tapbridge-bridge-helper\"\nstdio_handler = \"file\"\n"
	if err := os.WriteFile(filepath.Join(home, ".config", "libvirt", "qemu.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// nobody owns its session, and may reach it (and the guest's files).
	if err := filepath.WalkDir(filepath.Join(l.dir, "session"), func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, 65534, 65534)
	}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(l.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := testbed.StartDaemon(t, "session libvirtd", l.nsenter(l.asNobody("libvirtd")...))
	t.Cleanup(func() {
		if out, err := l.sessionVirsh("list", "--name"); err == nil {
			for _, name := range strings.Fields(out) {
				_, _ = l.sessionVirsh("destroy", name)
			}
		}
		qemus := qemuPIDs(filepath.Join(run, "libvirt", "qemu", "run", "*.pid"))
		d.Stop(t)
		killLeft(t, qemus)
	})
	d.WaitReady(t, func() error { _, err := l.sessionVirsh("version"); return err })
}

func (l *libvirtd) sessionVirsh(args ...string) (string, error) {
	return l.run(l.asNobody(append([]string{"virsh", "-q", "-c", "qemu:///session"}, args...)...)...)
}

// nsenter is the command line that enters libvirtd's namespaces.
func (l *libvirtd) nsenter(args ...string) *exec.Cmd {
	return l.d.Enter(libvirtEnv(), args...)
}

// run runs a command in libvirtd's namespaces, as the host's root would.
func (l *libvirtd) run(args ...string) (string, error) {
	out, err := l.nsenter(args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

func (l *libvirtd) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := l.run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (l *libvirtd) virsh(args ...string) (string, error) {
	return l.run(append([]string{"virsh", "-q", "-c", "qemu:///system"}, args...)...)
}

// root is a path inside libvirtd's mount namespace, seen from the test.
func (l *libvirtd) root(path string) string {
	return l.d.Root(path)
}

// guestDomain is the domain XML of a test bed guest (the image's kernel
// and initramfs, the serial console to a file) with one interface.
func guestDomain(name, iface, metadata string, img *testbed.Image, console string) string {
	return fmt.Sprintf(`<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>256</memory>
  <metadata>%s</metadata>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>%s</kernel>
    <initrd>%s</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    %s
    <serial type='file'><source path='%s'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>`, name, metadata, img.Kernel, img.Initrd, iface, console)
}

var vnetRE = regexp.MustCompile(`\bvnet[0-9]+\b`)

// TestLibvirt drives Debian's libvirtd with four domains, one for each way
// of docs/libvirt.md, at once, on the test LAN's bridge:
//
//   - vm-script: <interface type='ethernet'> with tapbridge's qemu-ifup and
//     qemu-ifdown; its metadata asks for mac-spoof-check (which needs the
//     guest's MAC that libvirt's cleared environment does not carry) and
//     isolated="yes";
//   - vm-tap: <interface type='ethernet'> with <target managed='no'> on a
//     TAP made by `tapbridge tap add --mac-spoof-check`;
//   - vm-session: <interface type='bridge'> in nobody's qemu:///session,
//     with tapbridge's bridge helper (setuid root);
//   - vm-bridge: <interface type='bridge'> with tapbridge's hook, the same
//     metadata as vm-script.
//
// Each guest leases its address from the LAN's DHCP server and serves a
// page to the router; while it runs its port has its policy, with the
// guest's MAC where a spoof check asks for it and the metadata's
// isolation; the bridge TAP had its policy at libvirt's "start" hook,
// before QEMU existed; after `virsh destroy` (and `tap del` for the
// unmanaged TAP, `tapbridge gc` for the helper's front, as -netdev bridge
// runs no down script) nothing is left: no link, no policy, no saved XML.
func TestLibvirt(t *testing.T) {
	needRoot(t)
	if err := checkLibvirt(); err != nil {
		t.Skip(err)
	}
	lan := testbed.NewLAN(t, testbed.LANOptions{DHCP: true})
	l := startLibvirtd(t, lan.HV, `{"bridge": "br0"}`)
	l.mustRun(t, "tapbridge", "up", "--bridge", "br0", "--uplink", "eth0")
	l.startSession(t)
	// The guest's files, readable by nobody's QEMU too.
	built := testbed.BuildImage(t)
	img := *built
	for _, f := range []*string{&img.Kernel, &img.Initrd} {
		data, err := os.ReadFile(*f)
		if err != nil {
			t.Fatal(err)
		}
		*f = filepath.Join(l.dir, "session", filepath.Base(*f))
		if err := os.WriteFile(*f, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	const meta = `<tapbridge:port xmlns:tapbridge="https://tapbridge.dev/libvirt/1" mac-spoof-check="yes" isolated="yes"/>`
	type vm struct {
		name, iface, meta, mac string
		session                bool
		macCheck, isolated     bool
		port                   string // the bridge port, once known
	}
	vms := []*vm{
		{name: "vm-script", iface: `<interface type='ethernet'><mac address='%s'/><script path='/usr/local/libexec/tapbridge/qemu-ifup'/><downscript path='/usr/local/libexec/tapbridge/qemu-ifdown'/><model type='virtio'/><rom enabled='no'/></interface>`, meta: meta, macCheck: true, isolated: true},
		{name: "vm-tap", iface: `<interface type='ethernet'><mac address='%s'/><target dev='vm-tap-0' managed='no'/><model type='virtio'/><rom enabled='no'/></interface>`, macCheck: true},
		{name: "vm-session", iface: `<interface type='bridge'><mac address='%s'/><source bridge='br0'/><model type='virtio'/><rom enabled='no'/></interface>`, session: true},
		{name: "vm-bridge", iface: `<interface type='bridge'><mac address='%s'/><source bridge='br0'/><model type='virtio'/><rom enabled='no'/></interface>`, meta: meta, macCheck: true, isolated: true},
	}
	console := func(v *vm) string { return filepath.Join(l.dir, "session", v.name+".console") }
	defer func() {
		if t.Failed() {
			for _, v := range vms {
				data, _ := os.ReadFile(console(v))
				qlog, _ := os.ReadFile(l.root("/var/log/libvirt/qemu/" + v.name + ".log"))
				if v.session {
					qlog, _ = os.ReadFile(filepath.Join(l.dir, "session", "home", ".cache", "libvirt", "qemu", "log", v.name+".log"))
				}
				t.Logf("%s: console:\n%s\nlibvirt's log:\n%s", v.name, data, qlog)
			}
		}
	}()
	for _, v := range vms {
		mac, err := testbed.RandomMAC()
		if err != nil {
			t.Fatal(err)
		}
		v.mac = mac
		if v.name == "vm-tap" {
			l.mustRun(t, "tapbridge", "tap", "add", "vm-tap-0", "--config", "/etc/tapbridge/tapbridge.conf", "--mac", mac, "--mac-spoof-check")
		}
		xmlPath := filepath.Join(l.dir, "session", v.name+".xml")
		xml := guestDomain(v.name, fmt.Sprintf(v.iface, mac), v.meta, &img, console(v))
		if err := os.WriteFile(xmlPath, []byte(xml), 0o644); err != nil {
			t.Fatal(err)
		}
		virsh := l.virsh
		if v.session {
			virsh = l.sessionVirsh
		}
		if out, err := virsh("create", xmlPath); err != nil {
			t.Fatalf("virsh create %s: %v\n%s", v.name, err, out)
		}
	}

	dhcp := lan.DHCPServers()[0]
	for _, v := range vms {
		lease, err := dhcp.WaitLease(v.mac, 120*time.Second)
		if err != nil {
			t.Fatalf("%s: no lease for %s: %v", v.name, v.mac, err)
		}
		if err := waitFile(console(v), "TB-READY", 60*time.Second); err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		url := "http://" + lease.IP.String() + "/"
		page, err := lan.Router.Fetch(url)
		if err != nil || !strings.Contains(page, "mac="+v.mac) {
			t.Errorf("%s: GET %s from the router: %v %q", v.name, url, err, page)
		}
	}

	// The ports and their policies while the guests run.
	vnet := vnetRE.FindString(l.mustRun(t, "virsh", "-q", "-c", "qemu:///system", "domiflist", "vm-bridge"))
	scriptTAP := vnetRE.FindString(l.mustRun(t, "virsh", "-q", "-c", "qemu:///system", "domiflist", "vm-script"))
	sessionTAP := regexp.MustCompile(`\btap[0-9]+\b`).FindString(l.mustRun(t, l.asNobody("virsh", "-q", "-c", "qemu:///session", "domiflist", "vm-session")...))
	if vnet == "" || scriptTAP == "" || sessionTAP == "" {
		t.Fatalf("TAPs of vm-bridge, vm-script, vm-session: %q %q %q", vnet, scriptTAP, sessionTAP)
	}
	vms[0].port, vms[1].port, vms[2].port, vms[3].port = frontPort(scriptTAP), frontPort("vm-tap-0"), frontPort(sessionTAP), vnet
	policies := portPolicies(t, lan.HV)
	ruleset := lan.HV.MustExec(t, "nft", "list", "ruleset")
	for _, v := range vms {
		if !contains(policies, v.port) {
			t.Errorf("%s: port %s has no policy; ports with one: %v", v.name, v.port, policies)
		}
		if got := strings.Contains(ruleset, v.mac); got != v.macCheck {
			t.Errorf("%s: guest MAC %s in the ruleset = %v; want %v (mac-spoof-check)", v.name, v.mac, got, v.macCheck)
		}
		detail := lan.HV.MustExec(t, "bridge", "-d", "link", "show", "dev", v.port)
		if iso := strings.Contains(detail, "isolated on"); iso != v.isolated {
			t.Errorf("%s: port %s isolated=%v; want %v:\n%s", v.name, v.port, iso, v.isolated, detail)
		}
	}
	if t.Failed() {
		t.Logf("ruleset:\n%s", ruleset)
	}
	// At libvirt's start hook, the bridge TAP was up on br0 with its policy
	// and QEMU had not been started (no PID file).
	probe, err := os.ReadFile(filepath.Join(l.dir, "probe-vm-bridge.txt"))
	if err != nil {
		t.Fatalf("the probe hook did not run: %v", err)
	}
	// Sections start at lines "== NAME" (the ruleset has "==" of its own).
	sections := regexp.MustCompile(`(?m)^== `).Split(string(probe), -1)
	if len(sections) != 4 {
		t.Fatalf("probe output:\n%s", probe)
	}
	if strings.Contains(sections[1], "vm-bridge.pid") {
		t.Errorf("QEMU of vm-bridge was running at the start hook:\n%s", sections[1])
	}
	if !regexp.MustCompile(`(?m)^\d+: ` + vnet + `: <[^>]*\bUP\b[^>]*>.* master br0 `).MatchString(sections[2]) {
		t.Errorf("at the start hook %s was not up on br0:\n%s", vnet, sections[2])
	}
	if !strings.Contains(sections[3], vnet) || !strings.Contains(sections[3], vms[3].mac) {
		t.Errorf("at the start hook %s had no policy with the guest's MAC in the ruleset:\n%s", vnet, sections[3])
	}

	// virsh destroy: nothing of vm-script and vm-bridge is left; vm-tap's
	// TAP stays (managed='no') until tap del, the helper's front until gc.
	for _, v := range vms {
		virsh := l.virsh
		if v.session {
			virsh = l.sessionVirsh
		}
		if _, err := virsh("destroy", v.name); err != nil {
			t.Fatal(err)
		}
	}
	l.mustRun(t, "tapbridge", "tap", "del", "vm-tap-0")
	l.mustRun(t, "tapbridge", "gc")
	if diff := cmp.Diff([]string{"br0 bridge", "eth0 veth master=br0", "lo device"}, cniLinks(t, lan.HV)); diff != "" {
		t.Errorf("links after virsh destroy (-want +got):\n%s", diff)
	}
	if p := portPolicies(t, lan.HV); len(p) != 0 {
		t.Errorf("port policies after virsh destroy: %v", p)
	}
	saved, err := os.ReadDir(l.root("/run/tapbridge/libvirt"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if len(saved) != 0 {
		var names []string
		for _, e := range saved {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		t.Errorf("saved domain XML after virsh destroy: %v", names)
	}
}

// waitFile waits until the file at path holds s: the guest's console,
// which QEMU writes as the guest prints.
func waitFile(path, s string, timeout time.Duration) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	for {
		if data, err := os.ReadFile(path); err == nil && bytes.Contains(data, []byte(s)) {
			return nil
		}
		select {
		case <-deadline:
			return fmt.Errorf("%s has no %q after %v", path, s, timeout)
		case <-tick.C:
		}
	}
}
