package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tapbridge/tapbridge/test/testbed"
)

// TestCoverageReachesTheBinaries: when make test collects coverage, a
// binary built with -cover writes its counters where make coverage reads
// them, run as root or as nobody (QEMU's user), with the test's own
// environment or one made by testbed.Env, and says nothing about it on
// stderr.
func TestCoverageReachesTheBinaries(t *testing.T) {
	needRoot(t)
	dir := testbed.CoverDir()
	if dir == "" {
		t.Skip("coverage is not collected (make test collects it)")
	}
	counters := func() int {
		m, _ := filepath.Glob(filepath.Join(dir, "covcounters.*"))
		return len(m)
	}
	env := testbed.Env("PATH=/usr/sbin:/usr/bin:/sbin:/bin")
	for i, tt := range []struct {
		name string
		argv []string
		env  []string
	}{
		{"root, testbed.Env", []string{bin("tapbridge"), "--version"}, env},
		{"root, the test's environment", []string{bin("tapbridge"), "--version"}, os.Environ()},
		{"nobody", []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", bin("tapbridge"), "--version"}, env},
	} {
		cmd := exec.Command(tt.argv[0], tt.argv[1:]...)
		cmd.Env = tt.env
		var stderr strings.Builder
		cmd.Stderr = &stderr
		before := counters()
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v: %s", tt.name, err, stderr.String())
		}
		n := counters() - before
		if i == 0 && n == 0 && stderr.Len() == 0 {
			t.Skipf("%s is not built with -cover (make build-cover)", binDir)
		}
		if stderr.Len() != 0 || n != 1 {
			t.Errorf("%s: stderr %q, %d new counter files in %s; want nothing and one", tt.name, stderr.String(), n, dir)
		}
	}
}
