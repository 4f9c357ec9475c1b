package e2e

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// make install / uninstall into a DESTDIR, as an operator runs them:
// install, edit a configuration, upgrade without HELPER (the helper keeps
// its mode), switch the helper's mode, uninstall.

// repoDir is the repository the tests run from.
const repoDir = ".."

// makeIn runs make TARGET with vars in the repository.
func makeIn(t *testing.T, target string, vars ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("make", append([]string{"-s", "-C", repoDir, target}, vars...)...)
	cmd.Env = append(os.Environ(), "MAKEFLAGS=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// helperState is what an operator sees of the installed helper: ls -l's
// mode and group, and getcap.
func helperState(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	grp := "gid=" + strconv.FormatUint(uint64(fi.Sys().(*syscall.Stat_t).Gid), 10)
	caps := ""
	if out, err := exec.Command("getcap", path).Output(); err == nil {
		caps = strings.TrimSpace(strings.TrimPrefix(string(out), path))
	}
	return strings.TrimSpace(fi.Mode().String() + " " + grp + " " + caps)
}

// filesUnder lists the files and symlinks under root, relative to it.
func filesUnder(t *testing.T, root string) []string {
	t.Helper()
	var got []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			rel, _ := filepath.Rel(root, p)
			got = append(got, "/"+rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	return got
}

func TestInstall(t *testing.T) {
	t.Parallel()
	needRoot(t) // installs a setuid root:kvm helper and a file capability (into a temporary DESTDIR)
	for _, tool := range []string{"make", "getcap", "setcap"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	kvmGroup, err := user.LookupGroup("kvm")
	if err != nil {
		t.Skip(err)
	}
	kvm := kvmGroup.Gid
	tmp := t.TempDir()
	dest := filepath.Join(tmp, "root")
	vars := []string{"DESTDIR=" + dest, "PREFIX=/opt/tb", "BIN_DIR=" + filepath.Join(tmp, "bin")}
	helper := filepath.Join(dest, "opt/tb/libexec/tapbridge/tapbridge-bridge-helper")
	conf := filepath.Join(dest, "etc/tapbridge/tapbridge.conf")

	// A first install, the helper setuid root:kvm as docs/qemu.md says.
	if out, err := makeIn(t, "install", append(vars, "HELPER=setuid")...); err != nil {
		t.Fatalf("make install HELPER=setuid: %v\n%s", err, out)
	}
	wantFiles := []string{
		"/etc/tapbridge/bridge.conf",
		"/etc/tapbridge/tapbridge.conf",
		"/opt/cni/bin/tapbridge",
		"/opt/tb/bin/tapbridge",
		"/opt/tb/lib/systemd/system/tapbridge-gc.service",
		"/opt/tb/lib/systemd/system/tapbridge-gc.timer",
		"/opt/tb/lib/systemd/system/tapbridge.service",
		"/opt/tb/libexec/tapbridge/qemu-ifdown",
		"/opt/tb/libexec/tapbridge/qemu-ifup",
		"/opt/tb/libexec/tapbridge/tapbridge-bridge-helper",
		"/opt/tb/share/bash-completion/completions/tapbridge",
		"/opt/tb/share/fish/vendor_completions.d/tapbridge.fish",
		"/opt/tb/share/man/man8/qemu-ifdown.8",
		"/opt/tb/share/man/man8/qemu-ifup.8",
		"/opt/tb/share/man/man8/tapbridge-bridge-helper.8",
		"/opt/tb/share/man/man8/tapbridge.8",
		"/opt/tb/share/zsh/site-functions/_tapbridge",
	}
	if diff := cmp.Diff(wantFiles, filesUnder(t, dest)); diff != "" {
		t.Errorf("installed files (-want +got):\n%s", diff)
	}
	setuid := "urwxr-x--- gid=" + kvm
	if got := helperState(t, helper); got != setuid {
		t.Errorf("helper after HELPER=setuid: %q, want %q", got, setuid)
	}
	unit, err := os.ReadFile(filepath.Join(dest, "opt/tb/lib/systemd/system/tapbridge.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\nExecStart=/opt/tb/bin/tapbridge up --config /etc/tapbridge/tapbridge.conf\n",
		"\nExecStop=/opt/tb/bin/tapbridge down --config /etc/tapbridge/tapbridge.conf\n",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("tapbridge.service lacks %q:\n%s", want, unit)
		}
	}
	page, err := os.ReadFile(filepath.Join(dest, "opt/tb/share/man/man8/qemu-ifup.8"))
	if err != nil || !strings.Contains(string(page), `/opt/tb/libexec/tapbridge/qemu\-ifup`) {
		t.Errorf("the qemu-ifup man page does not name the installed hook (%v):\n%s", err, page)
	}
	out, err := exec.Command(filepath.Join(dest, "opt/tb/bin/tapbridge"), "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "tapbridge ") || strings.Contains(string(out), "dev") {
		t.Errorf("installed tapbridge version: %v %q", err, out)
	}

	// The operator edits the configuration; an upgrade without HELPER
	// keeps both the edit and the helper's mode.
	edited := []byte(`{"cniVersion": "1.1.0", "name": "lan", "type": "tapbridge", "bridge": "br0", "uplink": "enp3s0"}` + "\n")
	if err := os.WriteFile(conf, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		helper  string // HELPER=, "" for none given
		want    string
		wantErr string
	}{
		{"", setuid, ""},
		{"caps", "-rwxr-xr-x gid=0 cap_net_admin=ep", ""},
		{"", "-rwxr-xr-x gid=0 cap_net_admin=ep", ""},
		{"bogus", "-rwxr-xr-x gid=0 cap_net_admin=ep", "install.sh: HELPER=bogus: want setuid, caps or none"},
		{"none", "-rwxr-xr-x gid=0", ""},
		{"", "-rwxr-xr-x gid=0", ""},
	}
	for _, s := range steps {
		v := vars
		if s.helper != "" {
			v = append(v, "HELPER="+s.helper)
		}
		out, err := makeIn(t, "install", v...)
		switch {
		case s.wantErr == "" && err != nil:
			t.Fatalf("make install HELPER=%s: %v\n%s", s.helper, err, out)
		case s.wantErr != "" && (err == nil || !strings.Contains(out, s.wantErr)):
			t.Errorf("make install HELPER=%s: %v, want an error %q:\n%s", s.helper, err, s.wantErr, out)
		}
		if got := helperState(t, helper); got != s.want {
			t.Errorf("helper after make install HELPER=%s: %q, want %q", s.helper, got, s.want)
		}
		if got, _ := os.ReadFile(conf); string(got) != string(edited) {
			t.Errorf("make install HELPER=%s overwrote the edited configuration:\n%s", s.helper, got)
		}
	}

	// uninstall removes everything but the edited configuration.
	if out, err := makeIn(t, "uninstall", vars...); err != nil {
		t.Fatalf("make uninstall: %v\n%s", err, out)
	}
	if diff := cmp.Diff([]string{"/etc/tapbridge/tapbridge.conf"}, filesUnder(t, dest)); diff != "" {
		t.Errorf("left after make uninstall (-want +got):\n%s", diff)
	}
}
