package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tapbridge/tapbridge/internal/testkit"
	"github.com/tapbridge/tapbridge/test/testbed"
)

var (
	binDir   string // tapbridge's own binaries
	toolsDir string // cnitool and the upstream CNI plugins
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	binDir, toolsDir = os.Getenv("TAPBRIDGE_BIN_DIR"), os.Getenv("CNI_TOOLS_DIR")
	// Binaries built with -cover, run with the environment of this process,
	// write their counters where make test collects them; those run with an
	// explicit environment get it from testbed.Env. Any user may write
	// there: QEMU's user nobody runs qemu-ifup, and the helper installed
	// with a file capability runs as its caller. Not sticky: every run
	// replaces the meta-data file (rename), whoever wrote it last.
	if d := testbed.CoverDir(); d != "" {
		os.Setenv("GOCOVERDIR", d)
		err := os.MkdirAll(d, 0o755)
		if err == nil {
			err = os.Chmod(d, 0o777)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	// With -short every test here skips (testbed.NewNetNS): build nothing.
	if os.Geteuid() == 0 && !testing.Short() && (binDir == "" || toolsDir == "") {
		tmp, err := os.MkdirTemp("", "tapbridge-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(tmp)
		if binDir == "" {
			binDir = filepath.Join(tmp, "bin")
			if err := goBuild(binDir); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		if toolsDir == "" {
			toolsDir = filepath.Join(tmp, "tools")
			if err := goInstallTools(toolsDir); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
	}
	return m.Run()
}

func goBuild(dir string) error {
	cmd := exec.Command("make", "-C", "..", "build", "BIN_DIR="+dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building tapbridge: %w", err)
	}
	return nil
}

func goInstallTools(dir string) error {
	cmd := exec.Command("make", "-C", "..", "tools", "CNI_TOOLS_DIR="+dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("installing cnitool and the upstream plugins: %w", err)
	}
	return nil
}

// bin returns the path of one of tapbridge's binaries.
func bin(name string) string { return filepath.Join(binDir, name) }

// tool returns the path of cnitool or an upstream CNI plugin.
func tool(name string) string { return filepath.Join(toolsDir, name) }

// needRoot skips the end-to-end tests when not run as root, and with
// -short (`make test-unit` runs the unit tests only).
func needRoot(t testing.TB) { testkit.NeedRoot(t, "an end-to-end test: builds network namespaces") }
