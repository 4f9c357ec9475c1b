package testbed

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// ErrInodeInUse matches a CreateNetNSWithInode that did not get the inode
// number in time: another process holds it, or the namespace that had it
// is not freed yet.
var ErrInodeInUse = errors.New("the inode number is not free")

// CreateNetNSWithInode is CreateNetNS for a namespace with the inode number
// ino, which a namespace just deleted freed: a runtime may mount such a
// namespace at a dead sandbox's path, and a record naming the path and the
// inode cannot tell the two apart.
//
// The kernel hands every namespace and every /proc entry the lowest free
// number of one shared pool, and a network namespace takes dozens at once
// (its own and those of its /proc/net entries: 69 on 6.18). So the free
// numbers below ino are filled first with UTS namespaces, which take one
// number each, until one lands on ino; that one is let go and the network
// namespace made at once, on a thread of this process, so that its own
// number is ino. (A network namespace kept as a filler instead would give
// ino to one of its /proc/net entries, for good.) The fillers go when it
// returns.
func CreateNetNSWithInode(ino uint64, timeout time.Duration) (*NetNS, error) {
	var fillers []int
	defer func() {
		for _, fd := range fillers {
			unix.Close(fd)
		}
	}()
	for end := time.Now().Add(timeout); time.Now().Before(end); {
		fd, got, err := utsFiller()
		if err != nil {
			return nil, err
		}
		if got < ino {
			fillers = append(fillers, fd) // a lower number, now taken
			continue
		}
		if got > ino {
			// ino is in use: the deleted namespace is torn down
			// asynchronously, or another process took the number.
			unix.Close(fd)
			time.Sleep(time.Millisecond) // ino goes to whoever asks first once freed
			continue
		}
		// Every number below ino is taken and fd holds ino: let it go and
		// make the namespace, whose own number the kernel hands out
		// before those of its /proc/net entries (6.1 and 6.18 alike).
		n, nino, err := makeNetNS([]int{fd})
		if err != nil {
			return nil, err
		}
		if nino == ino {
			if err := n.setUp(); err != nil {
				_ = n.Delete()
				return nil, err
			}
			return n, nil
		}
		if err := n.Delete(); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("making a network namespace with inode number %d: %w after %v", ino, ErrInodeInUse, timeout)
}

// onNewNamespace runs f on a locked thread of its own that has first
// closed the descriptors release (so that the numbers they hold are free
// the moment before) and entered a new namespace of kind flag (unshare);
// the thread then goes back to its namespace of that kind. A thread that
// cannot go back is never unlocked, so the runtime ends it.
func onNewNamespace(flag int, kind string, release []int, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/"+kind, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening this thread's %s namespace: %w", kind, err)
			return
		}
		defer unix.Close(orig)
		for _, fd := range release {
			unix.Close(fd)
		}
		if err := unix.Unshare(flag); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("making a %s namespace: %w", kind, err)
			return
		}
		ferr := f()
		if err := unix.Setns(orig, flag); err != nil {
			errc <- fmt.Errorf("returning to this thread's %s namespace: %w", kind, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// utsFiller makes a UTS namespace, which takes a single inode number, and
// returns a descriptor that keeps it, and its number.
func utsFiller() (int, uint64, error) {
	fd := -1
	err := onNewNamespace(unix.CLONE_NEWUTS, "uts", nil, func() (err error) {
		fd, err = unix.Open("/proc/thread-self/ns/uts", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return -1, 0, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	return fd, st.Ino, nil
}

// makeNetNS makes a network namespace as `ip netns add` does (bind
// mounted at /run/netns/tb-XXXXXXXX), right after closing release (always
// closed), and returns it, not yet set up, and its inode number.
func makeNetNS(release []int) (_ *NetNS, _ uint64, err error) {
	handed := false // to onNewNamespace, which closes them
	defer func() {
		if !handed {
			for _, fd := range release {
				unix.Close(fd)
			}
		}
	}()
	name, err := randomName()
	if err != nil {
		return nil, 0, err
	}
	if err := sharedNetnsDir(); err != nil {
		return nil, 0, err
	}
	path := filepath.Join(netnsDir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("making the mount point of netns %q: %w", name, err)
	}
	f.Close()
	var ino uint64
	handed = true
	err = onNewNamespace(unix.CLONE_NEWNET, "net", release, func() error {
		var st unix.Stat_t
		if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
			return err
		}
		ino = st.Ino
		return unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, "")
	})
	if err != nil {
		_ = os.Remove(path)
		return nil, 0, fmt.Errorf("making netns %q: %w", name, err)
	}
	return &NetNS{Name: name, Path: path}, ino, nil
}

// sharedNetnsDir makes /run/netns a shared mount point, as `ip netns add`
// does, so that a namespace unmounted in one mount namespace is unmounted
// in all.
func sharedNetnsDir() error {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return err
	}
	err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) { // not a mount point yet
		if err = unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err == nil {
			err = unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		}
	}
	if err != nil {
		return fmt.Errorf("making %s a shared mount point: %w", netnsDir, err)
	}
	return nil
}
