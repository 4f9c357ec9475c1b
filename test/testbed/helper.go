package testbed

import (
	"os"
	"os/exec"
)

// HelperPrivilege is how the bridge helper gets CAP_NET_ADMIN, as make
// install's HELPER says.
type HelperPrivilege int

const (
	// HelperSetuid: owned by root, mode 4755.
	HelperSetuid HelperPrivilege = iota
	// HelperCaps: the file capability cap_net_admin+ep (setcap, from
	// libcap2-bin).
	HelperCaps
)

// InstallHelper installs tapbridge's bridge helper at path, as a copy of
// src (bin/qemu-ifup: the name it runs under selects the role, and a
// symlink can carry neither the setuid bit nor a file capability), with
// privilege priv.
func InstallHelper(t TB, src, path string, priv HelperPrivilege) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatalf("%v", err)
	}
	switch priv {
	case HelperSetuid:
		if err := os.Chmod(path, 0o755|os.ModeSetuid); err != nil {
			t.Fatalf("%v", err)
		}
	case HelperCaps:
		if out, err := exec.Command("setcap", "cap_net_admin+ep", path).CombinedOutput(); err != nil {
			t.Fatalf("setcap: %v: %s", err, out)
		}
	}
}
