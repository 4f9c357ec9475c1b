package qemuhook

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Caller is who runs the helper: its real user and group, not the setuid
// root it may run as.
type Caller struct {
	UID, GID int
}

// CurrentCaller returns the real uid and gid of this process.
func CurrentCaller() Caller { return Caller{UID: unix.Getuid(), GID: unix.Getgid()} }

// Privileged reports whether the caller is root, who may point the helper
// anywhere.
func (c Caller) Privileged() bool { return c.UID == 0 }

// rootOwned resolves path and checks that it and every directory above it
// are owned by root and writable by nobody else: then the invoking user
// can neither change the file nor swap it for another. A world-writable
// directory with the sticky bit (/tmp) is accepted above the file, since
// others cannot replace root's entries in it. It returns the resolved
// path.
func rootOwned(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", err
	}
	for p, leaf := resolved, true; ; p, leaf = filepath.Dir(p), false {
		fi, err := os.Lstat(p)
		if err != nil {
			return "", err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return "", fmt.Errorf("%s: cannot read its owner", p)
		}
		if st.Uid != 0 {
			return "", fmt.Errorf("%s is owned by uid %d, not by root", p, st.Uid)
		}
		if fi.Mode().Perm()&0o022 != 0 && (leaf || fi.Mode()&fs.ModeSticky == 0) {
			return "", fmt.Errorf("%s is writable by group or others", p)
		}
		if p == "/" {
			return resolved, nil
		}
	}
}

// callerMayRead reports whether the real user and group of this process
// may read path: access(2) checks with the real ids, as if the setuid bit
// were not there.
func callerMayRead(path string) error {
	if err := unix.Access(path, unix.R_OK); err != nil {
		return &fs.PathError{Op: "read", Path: path, Err: err}
	}
	return nil
}

// trustedConf returns the configuration file path the helper may read on
// behalf of caller: TAPBRIDGE_CONF as given for root; for anyone else only
// a file owned by root, not writable by others (nor any directory above
// it), not readable by everyone, that the caller may read (through its
// group): the tenant's own. The compiled-in default is always trusted.
func trustedConf(path string, caller Caller) (string, error) {
	if caller.Privileged() {
		return path, nil
	}
	resolved, err := rootOwned(path)
	if err != nil {
		return "", fmt.Errorf("TAPBRIDGE_CONF %q refused for uid %d: %w (the helper reads only root's files for other users)", path, caller.UID, err)
	}
	if err := callerMayRead(resolved); err != nil {
		return "", fmt.Errorf("TAPBRIDGE_CONF %q refused for uid %d: %w", path, caller.UID, err)
	}
	// A configuration every user can read is nobody's in particular: it
	// must not let one tenant pick another's port policy (another's MAC for
	// macSpoofCheck, say). A tenant's own file is root:GROUP 0640.
	if fi, err := os.Stat(resolved); err != nil || fi.Mode().Perm()&0o004 != 0 {
		return "", fmt.Errorf("TAPBRIDGE_CONF %q refused for uid %d: readable by every user; a per-tenant configuration must be root-owned and readable by the tenant's group only (e.g. root:GROUP 0640)", path, caller.UID)
	}
	return resolved, nil
}

// trustedRunDir returns the state directory the helper may use on behalf
// of caller: TAPBRIDGE_RUN_DIR as given for root; for anyone else only a
// tapbridge state directory that root made: owned by root, not writable by
// others (nor any directory above it), already holding its "lock"
// directory. So a user can neither redirect the bridge lock and the uplink
// journal nor make the helper create files in any other root directory.
func trustedRunDir(dir string, caller Caller) (string, error) {
	if caller.Privileged() {
		return dir, nil
	}
	resolved, err := rootOwned(dir)
	if err == nil {
		_, err = rootOwned(filepath.Join(resolved, "lock"))
	}
	if err == nil {
		if fi, _ := os.Stat(filepath.Join(resolved, "lock")); !fi.IsDir() {
			err = errors.New("its lock entry is not a directory")
		}
	}
	if err != nil {
		return "", fmt.Errorf("TAPBRIDGE_RUN_DIR %q refused for uid %d: %w (it must be a tapbridge state directory made by root)", dir, caller.UID, err)
	}
	return resolved, nil
}

// aclReader returns how the helper reads ACL files for caller. Root reads
// anything. Anyone else gets qemu-bridge-helper's semantics: a file is read
// only if the caller may read it (an include the caller cannot read is
// skipped, which is how per-user include files work), and only if it is
// root's and not writable by others (a file the caller could edit grants
// nothing).
func aclReader(caller Caller) func(string) ([]byte, error) {
	if caller.Privileged() {
		return osReadFile
	}
	return func(path string) ([]byte, error) {
		resolved, err := rootOwned(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
			return nil, fmt.Errorf("ACL file refused: %w", err)
		}
		if err := callerMayRead(resolved); err != nil {
			return nil, err
		}
		return os.ReadFile(resolved)
	}
}
