package state

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultLockTimeout bounds every wait for a lock unless
// TAPBRIDGE_LOCK_TIMEOUT or SetLockTimeout says otherwise. An attach holds
// the bridge lock for milliseconds and `up` for at most its gateway probe,
// so a minute of waiting means a holder that is stuck, not busy.
const DefaultLockTimeout = 60 * time.Second

// EnvLockTimeout overrides DefaultLockTimeout: a Go duration ("30s") or a
// number of seconds.
const EnvLockTimeout = "TAPBRIDGE_LOCK_TIMEOUT"

// ErrLockTimeout matches a lock wait that ran out of time.
var ErrLockTimeout = errors.New("lock wait timed out")

var (
	timeoutMu  sync.Mutex
	timeoutSet time.Duration // from SetLockTimeout; 0: not set
)

// SetLockTimeout sets how long the locks of this process wait (a command
// line flag); d <= 0 restores the default.
func SetLockTimeout(d time.Duration) {
	timeoutMu.Lock()
	defer timeoutMu.Unlock()
	timeoutSet = d
}

// ParseLockTimeout parses a lock timeout as EnvLockTimeout takes it.
func ParseLockTimeout(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		n, err2 := strconv.ParseFloat(s, 64)
		if err2 != nil {
			return 0, fmt.Errorf("lock timeout %q: want a duration such as 30s", s)
		}
		d = time.Duration(n * float64(time.Second))
	}
	if d <= 0 {
		return 0, fmt.Errorf("lock timeout %q: must be positive", s)
	}
	return d, nil
}

// LockTimeout returns how long a lock wait may last.
func LockTimeout() (time.Duration, error) {
	timeoutMu.Lock()
	d := timeoutSet
	timeoutMu.Unlock()
	if d > 0 {
		return d, nil
	}
	if s := os.Getenv(EnvLockTimeout); s != "" {
		d, err := ParseLockTimeout(s)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", EnvLockTimeout, err)
		}
		return d, nil
	}
	return DefaultLockTimeout, nil
}

// Lock is a held exclusive file lock.
type Lock struct{ f *os.File }

// Every kind of lock has its own directory, so no bridge name can be
// another kind's lock (a bridge called "policy" once waited on itself).
const (
	kindBridge = "bridge"
	kindUplink = "uplink"
)

// LockBridge takes the exclusive lock of bridge, waiting for other holders
// (at most LockTimeout). Every change to a bridge, its uplink or its ports
// happens under it, so concurrent front ends (64 parallel CNI ADDs,
// qemu-ifup, tapbridge up) serialize instead of racing.
func LockBridge(bridge string) (*Lock, error) {
	return lockFile(fmt.Sprintf("bridge %q", bridge), Path("lock", kindBridge, bridge+".lock"))
}

// LockUplink takes the exclusive lock of a physical uplink, taken after
// its bridge's lock: two bridges configured with the same uplink cannot
// both move it.
func LockUplink(uplink string) (*Lock, error) {
	return lockFile(fmt.Sprintf("uplink %q", uplink), Path("lock", kindUplink, uplink+".lock"))
}

// LockPolicy takes the exclusive lock of the namespace's port-policy table,
// which all bridges share: applying or removing one port's policy, and
// pruning the policies of vanished ports, never interleave.
func LockPolicy() (*Lock, error) {
	return lockFile("the port policy", Path("lock", "policy.lock"))
}

// LockPath is the lock file of a bridge ("bridge"), an uplink ("uplink")
// or the policy ("policy", name ignored); for tests and documentation.
func LockPath(kind, name string) string {
	if kind == "policy" {
		return Path("lock", "policy.lock")
	}
	return Path("lock", kind, name+".lock")
}

func lockFile(what, path string) (*Lock, error) {
	timeout, err := LockTimeout()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating lock directory: %w", err)
	}
	// 0600: flock works on any descriptor, even a read-only one, so a lock
	// file others can read is one any local user can hold to block attaches.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock %q: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
		return held(f), nil
	}
	// Contended: wait in a goroutine of its own, which owns the descriptor
	// from here on. If the wait times out, the goroutine lets the lock go
	// as soon as it gets it.
	type result struct{ err error }
	done := make(chan result, 1)
	var mu sync.Mutex
	abandoned := false
	go func() {
		var err error
		for {
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if abandoned {
			f.Close()
			return
		}
		done <- result{err}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %q: %w", path, r.err)
		}
		return held(f), nil
	case <-timer.C:
	}
	mu.Lock()
	select {
	case r := <-done: // got it just now
		mu.Unlock()
		if r.err == nil {
			return held(f), nil
		}
		f.Close()
		return nil, fmt.Errorf("locking %q: %w", path, r.err)
	default:
		abandoned = true
		mu.Unlock()
	}
	return nil, fmt.Errorf("waited %v for the lock of %s (%s), held by %s: %w (raise it with --lock-timeout or %s)",
		timeout, what, path, Holder(path), ErrLockTimeout, EnvLockTimeout)
}

// held records this process as the holder of the lock f and returns it.
func held(f *os.File) *Lock {
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}
}

// Holder names the process holding the lock file path: "pid N (comm)", from
// /proc/locks, else from the PID the holder wrote into the file, else
// "an unknown process".
func Holder(path string) string {
	pid := 0
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err == nil {
		pid = lockHolder(st.Ino, unix.Major(st.Dev), unix.Minor(st.Dev))
	}
	if pid == 0 {
		if b, err := os.ReadFile(path); err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
	}
	if pid <= 0 {
		return "an unknown process"
	}
	s := "pid " + strconv.Itoa(pid)
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil {
		s += " (" + strings.TrimSpace(string(comm)) + ")"
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// The state follows the parenthesised command name.
		if i := strings.LastIndexByte(string(st), ')'); i > 0 && i+2 < len(st) && st[i+2] == 'T' {
			s += ", stopped"
		}
	}
	return s
}

// lockHolder returns the PID /proc/locks gives for the FLOCK on the inode,
// or 0. Lines read: "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF".
func lockHolder(ino uint64, major, minor uint32) int {
	f, err := os.Open("/proc/locks")
	if err != nil {
		return 0
	}
	defer f.Close()
	want := fmt.Sprintf("%02x:%02x:%d", major, minor, ino)
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" || strings.HasPrefix(fields[1], "->") {
			continue
		}
		if fields[5] == want {
			pid, _ := strconv.Atoi(fields[4])
			return pid
		}
	}
	return 0
}

// Unlock releases the lock. It is safe to call on a nil Lock.
func (l *Lock) Unlock() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Close() // closing the only descriptor releases the flock
	l.f = nil
}
