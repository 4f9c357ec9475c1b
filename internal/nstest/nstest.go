// Package nstest runs a test's code inside a throwaway network namespace,
// with its own tapbridge state directory. It is for tests only and never
// touches the root namespace.
package nstest

import (
	"os"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
)

// Run runs f on a locked OS thread inside a new network namespace, with
// TAPBRIDGE_RUN_DIR set to a temporary directory; the namespace is deleted
// when the test ends. It skips the test when not run as root.
func Run(tb testing.TB, f func()) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: creates a network namespace")
	}
	tb.Setenv("TAPBRIDGE_RUN_DIR", tb.TempDir())
	n, err := testutils.NewNS()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { n.Close(); _ = testutils.UnmountNS(n) })
	if err := n.Do(func(ns.NetNS) error { f(); return nil }); err != nil {
		tb.Fatal(err)
	}
}
