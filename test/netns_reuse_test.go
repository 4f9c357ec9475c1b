package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/test/testbed"
)

// reuseInode makes network namespaces until one gets the inode number ino,
// freed by a namespace just deleted, and returns that one (deleted at t's
// cleanup). The kernel hands out the lowest free number, so the others are
// kept until then: each fills a lower gap that other tests' namespaces,
// torn down meanwhile, may have left.
func reuseInode(t *testing.T, ino uint64) *testbed.NetNS {
	t.Helper()
	var others []*testbed.NetNS
	defer func() {
		for _, n := range others {
			_ = n.Delete()
		}
	}()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
		n, err := testbed.CreateNetNS()
		if err != nil {
			t.Fatal(err)
		}
		if got, err := n.Inode(); err == nil && got == ino {
			t.Cleanup(func() { _ = n.Delete() })
			return n
		} else if err == nil && got > ino {
			// Not freed yet (the kernel tears a namespace down
			// asynchronously): try again with this one gone.
			_ = n.Delete()
			time.Sleep(20 * time.Millisecond)
			continue
		}
		others = append(others, n)
	}
	t.Skipf("no new namespace got the deleted one's inode %d within 10s", ino)
	return nil
}

// reuseInodeAt puts a network namespace with the inode number ino, freed
// by a namespace just deleted, at the `ip netns` name of that namespace, as
// a runtime that reuses a sandbox path would: a record naming the path and
// the inode cannot tell the two apart.
func reuseInodeAt(t *testing.T, name string, ino uint64) *testbed.NetNS {
	t.Helper()
	n := reuseInode(t, ino)
	path := filepath.Join(filepath.Dir(n.Path), name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		t.Fatalf("making the mount point %s: %v", path, err)
	}
	f.Close()
	if err := unix.Mount(n.Path, path, "", unix.MS_BIND, ""); err != nil {
		_ = os.Remove(path)
		t.Fatalf("bind-mounting %s at %s: %v", n.Path, path, err)
	}
	if err := n.Delete(); err != nil { // it lives on at path
		t.Fatal(err)
	}
	at := &testbed.NetNS{Name: name, Path: path}
	t.Cleanup(func() { _ = at.Delete() })
	if got, err := at.Inode(); err != nil || got != ino {
		t.Fatalf("the namespace at %s has inode %d (%v), want %d", path, got, err, ino)
	}
	return at
}
