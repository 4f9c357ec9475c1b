package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/testkit"
	"github.com/tapbridge/tapbridge/test/testbed"
)

// tmpfilesSnippet returns the /etc/tmpfiles.d/tapbridge.conf lines of
// docs/qemu.md: the indented block after the line naming that file.
func tmpfilesSnippet(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile("../docs/qemu.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(doc), "`/etc/tmpfiles.d/tapbridge.conf`:\n\n")
	if !ok {
		t.Fatal("docs/qemu.md has no /etc/tmpfiles.d/tapbridge.conf snippet")
	}
	var lines []string
	for _, l := range strings.Split(after, "\n") {
		if !strings.HasPrefix(l, "    ") {
			break
		}
		lines = append(lines, strings.TrimSpace(l))
	}
	return strings.Join(lines, "\n") + "\n"
}

// TestBridgeHelperTmpfiles installs the helper with the file capability and
// prepares /run/tapbridge with docs/qemu.md's tmpfiles snippet as written
// (applied by systemd-tmpfiles; only the run directory is moved, with
// TAPBRIDGE_RUN_DIR). After root's 'tapbridge up', a user of group kvm
// attaches a VM through the helper, with a configuration that names the
// uplink, and QEMU's side receives a TAP on br0.
func TestBridgeHelperTmpfiles(t *testing.T) {
	needRoot(t)
	for _, tool := range []string{"systemd-tmpfiles", "setcap", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	kvm, err := exec.Command("getent", "group", "kvm").Output()
	if err != nil {
		t.Skip("needs group kvm (the snippet names it)")
	}
	kvmGID := strings.Split(strings.TrimSpace(string(kvm)), ":")[2]
	lan := testbed.NewLAN(t, testbed.LANOptions{})
	b := newQEMUFiles(t, "tb-tmpfiles-")
	snippet := strings.ReplaceAll(tmpfilesSnippet(t), "/run/tapbridge", b.runDir)
	tmpfiles := filepath.Join(b.dir, "tmpfiles.conf")
	if err := os.WriteFile(tmpfiles, []byte(snippet), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "systemd-tmpfiles", "--create", tmpfiles)
	b.writeACL(t, "allow br0\n")
	b.writeConf(t, `{"bridge": "br0", "uplink": "eth0", "acl": %q}`, b.acl)
	testbed.InstallHelper(t, bin("qemu-ifup"), b.helper, testbed.HelperCaps)

	l := &uplinkLAN{router: lan.Router, hv: lan.HV, runDir: b.runDir}
	l.mustTapbridge(t, "up", "--config", b.conf)

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	qemuEnd, helperEnd := os.NewFile(uintptr(fds[0]), "qemu"), os.NewFile(uintptr(fds[1]), "helper")
	defer qemuEnd.Close()
	cmd := lan.HV.Command("setpriv", "--reuid=65534", "--regid=65534", "--groups="+kvmGID, "--", b.helper, "--use-vnet", "--fd=3", "--br=br0")
	cmd.ExtraFiles = []*os.File{helperEnd}
	cmd.Env = append(os.Environ(), b.env()...)
	out, err := cmd.CombinedOutput()
	helperEnd.Close()
	if err != nil {
		t.Fatalf("the helper as a member of kvm: %v: %s", err, out)
	}
	defer unix.Close(testkit.RecvFD(t, int(qemuEnd.Fd())))
	if out := lan.HV.MustExec(t, "ip", "-o", "link", "show", "master", "br0"); !strings.Contains(out, "tap0") || !strings.Contains(out, "eth0") {
		t.Errorf("br0 lacks the helper's TAP or the uplink: %s", out)
	}
	// Nobody outside kvm gets that far: the locks are the group's.
	fds, err = unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	other, otherHelper := os.NewFile(uintptr(fds[0]), "qemu"), os.NewFile(uintptr(fds[1]), "helper")
	defer other.Close()
	cmd = lan.HV.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", b.helper, "--use-vnet", "--fd=3", "--br=br0")
	cmd.ExtraFiles = []*os.File{otherHelper}
	cmd.Env = append(os.Environ(), b.env()...)
	out, err = cmd.CombinedOutput()
	otherHelper.Close()
	if err == nil || !strings.Contains(string(out), "permission denied") {
		t.Errorf("the helper for a user outside kvm: %v: %s", err, out)
	}
}
