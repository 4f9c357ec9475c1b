package testbed

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// CheckLAN reports why a LAN cannot be built here, or nil: it needs root,
// ip(8), busybox (for ping) and dnsmasq. Tests skip with its reason:
//
//	if err := testbed.CheckLAN(); err != nil {
//		t.Skip(err)
//	}
func CheckLAN() error {
	if err := privileged(); err != nil {
		return err
	}
	for _, p := range []struct{ prog, pkg string }{
		{"ip", "iproute2"},
		{"busybox", "busybox-static"},
		{"dnsmasq", "dnsmasq-base"},
	} {
		if _, err := exec.LookPath(p.prog); err != nil {
			return fmt.Errorf("%s not found: install %s", p.prog, p.pkg)
		}
	}
	return nil
}

// CheckGuest is CheckLAN plus what booting a guest needs: QEMU, setpriv, a
// static busybox and the cloud kernel with its modules.
func CheckGuest() error {
	// Set by test/kernel in the distribution-kernel guest, which itself
	// runs under TCG: a guest inside it would take minutes to boot.
	if os.Getenv("TAPBRIDGE_KERNEL_GUEST") != "" {
		return fmt.Errorf("inside the kernel test guest (TAPBRIDGE_KERNEL_GUEST): a nested TCG guest is far too slow")
	}
	if err := CheckLAN(); err != nil {
		return err
	}
	if _, err := exec.LookPath(QEMU); err != nil {
		return fmt.Errorf("%s not found: install qemu-system-x86", QEMU)
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		return fmt.Errorf("setpriv not found: install util-linux")
	}
	if err := checkStatic(BusyboxPath); err != nil {
		return err
	}
	_, _, err := findKernel()
	return err
}

// vlanProbe caches CheckVLAN's answer.
var vlanProbe struct {
	once sync.Once
	err  error
}

// ErrNoVLAN matches a kernel without 802.1Q VLAN devices (and so without
// bridge VLAN filtering, which depends on them).
var ErrNoVLAN = errors.New("the kernel has no 802.1Q VLAN support (CONFIG_VLAN_8021Q)")

// CheckVLAN reports whether the kernel can create VLAN devices, by creating
// one in a throwaway namespace; the answer is cached. Tests that tag
// frames skip with its reason.
func CheckVLAN() error {
	vlanProbe.once.Do(func() {
		if vlanProbe.err = CheckLAN(); vlanProbe.err != nil {
			return
		}
		n, err := CreateNetNS()
		if err != nil {
			vlanProbe.err = err
			return
		}
		defer n.Delete()
		out, err := n.Exec("ip", "link", "add", "probe", "type", "veth", "peer", "name", "probe-p")
		if err == nil {
			out, err = n.Exec("ip", "link", "add", "link", "probe", "name", "probe.10", "type", "vlan", "id", "10")
		}
		switch {
		case err != nil && strings.Contains(out, "Unknown device type"):
			vlanProbe.err = ErrNoVLAN
		case err != nil:
			vlanProbe.err = fmt.Errorf("probing for VLAN support: %w", err)
		}
	})
	return vlanProbe.err
}
