package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// DefaultDir is where state lives unless TAPBRIDGE_RUN_DIR says otherwise.
// /run is a tmpfs: state does not survive a reboot, and neither do the
// bridges and TAPs it describes.
const DefaultDir = "/run/tapbridge"

// Dir returns the state directory.
func Dir() string {
	if d := os.Getenv("TAPBRIDGE_RUN_DIR"); d != "" {
		return d
	}
	return DefaultDir
}

// Path returns the path of a state file; parts are joined under Dir.
func Path(parts ...string) string {
	return filepath.Join(append([]string{Dir()}, parts...)...)
}

// Lock is a held exclusive file lock.
type Lock struct{ f *os.File }

// LockBridge takes the exclusive lock of bridge, waiting for other holders.
// Every change to a bridge, its uplink or its ports happens under it, so
// concurrent front ends (64 parallel CNI ADDs, qemu-ifup, tapbridge up)
// serialize instead of racing.
func LockBridge(bridge string) (*Lock, error) {
	return lockFile(Path("lock", bridge+".lock"))
}

// LockUplink takes the exclusive lock of a physical uplink, taken after
// its bridge's lock: two bridges configured with the same uplink cannot
// both move it.
func LockUplink(uplink string) (*Lock, error) {
	return lockFile(Path("lock", "uplink", uplink+".lock"))
}

// LockPolicy takes the exclusive lock of the namespace's port-policy table,
// which all bridges share: applying or removing one port's policy, and
// pruning the policies of vanished ports, never interleave.
func LockPolicy() (*Lock, error) {
	return lockFile(Path("lock", "policy.lock"))
}

func lockFile(path string) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating lock directory: %w", err)
	}
	// 0600: flock works on any descriptor, even a read-only one, so a lock
	// file others can read is one any local user can hold to block attaches.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock %q: %w", path, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %q: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// Unlock releases the lock. It is safe to call on a nil Lock.
func (l *Lock) Unlock() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Close() // closing the only descriptor releases the flock
	l.f = nil
}

// ErrNotExist is returned by ReadJSON when there is no record.
var ErrNotExist = fs.ErrNotExist

// WriteJSON stores v at path atomically: a reader (or a re-run after a
// crash) sees either the old record or the new one, never a torn file.
func WriteJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %q: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %q: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %q: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("syncing %q: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %q: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %q: %w", path, err)
	}
	return nil
}

// ReadJSON loads the record at path into v. A missing record is reported
// as an error that matches ErrNotExist.
func ReadJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("reading %q: corrupt record: %w", path, err)
	}
	return nil
}

// Remove deletes the record at path; a missing record is not an error.
func Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// LockRouted takes the exclusive lock of the namespace's routed ports:
// their records, the sysctls they share and their nftables tables.
func LockRouted() (*Lock, error) {
	return lockFile(Path("lock", "routed.lock"))
}

// NetNSPath returns the path of a state file that describes the current
// network namespace (of the calling thread): parts are joined under
// Dir/kind/<the namespace's inode>, so that records made in one namespace
// never drive changes in another that shares the state directory.
func NetNSPath(kind string, parts ...string) string {
	id := "unknown"
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), &st); err == nil {
		id = fmt.Sprint(st.Ino)
	}
	return Path(append([]string{kind, id}, parts...)...)
}
