package state

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Host identifies the live host a record was written on: the network
// namespace of the writing thread and the boot. A record whose Host is not
// the live one describes objects that are gone (a deleted namespace, a
// previous boot) or belong to someone else (another namespace sharing the
// state directory, as /run is shared by every namespace of a host), and is
// never acted on.
type Host struct {
	// NetNS is "DEV:INODE" of the nsfs file of the network namespace.
	NetNS string `json:"netns"`
	// NetNSCookie is the namespace's cookie (SO_NETNS_COOKIE, Linux 5.14),
	// which, unlike the inode number, the kernel never gives another
	// namespace; 0 where the kernel has none (not compared then).
	NetNSCookie uint64 `json:"netnsCookie,omitempty"`
	// BootID is /proc/sys/kernel/random/boot_id.
	BootID string `json:"bootID"`
}

// CurrentHost returns the Host of the calling thread. The caller must be
// locked to its OS thread when it works in another namespace than the
// process's (as every tapbridge entry point is).
func CurrentHost() (Host, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return Host{}, fmt.Errorf("identifying the network namespace: %w", err)
	}
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return Host{}, fmt.Errorf("reading the boot id: %w", err)
	}
	return Host{
		NetNS:       fmt.Sprintf("%d:%d", st.Dev, st.Ino),
		NetNSCookie: NetNSCookie(),
		BootID:      strings.TrimSpace(string(boot)),
	}, nil
}

// soNetnsCookie is SO_NETNS_COOKIE (Linux 5.14), which golang.org/x/sys
// does not name.
const soNetnsCookie = 71

// NetNSCookie returns the cookie of the calling thread's network namespace,
// or 0 when the kernel is older than 5.14 or it cannot be read.
func NetNSCookie() uint64 {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, soNetnsCookie)
	if err != nil {
		return 0
	}
	return c
}

// Differs says how h is not the live host, or "" when it is.
func (h Host) Differs(live Host) string {
	switch {
	case h.BootID == "" || h.NetNS == "":
		return "it does not say which boot and network namespace it describes (written by an older tapbridge)"
	case h.BootID != live.BootID:
		return fmt.Sprintf("it was written before a reboot (boot %s, now %s)", h.BootID, live.BootID)
	case h.NetNS != live.NetNS:
		return fmt.Sprintf("it was written in another network namespace (nsfs %s, this one is %s)", h.NetNS, live.NetNS)
	case h.NetNSCookie != 0 && live.NetNSCookie != 0 && h.NetNSCookie != live.NetNSCookie:
		return fmt.Sprintf("it was written in another network namespace, since deleted, whose inode number the kernel gave this one (nsfs %s, cookie %d, this one's is %d)", h.NetNS, h.NetNSCookie, live.NetNSCookie)
	}
	return ""
}

// SetAside renames the record at path out of the way, keeping it for
// inspection, and returns its new name: PATH.stale-TIME.
func SetAside(path string) (string, error) {
	to := path + ".stale-" + time.Now().UTC().Format("20060102T150405.000000000Z")
	if err := os.Rename(path, to); err != nil {
		return "", fmt.Errorf("setting %q aside: %w", path, err)
	}
	return to, nil
}

// NetNSAlive reports whether the network namespace netns ("DEV:INODE", as
// in Host) with the given cookie (0: unknown) still exists: a process is in
// it, or it is bind-mounted under /run/netns or /var/run/netns. A
// namespace with that inode whose cookie differs is another one, which the
// kernel gave the dead one's inode number; where the cookie cannot be read
// (before Linux 5.14, or without the right to enter the namespace) the
// inode alone decides. It errs towards "alive" only from what it sees; a
// namespace held by a descriptor alone is not seen.
func NetNSAlive(netns string, cookie uint64) bool {
	// alive: -1 when p is not a namespace with that inode (or is gone),
	// else whether it is the one. Two live namespaces never share an
	// inode number, so the first match decides.
	alive := func(p string) int {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1
		}
		defer unix.Close(fd)
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil || fmt.Sprintf("%d:%d", st.Dev, st.Ino) != netns {
			return -1
		}
		if c := NetNSCookieOf(fd); cookie != 0 && c != 0 && c != cookie {
			return 0
		}
		return 1
	}
	for _, dir := range []string{"/run/netns", "/var/run/netns"} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if a := alive(dir + "/" + e.Name()); a >= 0 {
				return a == 1
			}
		}
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if p.Name()[0] < '0' || p.Name()[0] > '9' {
			continue
		}
		if a := alive("/proc/" + p.Name() + "/ns/net"); a >= 0 {
			return a == 1
		}
	}
	return false
}

// NetNSCookieOf returns the cookie of the network namespace fd refers to
// (an nsfs file), or 0 when it cannot be read. It enters the namespace on
// a locked thread of its own, as pkg/ns does, and goes back before
// unlocking it; a thread that cannot go back stays locked and so ends with
// its goroutine (the runtime never reuses it).
func NetNSCookieOf(fd int) uint64 {
	ch := make(chan uint64, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- 0
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- 0
			return
		}
		c := NetNSCookie()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		ch <- c
	}()
	return <-ch
}
