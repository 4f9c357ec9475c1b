package qemuhook

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNoNetAdmin means the helper was started without CAP_NET_ADMIN: it is
// installed neither setuid root nor with the file capability.
var ErrNoNetAdmin = errors.New("no CAP_NET_ADMIN: install the helper setuid root (chmod u+s) or with 'setcap cap_net_admin+ep' (see docs/qemu.md)")

// DropPrivileges keeps CAP_NET_ADMIN, if the process has it, and drops
// every other capability from the effective, permitted, inheritable,
// ambient and (when allowed) bounding sets, and sets no_new_privs. A
// setuid root process keeps uid 0 for its files (the state directory) but
// no capability beyond CAP_NET_ADMIN: no CAP_DAC_OVERRIDE, no
// CAP_SYS_ADMIN.
//
// Capabilities belong to threads, not processes, so every change is made
// on every thread of the Go runtime (syscall.AllThreadsSyscall). That call
// is not available in a cgo binary; there the change is made on the
// calling thread, which is locked to the calling goroutine for good.
func DropPrivileges() error {
	runtime.LockOSThread() // never unlocked: the fallback path works per thread
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var cur [2]unix.CapUserData
	if err := unix.Capget(&hdr, &cur[0]); err != nil {
		return fmt.Errorf("reading capabilities: %w", err)
	}
	const netAdmin = unix.CAP_NET_ADMIN // < 32: in the first word
	has := cur[0].Permitted&(1<<netAdmin) != 0
	if !has {
		return ErrNoNetAdmin
	}
	// Ambient capabilities (EINVAL before Linux 4.3: there are none then).
	if err := allThreads(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clearing ambient capabilities: %w", err)
	}
	// The bounding set needs CAP_SETPCAP, which a setuid root process has
	// and a file-capability one does not; no_new_privs below makes the
	// bounding set moot for the latter.
	if cur[0].Effective&(1<<unix.CAP_SETPCAP) != 0 {
		last := lastCap()
		for c := 0; c <= last; c++ {
			if c == netAdmin {
				continue
			}
			if err := allThreads(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil {
				if errors.Is(err, unix.EINVAL) {
					break // past the kernel's last capability
				}
				return fmt.Errorf("dropping capability %d from the bounding set: %w", c, err)
			}
		}
	}
	if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		return fmt.Errorf("setting no_new_privs: %w", err)
	}
	keep := [2]unix.CapUserData{{Effective: 1 << netAdmin, Permitted: 1 << netAdmin}}
	// The pointers are converted in the call expression itself (unsafe.Pointer
	// rule 4): AllThreadsSyscall is //go:uintptrescapes, so hdr and keep
	// move to the heap and stay alive for the call. A wrapper taking
	// uintptrs would let a stack move leave them dangling.
	_, _, errno := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&keep[0])), 0)
	if errno == syscall.ENOTSUP { // cgo binary: this thread only
		if err := unix.Capset(&hdr, &keep[0]); err != nil {
			return fmt.Errorf("dropping capabilities: %w", err)
		}
		return nil
	}
	if errno != 0 {
		return fmt.Errorf("dropping capabilities: %w", errno)
	}
	return nil
}

// allThreads runs a raw system call on every thread, or on the calling
// thread only in a cgo binary. Its arguments are plain integers: a pointer
// must never pass through it (unsafe.Pointer rule 4).
func allThreads(trap, a1, a2, a3 uintptr) error {
	_, _, errno := syscall.AllThreadsSyscall(trap, a1, a2, a3)
	if errno == syscall.ENOTSUP {
		_, _, errno = syscall.RawSyscall(trap, a1, a2, a3)
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// lastCap is the highest capability number the kernel knows.
func lastCap() int {
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			return n
		}
	}
	return 63
}

// Elevated reports whether the process runs with privileges its real user
// does not have: setuid or setgid, or a non-root user holding effective
// capabilities (a file capability).
func Elevated() bool {
	if unix.Getuid() != unix.Geteuid() || unix.Getgid() != unix.Getegid() {
		return true
	}
	if unix.Getuid() == 0 {
		return false
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var cur [2]unix.CapUserData
	if err := unix.Capget(&hdr, &cur[0]); err != nil {
		return true // cannot tell: assume the worst
	}
	return cur[0].Effective|cur[1].Effective != 0
}
