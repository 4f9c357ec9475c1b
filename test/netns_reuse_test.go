package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/test/testbed"
)

// reuseInode makes a network namespace with the inode number ino, freed by
// a namespace just deleted (testbed.CreateNetNSWithInode), and returns it
// (deleted at t's cleanup). It skips the test when the number is not
// handed out within 10s: another process holds it.
func reuseInode(t *testing.T, ino uint64) *testbed.NetNS {
	t.Helper()
	n, err := testbed.CreateNetNSWithInode(ino, 10*time.Second)
	if errors.Is(err, testbed.ErrInodeInUse) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Delete() })
	return n
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
