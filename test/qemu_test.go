package e2e

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/front"
	"github.com/tapbridge/tapbridge/internal/tap"
	"github.com/tapbridge/tapbridge/internal/testkit"
	"github.com/tapbridge/tapbridge/test/testbed"
)

// The QEMU front end end to end: real QEMU guests on a LAN of namespaces
// (a router running dnsmasq, a hypervisor whose eth0 holds 192.0.2.10/24),
// attached by bin/qemu-ifup, by the bridge helper for an unprivileged QEMU,
// and through `tapbridge tap add` with script=no.

var nobody = &syscall.Credential{Uid: 65534, Gid: 65534}

// qemuBed is a LAN plus the files the QEMU front end reads: a directory
// every user may read, holding the configuration, the ACL, a setuid copy
// of the bridge helper, and the state directory (root's, with its lock
// directory, so the helper accepts it for an unprivileged QEMU).
type qemuBed struct {
	lan    *testbed.LAN
	dir    string
	conf   string // TAPBRIDGE_CONF
	acl    string
	runDir string // TAPBRIDGE_RUN_DIR
	helper string // setuid root copy of bin/tapbridge-bridge-helper
}

func newQEMUBed(t *testing.T) *qemuBed {
	t.Helper()
	if err := testbed.CheckGuest(); err != nil {
		t.Skip(err)
	}
	b := newQEMUFiles(t, "tb-qemu-")
	b.lan = testbed.NewLAN(t, testbed.LANOptions{DHCP: true})
	if err := os.MkdirAll(filepath.Join(b.runDir, "lock"), 0o755); err != nil {
		t.Fatal(err)
	}
	b.writeACL(t, "allow br0\n")
	// The uplink is named and br0 does not exist yet: the first attach
	// makes br0 and moves eth0 with its address and routes into it.
	b.writeConf(t, `{"cniVersion": "1.0.0", "name": "lan", "type": "tapbridge", "bridge": "br0", "uplink": "eth0", "acl": %q}`, b.acl)
	// Setuid root, as installed.
	testbed.InstallHelper(t, bin("qemu-ifup"), b.helper, testbed.HelperSetuid)
	return b
}

// newQEMUFiles returns a qemuBed without a LAN: its files' paths in a new
// directory (pattern, as for os.MkdirTemp) that every user may read,
// removed at cleanup.
func newQEMUFiles(t *testing.T, pattern string) *qemuBed {
	t.Helper()
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &qemuBed{
		dir:    dir,
		conf:   filepath.Join(dir, "tapbridge.conf"),
		acl:    filepath.Join(dir, "bridge.conf"),
		runDir: filepath.Join(dir, "run"),
		helper: filepath.Join(dir, "tapbridge-bridge-helper"),
	}
}

// writeConf writes the configuration as a tenant's own: root:nogroup 0640,
// readable by QEMU's user nobody through its group and by no other user.
func (b *qemuBed) writeConf(t *testing.T, format string, args ...any) {
	t.Helper()
	if err := os.WriteFile(b.conf, []byte(fmt.Sprintf(format, args...)), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(b.conf, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(b.conf, 0, int(nobody.Gid)); err != nil {
		t.Fatal(err)
	}
}

func (b *qemuBed) writeACL(t *testing.T, s string) {
	t.Helper()
	if err := os.WriteFile(b.acl, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// env is what QEMU passes on to its scripts and helper.
func (b *qemuBed) env() []string {
	return []string{"TAPBRIDGE_CONF=" + b.conf, "TAPBRIDGE_RUN_DIR=" + b.runDir}
}

func (b *qemuBed) start(t *testing.T, netdev string, cred *syscall.Credential) *testbed.Guest {
	t.Helper()
	return testbed.StartGuest(t, testbed.GuestOpts{NetNS: b.lan.HV, Netdev: netdev, Env: b.env(), Credential: cred})
}

// assertOnLAN checks what a user of the VM would: the router leased it an
// address (dnsmasq's lease file has the guest's MAC), the router fetches a
// page from that address, and the hypervisor still reaches the router.
func (b *qemuBed) assertOnLAN(t *testing.T, g *testbed.Guest) netip.Addr {
	t.Helper()
	ip, err := g.WaitLease(90 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	lease, err := b.lan.WaitLease(g.MAC, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if lease.IP != ip {
		t.Errorf("dnsmasq leased %s to %s, the guest configured %s", lease.IP, g.MAC, ip)
	}
	if err := g.WaitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	body, err := b.lan.Router.Fetch("http://" + ip.String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	if want := "mac=" + g.MAC; !strings.Contains(body, want) {
		t.Errorf("page from %s = %q, want it to name %s", ip, body, want)
	}
	if err := b.lan.HV.Ping(b.lan.RouterIPv4.Addr().String()); err != nil {
		t.Errorf("the hypervisor no longer reaches the router: %v", err)
	}
	// The host's address moved onto the bridge with the uplink.
	if out := b.lan.HV.MustExec(t, "ip", "-4", "-o", "addr", "show", "dev", "br0"); !strings.Contains(out, b.lan.HVIPv4.String()) {
		t.Errorf("br0 does not hold %s: %s", b.lan.HVIPv4, out)
	}
	return ip
}

// ports returns the TAPs that br0's ports other than the uplink stand for,
// and checks that each port is a front (a TAP on the bridge itself would let
// its QEMU change the MAC the bridge knows it by) with the bridge's MTU and
// a MAC whose first byte is 0xFE.
func (b *qemuBed) ports(t *testing.T) []string {
	t.Helper()
	out, err := b.lan.HV.Exec("ip", "-o", "link", "show", "master", "br0")
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			return nil
		}
		t.Fatal(err)
	}
	brMTU := linkMTU(t, b.lan.HV, "br0")
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name := strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":")
		if name == "eth0" {
			continue
		}
		var info front.Info
		err := b.lan.HV.Do(func() error {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			var ok bool
			if info, ok = front.Of(l); !ok {
				return fmt.Errorf("port %s of br0 is not a front (alias %q)", name, l.Attrs().Alias)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
			continue
		}
		names = append(names, info.TAP)
		if m := regexp.MustCompile(`mtu (\d+)`).FindStringSubmatch(line); m == nil || m[1] != strconv.Itoa(brMTU) {
			t.Errorf("port %s: want MTU %d: %s", name, brMTU, line)
		}
		if !strings.Contains(line, "link/ether fe:") {
			t.Errorf("port %s: want a MAC starting with fe: %s", name, line)
		}
	}
	sort.Strings(names)
	return names
}

func linkMTU(t *testing.T, n *testbed.NetNS, name string) int {
	t.Helper()
	out := n.MustExec(t, "ip", "-o", "link", "show", "dev", name)
	m := regexp.MustCompile(`mtu (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no MTU in %q", out)
	}
	v, _ := strconv.Atoi(m[1])
	return v
}

// TestQEMUScript: -netdev tap with script=qemu-ifup and downscript=
// qemu-ifdown, a configuration naming the uplink and a bridge that does not
// exist yet.
func TestQEMUScript(t *testing.T) {
	t.Parallel()
	b := newQEMUBed(t)
	if _, err := b.lan.HV.Exec("ip", "link", "show", "br0"); err == nil {
		t.Fatal("br0 exists before QEMU starts")
	}
	g := b.start(t, fmt.Sprintf("tap,ifname=tap0,script=%s,downscript=%s", bin("qemu-ifup"), bin("qemu-ifdown")), nil)
	b.assertOnLAN(t, g)
	if diff := cmp.Diff([]string{"tap0"}, b.ports(t)); diff != "" {
		t.Errorf("ports of br0 (-want +got):\n%s", diff)
	}
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	if p := b.ports(t); len(p) != 0 {
		t.Errorf("after QEMU exited br0 still has %v", p)
	}
	if err := b.lan.HV.Ping(b.lan.RouterIPv4.Addr().String()); err != nil {
		t.Errorf("the hypervisor no longer reaches the router after the VM left: %v", err)
	}
}

// TestQEMUBridgeHelper: -netdev bridge,helper= with QEMU as nobody and the
// helper setuid root, first with an ACL that denies br0, then allowing it.
func TestQEMUBridgeHelper(t *testing.T) {
	t.Parallel()
	b := newQEMUBed(t)
	netdev := "bridge,br=br0,helper=" + b.helper

	b.writeACL(t, "allow all\ndeny br0\n")
	denied := b.start(t, netdev, nobody)
	select {
	case <-denied.Exited():
	case <-time.After(30 * time.Second):
		t.Fatal("QEMU still runs with an ACL that denies br0")
	}
	if err := denied.Wait(); err == nil {
		t.Error("QEMU exited 0 with an ACL that denies br0")
	}
	out := denied.Output()
	for _, want := range []string{
		`tapbridge-bridge-helper: cannot attach a TAP to bridge "br0": access denied by acl file ` + b.acl + `:2 (deny br0) (uid 65534)`,
		"bridge helper failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("QEMU's output lacks %q:\n%s", want, out)
		}
	}
	if _, err := b.lan.HV.Exec("ip", "link", "show", "br0"); err == nil {
		t.Error("a denied helper created br0")
	}

	b.writeACL(t, "# nobody's QEMU may use br0\nallow br0\n")
	g := b.start(t, netdev, nobody)
	b.assertOnLAN(t, g)
	ports := b.ports(t)
	if len(ports) != 1 || !strings.HasPrefix(ports[0], "tap") {
		t.Fatalf("ports of br0 = %v, want one tapN", ports)
	}
	if info := tapInfoOf(t, b.lan.HV, ports[0]); info.Persistent || !info.VnetHdr {
		t.Errorf("helper's TAP %s = %+v, want non-persistent with vnet_hdr", ports[0], info)
	}
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	// -netdev bridge runs no down script: the front of the vanished TAP
	// stays on br0, carrying nothing, until `tapbridge gc` (or the next
	// helper run) removes it and its policy; nothing of it is left in the
	// ruleset.
	cmd := b.lan.HV.Command(bin("tapbridge"), "gc")
	cmd.Env = append(os.Environ(), b.env()...)
	gcOut, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(gcOut), ports[0]) {
		t.Errorf("tapbridge gc: %v\n%s", err, gcOut)
	}
	if rs := b.lan.HV.MustExec(t, "nft", "list", "ruleset"); strings.Contains(rs, ports[0]) || strings.Contains(rs, frontPort(ports[0])) {
		t.Errorf("policy of %s left after gc:\n%s", ports[0], rs)
	}
	if p := b.ports(t); len(p) != 0 {
		t.Errorf("after QEMU exited and gc ran, br0 still has %v", p)
	}
}

func tapInfoOf(t *testing.T, n *testbed.NetNS, name string) tap.Info {
	t.Helper()
	var info tap.Info
	if err := n.Do(func() (err error) { info, err = tap.Inspect(name); return err }); err != nil {
		t.Fatal(err)
	}
	return info
}

// TestQEMUPersistentTAP: `tapbridge tap add tap1 --owner nobody`, then
// QEMU as nobody with script=no.
func TestQEMUPersistentTAP(t *testing.T) {
	t.Parallel()
	b := newQEMUBed(t)
	tb := func(args ...string) string {
		t.Helper()
		cmd := b.lan.HV.Command(bin("tapbridge"), args...)
		cmd.Env = append(os.Environ(), b.env()...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("tapbridge %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := tb("tap", "add", "tap1", "--owner", "nobody", "--config", b.conf)
	if !strings.Contains(out, "tap1: attached to bridge br0 through port tbv1f2e225229 (owner nobody=65534") {
		t.Errorf("tap add said %q", out)
	}
	if again := tb("tap", "add", "tap1", "--owner", "nobody", "--config", b.conf); !strings.Contains(again, "tap1: already on bridge br0") {
		t.Errorf("second tap add said %q", again)
	}
	if info := tapInfoOf(t, b.lan.HV, "tap1"); info.Owner != 65534 || !info.Persistent {
		t.Errorf("tap1 = %+v, want persistent, owned by 65534", info)
	}
	g := b.start(t, "tap,ifname=tap1,script=no,downscript=no", nobody)
	b.assertOnLAN(t, g)
	if diff := cmp.Diff([]string{"tap1"}, b.ports(t)); diff != "" {
		t.Errorf("ports of br0 (-want +got):\n%s", diff)
	}
	// A TAP a running QEMU holds is not deleted.
	cmd := b.lan.HV.Command(bin("tapbridge"), "tap", "del", "tap1", "--config", b.conf)
	cmd.Env = append(os.Environ(), b.env()...)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "in use") {
		t.Errorf("tap del while QEMU runs: %v, %s", err, out)
	}
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"tap1"}, b.ports(t)); diff != "" {
		t.Errorf("a persistent TAP outlives QEMU (-want +got):\n%s", diff)
	}
	if out := tb("tap", "del", "tap1", "--config", b.conf); !strings.Contains(out, "tap1: detached from br0 and deleted") {
		t.Errorf("tap del said %q", out)
	}
	if out := tb("tap", "del", "tap1", "--config", b.conf); !strings.Contains(out, "does not exist, nothing to do") {
		t.Errorf("second tap del said %q", out)
	}
	if _, err := b.lan.HV.Exec("ip", "link", "show", "tap1"); err == nil {
		t.Error("tap1 still exists after tap del")
	}
}

// TestQEMUTwoGuests: two guests started at once through qemu-ifup (their
// hooks race to create br0 and move the uplink) get two leases and both
// answer on their own addresses.
func TestQEMUTwoGuests(t *testing.T) {
	t.Parallel()
	b := newQEMUBed(t)
	var guests []*testbed.Guest
	for _, tapName := range []string{"tap0", "tap1"} {
		guests = append(guests, b.start(t, fmt.Sprintf("tap,ifname=%s,script=%s,downscript=%s", tapName, bin("qemu-ifup"), bin("qemu-ifdown")), nil))
	}
	ips := make([]netip.Addr, len(guests))
	var wg sync.WaitGroup
	for i, g := range guests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ip, err := g.WaitLease(90 * time.Second)
			if err != nil {
				t.Error(err)
			}
			ips[i] = ip
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, g := range guests {
		b.assertOnLAN(t, g)
	}
	if ips[0] == ips[1] {
		t.Errorf("both guests got %s", ips[0])
	}
	if diff := cmp.Diff([]string{"tap0", "tap1"}, b.ports(t)); diff != "" {
		t.Errorf("ports of br0 (-want +got):\n%s", diff)
	}
}

// linkDump is every link of a namespace with what a failed hook must not
// change.
func linkDump(t *testing.T, n *testbed.NetNS) string {
	t.Helper()
	out := n.MustExec(t, "ip", "-d", "-o", "link", "show")
	return regexp.MustCompile(`\s+(\w+_timer)\s+[0-9.]+`).ReplaceAllString(out, " $1")
}

// TestQEMUIfupFailures: qemu-ifup prints one line naming the TAP, the
// bridge and the reason, exits non-zero and changes nothing; QEMU shows
// that line; qemu-ifdown on a TAP that is gone succeeds.
func TestQEMUIfupFailures(t *testing.T) {
	t.Parallel()
	if err := testbed.CheckLAN(); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name  string
		setup []string // ip commands in the namespace
		conf  string
		want  []string
	}{
		{
			name:  "bridge name that is not a bridge",
			setup: []string{"link add br0 type veth peer name br0p"},
			conf:  write("notbridge.conf", `{"bridge": "br0", "uplink": "eth0"}`),
			want:  []string{`qemu-ifup: cannot attach TAP "tap0" to bridge "br0": `, `"br0" is a veth device: not a bridge`},
		},
		{
			name: "bad config",
			conf: write("bad.conf", `{"bridge": "br1", "mtu": 12}`),
			want: []string{`qemu-ifup: cannot attach TAP "tap0" to bridge "br1": `, `"mtu": must be between 68 and 65535, got 12`},
		},
		{
			name: "config that is not JSON",
			conf: write("notjson.conf", "bridge = br0\n"),
			want: []string{`qemu-ifup: cannot attach TAP "tap0" to bridge "br0": `, `invalid JSON`},
		},
		{
			name: "ACL denies the bridge",
			conf: write("denied.conf", fmt.Sprintf(`{"acl": %q}`, write("deny.acl", "allow all\ndeny br0\n"))),
			want: []string{`qemu-ifup: cannot attach TAP "tap0" to bridge "br0": access denied by acl file `, `deny.acl:2 (deny br0)`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := testbed.NewNetNS(t)
			n.MustExec(t, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
			n.MustExec(t, "ip", "tuntap", "add", "tap0", "mode", "tap")
			for _, s := range tt.setup {
				n.MustExec(t, "ip", strings.Fields(s)...)
			}
			before := linkDump(t, n)
			cmd := n.Command(bin("qemu-ifup"), "tap0")
			cmd.Env = append(os.Environ(), "TAPBRIDGE_CONF="+tt.conf, "TAPBRIDGE_RUN_DIR="+t.TempDir())
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if err == nil {
				t.Fatal("qemu-ifup succeeded")
			}
			line := stderr.String()
			if strings.Count(line, "\n") != 1 || stdout.Len() != 0 {
				t.Errorf("want one line on stderr and nothing on stdout, got stderr %q stdout %q", line, stdout.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(line, w) {
					t.Errorf("stderr %q lacks %q", line, w)
				}
			}
			if diff := cmp.Diff(before, linkDump(t, n)); diff != "" {
				t.Errorf("a failed qemu-ifup changed links (-before +after):\n%s", diff)
			}
		})
	}

	t.Run("ifdown on a gone TAP", func(t *testing.T) {
		t.Parallel()
		n := testbed.NewNetNS(t)
		cmd := n.Command(bin("qemu-ifdown"), "tap9")
		cmd.Env = append(os.Environ(), "TAPBRIDGE_CONF="+write("ok.conf", `{"bridge": "br0"}`), "TAPBRIDGE_RUN_DIR="+t.TempDir())
		if out, err := cmd.CombinedOutput(); err != nil || len(out) != 0 {
			t.Errorf("qemu-ifdown tap9 = %v, %q; want success and silence", err, out)
		}
	})

	t.Run("QEMU shows the reason", func(t *testing.T) {
		t.Parallel()
		if err := testbed.CheckGuest(); err != nil {
			t.Skip(err)
		}
		n := testbed.NewNetNS(t)
		n.MustExec(t, "ip", "link", "add", "br0", "type", "veth", "peer", "name", "br0p")
		g := testbed.StartGuest(t, testbed.GuestOpts{
			NetNS:  n,
			Netdev: fmt.Sprintf("tap,ifname=tap0,script=%s,downscript=%s", bin("qemu-ifup"), bin("qemu-ifdown")),
			Env:    []string{"TAPBRIDGE_CONF=" + write("qemu.conf", `{"bridge": "br0"}`), "TAPBRIDGE_RUN_DIR=" + t.TempDir()},
		})
		if err := g.Wait(); err == nil {
			t.Fatal("QEMU started with a bridge that is not a bridge")
		}
		if out := g.Output(); !strings.Contains(out, `qemu-ifup: cannot attach TAP "tap0" to bridge "br0": bridge "br0" exists and is not a bridge`) {
			t.Errorf("QEMU's output lacks qemu-ifup's reason:\n%s", out)
		}
		if out := n.MustExec(t, "ip", "-o", "link", "show"); strings.Contains(out, "tap0") {
			t.Errorf("tap0 left behind:\n%s", out)
		}
	})
}

// TestBridgeHelperPrivileges runs the helper as nobody the way QEMU does,
// installed either way docs/qemu.md describes (setuid root, or the file
// capability cap_net_admin+ep), holds it at the bridge lock, and reads the
// credentials of every one of its threads: CAP_NET_ADMIN and nothing else
// effective or permitted, none inheritable or ambient, no_new_privs, and
// for setuid root a bounding set of CAP_NET_ADMIN only. Then the TAP
// descriptor arrives on the socket, for a TAP on br0.
func TestBridgeHelperPrivileges(t *testing.T) {
	t.Parallel()
	if err := testbed.CheckLAN(); err != nil {
		t.Skip(err)
	}
	const netAdmin = "0000000000001000" // 1 << CAP_NET_ADMIN (12)
	tests := []struct {
		name string
		priv testbed.HelperPrivilege
		want map[string]string
	}{
		{
			name: "setuid root",
			priv: testbed.HelperSetuid,
			// Root as real and saved uid too, from before it takes a lock
			// until it exits: its caller (nobody) cannot stop it.
			want: map[string]string{"Uid": "0 0 0 0", "CapBnd": netAdmin},
		},
		{
			name: "file capability",
			priv: testbed.HelperCaps,
			// The bounding set needs CAP_SETPCAP to shrink; no_new_privs
			// makes it moot.
			want: map[string]string{"Uid": "65534 65534 65534 65534"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := exec.LookPath("setcap"); err != nil && tt.priv == testbed.HelperCaps {
				t.Skip("setcap not found: install libcap2-bin")
			}
			b := newQEMUFiles(t, "tb-helper-")
			if err := os.MkdirAll(filepath.Join(b.runDir, "lock", "bridge"), 0o755); err != nil {
				t.Fatal(err)
			}
			b.writeACL(t, "allow br0\n")
			b.writeConf(t, `{"bridge": "br0", "acl": %q}`, b.acl)
			testbed.InstallHelper(t, bin("qemu-ifup"), b.helper, tt.priv)
			n := testbed.NewNetNS(t)
			n.MustExec(t, "ip", "link", "add", "br0", "type", "bridge")

			// The lock file as docs/qemu.md says to make it for the file
			// capability: writable by the QEMU users' group.
			lockPath := filepath.Join(b.runDir, "lock", "bridge", "br0.lock")
			lock, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o660)
			if err != nil {
				t.Fatal(err)
			}
			defer lock.Close()
			if err := os.Chown(lockPath, 0, 65534); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(lockPath, 0o660); err != nil {
				t.Fatal(err)
			}
			policyLock := filepath.Join(b.runDir, "lock", "policy.lock")
			if err := os.WriteFile(policyLock, nil, 0o660); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(policyLock, 0, 65534); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(policyLock, 0o660); err != nil {
				t.Fatal(err)
			}
			if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
				t.Fatal(err)
			}
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			qemuEnd, helperEnd := os.NewFile(uintptr(fds[0]), "qemu"), os.NewFile(uintptr(fds[1]), "helper")
			defer qemuEnd.Close()
			cmd := n.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", b.helper, "--use-vnet", "--fd=3", "--br=br0")
			cmd.ExtraFiles = []*os.File{helperEnd}
			// The caller asks for a fault-injection trace in a directory
			// only root may write to: the helper must not write it for
			// them (a setuid helper would create or append to any file).
			trace := filepath.Join(t.TempDir(), "trace")
			cmd.Env = append(os.Environ(), append(b.env(), "TAPBRIDGE_FAILPOINT_TRACE="+trace)...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			helperEnd.Close()
			var waitErr error
			done := make(chan struct{})
			go func() { waitErr = cmd.Wait(); close(done) }()
			t.Cleanup(func() {
				select {
				case <-done:
				default:
					_ = cmd.Process.Kill()
					<-done
				}
			})

			// The helper creates its TAP before it takes the bridge lock.
			deadline := time.Now().Add(10 * time.Second)
			for out, _ := n.Exec("ip", "-o", "link", "show", "type", "tun"); !strings.Contains(out, "tap"); out, _ = n.Exec("ip", "-o", "link", "show", "type", "tun") {
				select {
				case <-done:
					t.Fatalf("the helper exited: %v: %s", waitErr, stderr.String())
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("no TAP from the helper after 10s: %s", stderr.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", cmd.Process.Pid))
			if err != nil {
				t.Fatal(err)
			}
			if len(tasks) < 2 {
				t.Errorf("the helper runs %d thread(s); the test wants to see more than one", len(tasks))
			}
			want := map[string]string{
				"CapEff":     netAdmin,
				"CapPrm":     netAdmin,
				"CapInh":     "0000000000000000",
				"CapAmb":     "0000000000000000",
				"NoNewPrivs": "1",
			}
			for k, v := range tt.want {
				want[k] = v
			}
			for _, task := range tasks {
				got := procStatus(t, fmt.Sprintf("/proc/%d/task/%s/status", cmd.Process.Pid, task.Name()))
				if _, ok := want["CapBnd"]; !ok {
					delete(got, "CapBnd")
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("thread %s of the helper (-want +got):\n%s", task.Name(), diff)
				}
			}
			// Its caller tries to stop it while it waits at (and would then
			// hold) the bridge lock: only the file-capability install, which
			// runs as the caller, can be stopped (docs/qemu.md).
			stop := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "kill", "-STOP", fmt.Sprint(cmd.Process.Pid))
			stopOut, stopErr := stop.CombinedOutput()
			if stoppable := tt.name == "file capability"; (stopErr == nil) != stoppable {
				t.Errorf("kill -STOP by the caller: %v %s; want stoppable %v", stopErr, stopOut, stoppable)
			}
			_ = cmd.Process.Signal(syscall.SIGCONT)
			unix.Flock(int(lock.Fd()), unix.LOCK_UN)
			select {
			case <-done:
				if waitErr != nil {
					t.Fatalf("helper: %v: %s", waitErr, stderr.String())
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the helper did not finish after the lock was released")
			}
			if _, err := os.Stat(trace); !os.IsNotExist(err) {
				t.Errorf("the helper wrote the caller's TAPBRIDGE_FAILPOINT_TRACE file %s (stat: %v)", trace, err)
			}
			tapFD := testkit.RecvFD(t, int(qemuEnd.Fd()))
			if out := n.MustExec(t, "ip", "-o", "link", "show", "master", "br0"); !strings.Contains(out, "tap0") {
				t.Errorf("the helper's TAP is not on br0: %s", out)
			}
			unix.Close(tapFD)
			if out := n.MustExec(t, "ip", "-o", "link", "show", "type", "tun"); strings.Contains(out, "tap0") {
				t.Errorf("the helper's TAP outlived its last descriptor: %s", out)
			}
			// br0 loses its carrier with its last port, reported
			// asynchronously (linkwatch): wait before the links are compared.
			for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if strings.Contains(n.MustExec(t, "ip", "link", "show", "dev", "br0"), "NO-CARRIER") {
					break
				}
			}

			// The privileged binary run under the hooks' names by the user
			// refuses, and changes nothing: as qemu-ifdown it would strip a
			// port's policy, as qemu-ifup attach anything anywhere.
			n.MustExec(t, "ip", "tuntap", "add", "tap9", "mode", "tap")
			// What a hook would change: which links exist, their masters,
			// MTUs and MACs; not the operational state, which the kernel
			// updates on its own time (linkwatch).
			links := func() string {
				out := n.MustExec(t, "ip", "-o", "link", "show")
				return regexp.MustCompile(`<[^>]*>|state \S+|qlen \d+`).ReplaceAllString(out, "")
			}
			before := links()
			for _, name := range []string{"qemu-ifup", "qemu-ifdown"} {
				link := filepath.Join(b.dir, name)
				if err := os.Symlink(b.helper, link); err != nil {
					t.Fatal(err)
				}
				cmd := n.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", link, "tap9")
				cmd.Env = append(os.Environ(), b.env()...)
				out, err := cmd.CombinedOutput()
				if err == nil || !strings.Contains(string(out), "refused: this binary runs with privileges") {
					t.Errorf("%s run by nobody from the privileged binary: %v: %s", name, err, out)
				}
			}
			if after := links(); after != before {
				t.Errorf("a refused hook changed the links:\n%s\nthen:\n%s", before, after)
			}
		})
	}
}

// procStatus returns the lines of a /proc status file the test looks at,
// tabs turned into spaces.
func procStatus(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		switch k {
		case "Uid", "CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb", "NoNewPrivs":
			if ok {
				out[k] = strings.Join(strings.Fields(v), " ")
			}
		}
	}
	return out
}

// BenchmarkQEMUIfup measures bin/qemu-ifup as QEMU runs it, process start
// included, on a bridge that exists already: each iteration attaches one
// more TAP. The child runs in the bench namespace because it is forked from
// a thread inside it.
func BenchmarkQEMUIfup(b *testing.B) {
	needRoot(b)
	n := testbed.NewNetNS(b)
	runDir := b.TempDir()
	conf := filepath.Join(b.TempDir(), "tapbridge.conf")
	if err := os.WriteFile(conf, []byte(`{"bridge": "br0"}`), 0o644); err != nil {
		b.Fatal(err)
	}
	env := append(os.Environ(), "TAPBRIDGE_CONF="+conf, "TAPBRIDGE_RUN_DIR="+runDir)
	ifup := func(name string) error {
		cmd := exec.Command(bin("qemu-ifup"), name)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("qemu-ifup %s: %v: %s", name, err, out)
		}
		return nil
	}
	err := n.Do(func() error {
		if _, err := tap.Create("first", tap.DefaultOptions); err != nil {
			return err
		}
		if err := ifup("first"); err != nil { // creates br0
			return err
		}
		for i := 0; i < b.N; i++ {
			if _, err := tap.Create(fmt.Sprintf("tap%d", i), tap.DefaultOptions); err != nil {
				return err
			}
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := ifup(fmt.Sprintf("tap%d", i)); err != nil {
				return err
			}
		}
		b.StopTimer()
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/ifup")
}
