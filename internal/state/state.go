package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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

// tmpPrefix starts the name of a record being written: "." + base + tmpPrefix.
const tmpPrefix = ".tmp-"

// WriteJSON stores v at path atomically: a reader (or a re-run after a
// crash) sees either the old record or the new one, never a torn file.
//
// The new content is written to an unnamed file (O_TMPFILE), which a
// SIGKILL simply discards; it gets a name only to be renamed over path at
// once. That name is flock'ed before it exists, so the few temporary
// files a kill between the two steps can leave are told from live ones
// and removed by the next write into the same directory (removeStale).
func WriteJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %q: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	removeStale(dir)
	f, name, err := createTemp(dir, filepath.Base(path))
	if err != nil {
		return fmt.Errorf("writing %q: %w", path, err)
	}
	defer f.Close()
	if name != "" {
		defer os.Remove(name) // no-op after a successful rename
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		return fmt.Errorf("writing %q: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %q: %w", path, err)
	}
	if name == "" {
		// Give the unnamed file its (locked) temporary name now.
		name = tempName(dir, filepath.Base(path))
		proc := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
		if err := unix.Linkat(unix.AT_FDCWD, proc, unix.AT_FDCWD, name, unix.AT_SYMLINK_FOLLOW); err != nil {
			return fmt.Errorf("writing %q: %w", path, err)
		}
		defer os.Remove(name)
	}
	if err := os.Rename(name, path); err != nil {
		return fmt.Errorf("writing %q: %w", path, err)
	}
	return nil
}

// createTemp returns an unnamed, locked file in dir, or, where the file
// system has no O_TMPFILE, a named one (also locked) and its name.
func createTemp(dir, base string) (*os.File, string, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
	if err == nil {
		f := os.NewFile(uintptr(fd), dir)
		if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			return nil, "", err
		}
		return f, "", nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
		return nil, "", err
	}
	for range 10 {
		name := tempName(dir, base)
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		// A cleaner may lock and remove it before this flock: then the
		// rename fails and the caller reports it; the record is unchanged.
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			os.Remove(name)
			return nil, "", err
		}
		return f, name, nil
	}
	return nil, "", fmt.Errorf("no free temporary name in %q", dir)
}

func tempName(dir, base string) string {
	var b [6]byte
	_, _ = unix.Getrandom(b[:], 0)
	return filepath.Join(dir, fmt.Sprintf(".%s%s%x", base, tmpPrefix, b))
}

// removeStale removes the temporary files in dir that no writer holds: the
// leftovers of a writer killed between naming its file and renaming it.
func removeStale(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") || !strings.Contains(e.Name(), tmpPrefix) {
			continue
		}
		_ = removeIfUnlocked(filepath.Join(dir, e.Name()))
	}
}

// removeIfUnlocked removes the file name when no process holds its lock. A
// writer that renamed it meanwhile has moved the name away: the remove
// then finds nothing.
func removeIfUnlocked(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return err // a live writer holds it
	}
	return os.Remove(name)
}

// TempFiles lists the temporary files under the state directory (for
// tests and `tapbridge status`).
func TempFiles() ([]string, error) {
	var out []string
	err := filepath.WalkDir(Dir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() && strings.HasPrefix(d.Name(), ".") && strings.Contains(d.Name(), tmpPrefix) {
			out = append(out, p)
		}
		return nil
	})
	return out, err
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
