package e2e

import (
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tapbridge/tapbridge/test/testbed"
)

// TestDeb: make deb builds a package that lintian passes, that installs
// into a throwaway root (dpkg --root, maintainer scripts run without a
// chroot against that root), whose bridge helper gets root:kvm 4750
// through dpkg-statoverride and keeps it on upgrade, from whose installed
// paths an unprivileged QEMU guest gets onto the LAN, and that purges
// without a trace.
func TestDeb(t *testing.T) {
	t.Parallel()
	needRoot(t)
	for _, tool := range []string{"make", "dpkg", "dpkg-deb", "lintian", "getcap"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make deps installs it)", tool)
		}
	}
	kvmGroup, err := user.LookupGroup("kvm")
	if err != nil {
		t.Skip(err)
	}
	kvm, _ := strconv.Atoi(kvmGroup.Gid)
	// Every user must reach the installed helper: not t.TempDir (0700).
	dir, err := os.MkdirTemp("", "tb-deb-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	// Two versions, to upgrade from one to the other.
	makeDeb := func(version string) string {
		t.Helper()
		out := filepath.Join(dir, "out-"+version)
		if log, err := makeIn(t, "deb", "DEB_DIR="+out, "BIN_DIR="+filepath.Join(dir, "bin"), "DEB_VERSION="+version); err != nil {
			t.Fatalf("make deb: %v\n%s", err, log)
		}
		debs, _ := filepath.Glob(filepath.Join(out, "tapbridge_*.deb"))
		if len(debs) != 1 {
			t.Fatalf("make deb made %v, want one tapbridge_*.deb", debs)
		}
		return debs[0]
	}
	deb, next := makeDeb("0.1.0"), makeDeb("0.1.1")

	// lintian takes a while: it runs while the package is installed and
	// the guest boots.
	var lint strings.Builder
	lintian := exec.Command("lintian", "--fail-on", "error,warning", deb)
	lintian.Stdout, lintian.Stderr = &lint, &lint
	if err := lintian.Start(); err != nil {
		t.Fatal(err)
	}
	lintDone := false
	waitLintian := func() {
		if lintDone {
			return
		}
		lintDone = true
		if err := lintian.Wait(); err != nil {
			t.Errorf("lintian: %v\n%s", err, lint.String())
		}
		for _, line := range strings.Split(lint.String(), "\n") {
			if strings.HasPrefix(line, "E: ") || strings.HasPrefix(line, "W: ") {
				t.Errorf("lintian: %s", line)
			}
		}
	}
	t.Cleanup(waitLintian) // also when the test stops early: no lintian left running

	// A root with an empty dpkg database.
	root := filepath.Join(dir, "root")
	admin := filepath.Join(root, "var/lib/dpkg")
	for _, d := range []string{"info", "updates", "triggers"} {
		if err := os.MkdirAll(filepath.Join(admin, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(admin, "status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dpkg := func(args ...string) {
		t.Helper()
		cmd := exec.Command("dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--log=/dev/null"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	helper := filepath.Join(root, "usr/libexec/tapbridge/tapbridge-bridge-helper")
	setuid := "urwxr-x--- gid=" + kvmGroup.Gid

	dpkg("-i", deb)
	if got := helperState(t, helper); got != setuid {
		t.Errorf("helper after install: %q, want %q (dpkg-statoverride in postinst)", got, setuid)
	}
	conffiles, err := exec.Command("dpkg-query", "--admindir="+admin, "-W", "-f=${Conffiles}", "tapbridge").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"/etc/tapbridge/tapbridge.conf", "/etc/tapbridge/bridge.conf"} {
		if !strings.Contains(string(conffiles), " "+c+" ") {
			t.Errorf("%s is not a conffile: %q", c, conffiles)
		}
	}
	for _, f := range []string{"usr/bin/tapbridge", "usr/lib/cni/tapbridge", "usr/share/man/man8/tapbridge.8.gz",
		"usr/share/bash-completion/completions/tapbridge", "usr/share/doc/tapbridge/copyright", "lib/systemd/system/tapbridge.service"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	dpkg("-i", next) // an upgrade: the helper keeps its mode
	if got := helperState(t, helper); got != setuid {
		t.Errorf("helper after the upgrade to 0.1.1: %q, want %q", got, setuid)
	}
	if v, err := exec.Command("dpkg-query", "--admindir="+admin, "-W", "-f=${Version}", "tapbridge").Output(); err != nil || string(v) != "0.1.1" {
		t.Errorf("installed version after the upgrade: %q %v, want 0.1.1", v, err)
	}

	// A guest of an unprivileged QEMU (nobody, in group kvm) through the
	// installed helper.
	if err := testbed.CheckGuest(); err != nil {
		t.Logf("no guest: %v", err)
	} else {
		b := newQEMUBed(t)
		g := b.start(t, "bridge,br=br0,helper="+helper, &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{uint32(kvm)}})
		b.assertOnLAN(t, g)
		ports := b.ports(t)
		if len(ports) != 1 || !strings.HasPrefix(ports[0], "tap") {
			t.Fatalf("ports of br0 = %v, want one tapN", ports)
		}
		if err := g.Stop(); err != nil {
			t.Fatal(err)
		}
		// The installed tapbridge gc removes the vanished TAP's policy
		// and says so in the journal.
		sock := filepath.Join(dir, "journal.socket")
		journal, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		defer journal.Close()
		cmd := b.lan.HV.Command(filepath.Join(root, "usr/bin/tapbridge"), "gc")
		cmd.Env = append(os.Environ(), append(b.env(), "TAPBRIDGE_JOURNAL_SOCKET="+sock)...)
		out, err := cmd.CombinedOutput()
		if want := "removed the policies of 1 vanished port: " + ports[0] + "\n"; err != nil || string(out) != want {
			t.Errorf("installed tapbridge gc: %v, %q, want %q", err, out, want)
		}
		_ = journal.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4096)
		n, err := journal.Read(buf)
		if err != nil {
			t.Fatalf("no journal record from tapbridge gc: %v", err)
		}
		got := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(string(buf[:n])), "\n") {
			k, v, _ := strings.Cut(l, "=")
			got[k] = v
		}
		want := map[string]string{
			"MESSAGE": "gc: ok: " + ports[0], "PRIORITY": "6", "SYSLOG_FACILITY": "3", "SYSLOG_IDENTIFIER": "tapbridge",
			"TAPBRIDGE_ACTION": "gc", "TAPBRIDGE_RESULT": "ok",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("journal record of gc (-want +got):\n%s", diff)
		}
	}

	waitLintian()
	dpkg("--purge", "tapbridge")
	var left []string
	_ = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && p != root && !strings.HasPrefix(p, filepath.Join(root, "var")) {
			left = append(left, strings.TrimPrefix(p, root))
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("left after dpkg --purge: %v", left)
	}
	if so, _ := os.ReadFile(filepath.Join(admin, "statoverride")); len(so) > 0 {
		t.Errorf("statoverride left after purge: %q", so)
	}
}
