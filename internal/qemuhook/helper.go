package qemuhook

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/bridge"
	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/failpoint"
	"github.com/tapbridge/tapbridge/internal/ifname"
	"github.com/tapbridge/tapbridge/internal/tap"
	"github.com/tapbridge/tapbridge/internal/vmport"
)

// envRunDir moves tapbridge's state directory (package state reads it).
const envRunDir = "TAPBRIDGE_RUN_DIR"

// HelperArgs are the arguments QEMU gives a bridge helper:
// [--use-vnet] --br=BRIDGE --fd=N.
type HelperArgs struct {
	VnetHdr bool
	Bridge  string
	FD      int // a connected unix socket QEMU reads the TAP descriptor from
}

// ParseHelperArgs parses the helper's arguments exactly as
// qemu-bridge-helper does: no other flag, no other spelling.
func ParseHelperArgs(args []string) (HelperArgs, error) {
	h := HelperArgs{FD: -1}
	seenBr := false
	for _, a := range args {
		switch {
		case a == "--help" || a == "-h":
			return h, errHelp
		case a == "--use-vnet":
			h.VnetHdr = true
		case strings.HasPrefix(a, "--br="):
			h.Bridge, seenBr = strings.TrimPrefix(a, "--br="), true
		case strings.HasPrefix(a, "--fd="):
			n, err := strconv.Atoi(strings.TrimPrefix(a, "--fd="))
			if err != nil || n < 0 {
				return h, fmt.Errorf("%w: --fd wants a descriptor number, got %q", ErrUsage, strings.TrimPrefix(a, "--fd="))
			}
			h.FD = n
		default:
			return h, fmt.Errorf("%w: unknown argument %q; want [--use-vnet] --br=BRIDGE --fd=N", ErrUsage, a)
		}
	}
	if !seenBr || h.FD < 0 {
		return h, fmt.Errorf("%w: want [--use-vnet] --br=BRIDGE --fd=N (QEMU passes them for -netdev bridge,helper=...)", ErrUsage)
	}
	return h, nil
}

// Helper is the qemu-bridge-helper compatible mode: it checks the ACL for
// the invoking user, creates a non-persistent TAP (with vnet_hdr when
// asked), attaches it to the bridge through vmport.Attach, and passes its
// descriptor to QEMU over the socket --fd names. The TAP disappears with
// the last descriptor, that is when QEMU exits. The caller has dropped
// privileges already (DropPrivileges).
func Helper(args []string, getenv func(string) string) error {
	return helper(args, getenv, CurrentCaller())
}

func helper(args []string, getenv func(string) string, caller Caller) error {
	h, err := ParseHelperArgs(args)
	if err != nil {
		return err
	}
	fail := func(tapName string, err error) error {
		return &Error{Op: "attach", TAP: tapName, Bridge: h.Bridge, Err: err}
	}
	if err := ifname.Validate("bridge", h.Bridge); err != nil {
		return fail("", err)
	}
	if err := checkSocket(h.FD); err != nil {
		return fail("", err)
	}
	env, err := helperEnv(getenv, caller)
	if err != nil {
		return fail("", err)
	}
	l, _, err := loadConf(env, caller.Privileged())
	if err != nil {
		return fail("", err)
	}
	l.rebridge(h.Bridge)
	c := l.conf
	if err := c.Validate(); err != nil {
		return fail("", err)
	}
	if c.Routed {
		return fail("", fmt.Errorf("config: \"routed\": the bridge helper (-netdev bridge) only bridges; attach routed VMs with qemu-ifup or tapbridge tap add --routed"))
	}
	if err := checkACL(c, true, aclReader(caller)); err != nil {
		return fail("", fmt.Errorf("%w (uid %d)", err, caller.UID))
	}
	// An unprivileged user may make the helper create the configured
	// bridge (with its uplink), and only that one.
	if !caller.Privileged() && h.Bridge != l.fileBridge {
		if _, err := bridge.Get(h.Bridge); err != nil {
			return fail("", fmt.Errorf("%w; the helper creates only the configured bridge %q for uid %d", err, l.fileBridge, caller.UID))
		}
	}
	port, err := vmport.PortOf(c, "")
	if err != nil {
		return fail("", err)
	}
	// From here on the helper takes locks every attach and `down` wait for.
	if err := unstoppable(caller); err != nil {
		return fail("", err)
	}
	f, name, err := tap.Open("tap%d", tap.Options{Owner: tap.NoID, Group: tap.NoID, VnetHdr: h.VnetHdr})
	if err != nil {
		return fail("", err)
	}
	defer f.Close() // QEMU holds its own copy once it is sent
	port.Name = name
	if err := vmport.Attach(c, port); err != nil {
		if errors.Is(err, fs.ErrPermission) && os.Geteuid() != 0 {
			// Installed with the file capability: the helper runs as the
			// user, who must be able to take the bridge lock.
			err = fmt.Errorf("%w (the helper runs as uid %d with the file capability: make the bridge, uplink and policy locks writable by QEMU's users and the uplink journal readable with docs/qemu.md's tmpfiles snippet, and run 'tapbridge up' as root first; or install it setuid root)", err, os.Geteuid())
		}
		return fail(name, err)
	}
	if err := sendFD(h.FD, f); err != nil {
		_ = vmport.Detach(c, name)
		return fail(name, err)
	}
	// QEMU runs no down script for -netdev bridge, and it waits for the
	// helper to exit: no Prune (a dump of every link and of the policy
	// table, 70 ms at 1000 ports) here. The kernel hands out the lowest
	// free tap%d, so the front and policy a vanished QEMU left are taken
	// over by the next helper that gets its name (front.Create rewires
	// the front, vmport.Attach replaces the policy); `tapbridge gc` (a
	// timer) removes the others.
	logDone("attach", c.Bridge, name, port.GuestMAC)
	return nil
}

// helperEnv is the environment the helper honours for caller: all of it
// for root; for anyone else TAPBRIDGE_CONF and TAPBRIDGE_RUN_DIR only when
// they name root's files, and none of the per-VM overrides, which would
// let a tenant pick its own port policy.
func helperEnv(getenv func(string) string, caller Caller) (func(string) string, error) {
	if caller.Privileged() {
		return getenv, nil
	}
	vals := map[string]string{}
	if p := getenv(config.EnvConf); p != "" {
		resolved, err := trustedConf(p, caller)
		if err != nil {
			return nil, err
		}
		vals[config.EnvConf] = resolved
	}
	if d := getenv(envRunDir); d != "" {
		resolved, err := trustedRunDir(d, caller)
		if err != nil {
			return nil, err
		}
		// package state reads it from the process environment
		if err := os.Setenv(envRunDir, resolved); err != nil {
			return nil, err
		}
	}
	// Only tests set these; a user must not crash the helper mid-migration
	// or have it write a file of their choosing as root.
	failpoint.Disable()
	return func(k string) string { return vals[k] }, nil
}

// checkSocket makes sure fd is a socket before anything is created.
func checkSocket(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("--fd=%d: %w (QEMU passes the socket it reads the TAP from)", fd, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fmt.Errorf("--fd=%d is not a socket (QEMU passes the socket it reads the TAP from)", fd)
	}
	return nil
}

// sendFD passes f to the peer of the unix socket sock with SCM_RIGHTS and a
// one-byte payload, as qemu-bridge-helper does and QEMU's recv_fd expects.
func sendFD(sock int, f *os.File) error {
	rights := unix.UnixRights(int(f.Fd()))
	for {
		err := unix.Sendmsg(sock, []byte{0}, rights, nil, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("passing the TAP descriptor to QEMU over --fd=%d: %w", sock, err)
		}
		return nil
	}
}

// unstoppable makes the helper one its caller cannot stop while it holds
// the bridge and policy locks. The kernel lets a user signal a process
// whose real or saved uid is the user's: a setuid helper keeps the
// caller's real uid, so the caller could SIGSTOP it mid-attach and block
// every attach and `down` on the host. Setuid root, it takes uid 0 as its
// real and saved uid too (allowed without CAP_SETUID: 0 is its effective
// uid), for good: it exits once the TAP is handed over. The checks made
// with the caller's real ids (access(2) on the configuration) are done by
// then. Terminal job control (Ctrl-Z) is ignored in every mode.
//
// With the file capability the helper runs as the caller, who can always
// stop it: there the bound on every lock wait (state.LockTimeout), whose
// error names the stopped holder, is what keeps others from hanging.
func unstoppable(caller Caller) error {
	signal.Ignore(syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU)
	if caller.UID == 0 || os.Geteuid() != 0 {
		return nil
	}
	// syscall.Setresuid applies to every thread of the process.
	if err := syscall.Setresuid(0, 0, 0); err != nil {
		return fmt.Errorf("taking uid 0 as real uid (so that uid %d cannot stop the helper while it holds the bridge lock): %w", caller.UID, err)
	}
	return nil
}
