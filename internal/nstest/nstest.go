// Package nstest is the one way tests run code inside a network namespace:
// Do enters any namespace by path, New makes a throwaway one, Run does both
// with its own tapbridge state directory. It is for tests only and never
// touches the root namespace.
package nstest

import (
	"fmt"
	"os"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
)

// Do runs fn on an OS thread that is inside the network namespace at path
// (pkg/ns locks the thread and switches it back afterwards). A goroutine
// that fn starts runs elsewhere, in whatever namespace its thread is in:
// create sockets and netlink handles in fn itself.
//
// fn's error is returned as it is; an error entering the namespace is
// wrapped with path.
func Do(path string, fn func() error) error {
	ran := false
	err := ns.WithNetNSPath(path, func(ns.NetNS) error {
		ran = true
		return fn()
	})
	if err != nil && !ran {
		return fmt.Errorf("entering netns %q: %w", path, err)
	}
	return err
}

// New creates a throwaway network namespace, deleted when the test ends.
// It skips the test when not run as root.
func New(tb testing.TB) ns.NetNS {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: creates a network namespace")
	}
	n, err := testutils.NewNS()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { n.Close(); _ = testutils.UnmountNS(n) })
	return n
}

// Run runs f inside a new network namespace (New), with TAPBRIDGE_RUN_DIR
// set to a temporary directory.
func Run(tb testing.TB, f func()) {
	tb.Helper()
	n := New(tb)
	tb.Setenv("TAPBRIDGE_RUN_DIR", tb.TempDir())
	if err := Do(n.Path(), func() error { f(); return nil }); err != nil {
		tb.Fatal(err)
	}
}
