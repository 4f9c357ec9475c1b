package kernel

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Environment variables that steer TestKernel.
const (
	envRun      = "TAPBRIDGE_TEST_KERNEL"          // "1" runs it (make test-kernel sets it)
	envPackages = "TAPBRIDGE_TEST_KERNEL_PKGS"     // go list patterns; default ./internal/... ./test/...
	envTestRun  = "TAPBRIDGE_TEST_KERNEL_RUN"      // -test.run inside the guest
	envTestSkip = "TAPBRIDGE_TEST_KERNEL_SKIP"     // -test.skip inside the guest; default defaultSkip
	envCPUs     = "TAPBRIDGE_TEST_KERNEL_CPUS"     // each guest's CPUs; default 2
	envGuests   = "TAPBRIDGE_TEST_KERNEL_GUESTS"   // guests at once: 2 (./test in one, the rest in the other) or 1
	envTimeout  = "TAPBRIDGE_TEST_KERNEL_PKG_TIME" // -test.timeout of each package; default 20m
	envLogs     = "TAPBRIDGE_TEST_KERNEL_LOGS"     // a directory to keep the guest's console.log and results.log in
	envAppend   = "TAPBRIDGE_TEST_KERNEL_APPEND"   // more of the guest kernel's command line
	envVersion  = "TAPBRIDGE_TEST_KERNEL_VERSION"  // the kernel to boot (/boot/vmlinuz-VERSION); default FindKernel's
)

// defaultPackages are the packages with privileged tests. test/kernel
// itself is left out: it would only skip inside.
var defaultPackages = []string{"./internal/...", "./test/..."}

// defaultSkip are the tests the guest leaves out unless
// TAPBRIDGE_TEST_KERNEL_SKIP says otherwise ("" runs everything), so that
// `make test` can rely on this step (docs/kernel.md lists them):
//   - TestCNIParallel (64 concurrent CNI ADDs against one bridge) and
//     TestKillAnywhere (hundreds of killed runs) test tapbridge's locking
//     and recovery, not the kernel, and take minutes each under TCG;
//   - TestMove and TestFindUnmovable (handover) look for DHCP client
//     processes the guest does not run; TestInstall and TestDeb test
//     packaging;
//   - TestUpCrashSafe (up and down killed after each of 13 steps),
//     TestCNIAddFailsCleanly (21 bad inputs), TestCNICheckFindsDifferences
//     (10 drifts CHECK must see) and TestCNIDelIdempotent (10 half-gone
//     attachments) are tables of cases for tapbridge's own logic, each
//     case a fresh test bed: together about five minutes under TCG, for
//     kernel operations that the tests run there already do (up and down,
//     CNI ADD, CHECK and DEL of every version and mode, rollbacks).
const defaultSkip = "^(TestCNIParallel|TestKillAnywhere|TestMove|TestFindUnmovable|TestInstall|TestDeb|" +
	"TestUpCrashSafe|TestCNIAddFailsCleanly|TestCNICheckFindsDifferences|TestCNIDelIdempotent)$"

// TestKernel runs the privileged tests on Debian's cloud kernel, booted
// under QEMU (TCG), and reports each test that ran there as a subtest
// TestKernel/<package>/<test> that fails when it failed there.
func TestKernel(t *testing.T) {
	switch {
	case os.Getenv(GuestEnv) != "":
		t.Skip("this is the kernel test guest already")
	case testing.Short():
		t.Skip("-short: boots a kernel under TCG for several minutes")
	case os.Getenv(envRun) != "1":
		t.Skipf("boots Debian's cloud kernel under TCG for several minutes: run `make test-kernel` (or set %s=1)", envRun)
	case os.Geteuid() != 0:
		t.Skip("needs root: makes the guest's /dev/console, and the tests inside need root")
	}
	if _, err := exec.LookPath(QEMU); err != nil {
		t.Skipf("%s not found: install qemu-system-x86", QEMU)
	}
	kernel, version, err := FindKernel()
	if v := os.Getenv(envVersion); v != "" {
		kernel, version, err = "/boot/vmlinuz-"+v, v, nil
		if _, err := os.Stat(filepath.Join("/lib/modules", v, "modules.dep")); err != nil {
			t.Fatalf("%s=%q: %v", envVersion, v, err)
		}
	}
	if err != nil {
		t.Skip(err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	patterns := defaultPackages
	if p := os.Getenv(envPackages); p != "" {
		patterns = strings.Fields(p)
	}
	all, err := ListPackages(root, patterns)
	if err != nil {
		t.Fatal(err)
	}
	var pkgs []Package
	for _, p := range all {
		if p.Rel != "test/kernel" {
			pkgs = append(pkgs, p)
		}
	}
	if len(pkgs) == 0 {
		t.Fatalf("no packages with tests match %s", strings.Join(patterns, " "))
	}
	dir := t.TempDir()
	if err := BuildTests(root, filepath.Join(dir, "tests"), pkgs); err != nil {
		t.Fatal(err)
	}
	c := Config{
		Kernel: kernel, Version: version, Root: root, Packages: pkgs,
		BinDir: binDir(t, root), ToolsDir: toolsDir(t, root),
		Run:         os.Getenv(envTestRun),
		Skip:        defaultSkip,
		TestTimeout: 20 * time.Minute,
		CPUs:        2,
		MemoryMB:    2048,
		Append:      os.Getenv(envAppend),
		Groups:      2,
	}
	if s, ok := os.LookupEnv(envTestSkip); ok {
		c.Skip = s
	}
	if s := os.Getenv(envCPUs); s != "" {
		if c.CPUs, err = strconv.Atoi(s); err != nil || c.CPUs < 1 {
			t.Fatalf("%s=%q: not a number of CPUs", envCPUs, s)
		}
	}
	if s := os.Getenv(envGuests); s != "" {
		if c.Groups, err = strconv.Atoi(s); err != nil || c.Groups < 1 {
			t.Fatalf("%s=%q: not a number of guests", envGuests, s)
		}
	}
	if s := os.Getenv(envTimeout); s != "" {
		if c.TestTimeout, err = time.ParseDuration(s); err != nil {
			t.Fatalf("%s=%q: %v", envTimeout, s, err)
		}
	}
	initrd, err := Build(dir, c)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(initrd)
	t.Logf("kernel %s, %d packages, initramfs %d MiB, built in %s", kernel, len(pkgs), fi.Size()>>20, time.Since(start).Round(time.Second))

	// Leave a minute of the test's own deadline for reporting.
	ctx := context.Background()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-time.Minute))
		defer cancel()
	}
	// The guests run at once, each its share of the packages (Split).
	type run struct {
		console, results []byte
		cpu              time.Duration
		err              error
		took             time.Duration
	}
	groups := Split(pkgs, c.Groups)
	runs := make([]run, len(groups))
	var wg sync.WaitGroup
	for g := range groups {
		gc := c
		gc.Progress = func(line string) { t.Logf("guest %d: %s", g, strings.TrimPrefix(line, "@@@ ")) }
		wg.Go(func() {
			booted := time.Now()
			r := &runs[g]
			r.console, r.results, r.cpu, r.err = Boot(ctx, dir, initrd, g, gc)
			r.took = time.Since(booted)
		})
	}
	wg.Wait()

	ran := map[string]bool{}
	for g, r := range runs {
		if d := os.Getenv(envLogs); d != "" {
			for name, b := range map[string][]byte{fmt.Sprintf("console.%d.log", g): r.console, fmt.Sprintf("results.%d.log", g): r.results} {
				if err := os.WriteFile(filepath.Join(d, name), b, 0o644); err != nil {
					t.Errorf("keeping the guest's logs: %v", err)
				}
			}
		}
		rs, kver, done := Parse(r.results)
		t.Logf("guest %d: kernel %s ran %d packages in %s (QEMU used %s of CPU)", g, kver, len(rs), r.took.Round(time.Second), r.cpu.Round(time.Second))
		for _, res := range rs {
			ran[res.ImportPath] = true
			report(t, res, pkgs)
		}
		if r.err != nil || !done {
			t.Errorf("guest %d did not finish (%v); the end of its console:\n%s", g, r.err, tail(r.console, 60))
		}
	}
	for _, p := range pkgs {
		if !ran[p.ImportPath] {
			t.Errorf("%s: never started in the guest", p.ImportPath)
		}
	}
}

// report re-emits one package's run as subtests.
func report(t *testing.T, r Result, pkgs []Package) {
	name := r.ImportPath
	for _, p := range pkgs {
		if p.ImportPath == r.ImportPath {
			name = p.Rel
		}
	}
	t.Run(name, func(t *testing.T) {
		evs, err := Events(r.Output)
		if err != nil {
			t.Fatal(err)
		}
		top := buildTree(evs)
		failed := false
		for _, n := range top.children {
			failed = emit(t, n) || failed
		}
		switch {
		case !r.Finished:
			t.Errorf("did not finish in the guest (crash or timeout); its output ends:\n%s", tail([]byte(strings.Join(top.output, "")), 40))
		case r.Exit != 0 && !failed:
			t.Errorf("the test binary exited with status %d:\n%s", r.Exit, tail([]byte(strings.Join(top.output, "")), 40))
		default:
			t.Logf("ran in the guest in %ds", r.Seconds)
		}
	})
}

// node is a test of the guest, with its subtests.
type node struct {
	name     string // its own part of the full name
	children []*node
	output   []string
	action   string
}

// buildTree arranges the events by test; the root holds the package's own
// output. A subtest's parent is the longest test already seen whose name
// and a "/" begin the subtest's name: a subtest's own name may hold a "/"
// (t.Run("a/b", ...)), so splitting the full name at each "/" would not do.
func buildTree(evs []Event) *node {
	root := &node{}
	byName := map[string]*node{}
	find := func(full string) *node {
		if n, ok := byName[full]; ok {
			return n
		}
		parent, name := root, full
		for i := len(full) - 1; i > 0; i-- {
			if full[i] != '/' {
				continue
			}
			if p, ok := byName[full[:i]]; ok {
				parent, name = p, full[i+1:]
				break
			}
		}
		n := &node{name: name}
		parent.children = append(parent.children, n)
		byName[full] = n
		return n
	}
	for _, e := range evs {
		n := root
		if e.Test != "" {
			n = find(e.Test)
		}
		switch e.Action {
		case "output":
			n.output = append(n.output, e.Output)
		case "pass", "fail", "skip":
			n.action = e.Action
		}
	}
	return root
}

// emit runs n as a subtest of t with n's verdict, and reports whether it
// failed.
func emit(t *testing.T, n *node) (failed bool) {
	t.Run(n.name, func(t *testing.T) {
		for _, c := range n.children {
			emit(t, c)
		}
		var out []string
		for _, o := range n.output {
			s := strings.TrimSpace(o)
			if s == "" || strings.HasPrefix(s, "=== ") || strings.HasPrefix(s, "--- PASS") || strings.HasPrefix(s, "--- SKIP") {
				continue
			}
			out = append(out, strings.TrimRight(o, "\n"))
		}
		switch n.action {
		case "pass":
		case "skip":
			t.Skip(strings.Join(out, "\n"))
		case "fail":
			t.Error("failed in the guest:\n" + strings.Join(out, "\n"))
		default:
			t.Error("did not finish in the guest:\n" + strings.Join(out, "\n"))
		}
	})
	return n.action != "pass" && n.action != "skip"
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// binDir returns tapbridge's binaries: TAPBRIDGE_BIN_DIR, else built now.
func binDir(t *testing.T, root string) string {
	if d := os.Getenv("TAPBRIDGE_BIN_DIR"); d != "" {
		return d
	}
	d := filepath.Join(t.TempDir(), "bin")
	if out, err := exec.Command("make", "-C", root, "build", "BIN_DIR="+d).CombinedOutput(); err != nil {
		t.Fatalf("building tapbridge: %v\n%s", err, out)
	}
	return d
}

// toolsDir returns cnitool and the upstream plugins (CNI_TOOLS_DIR, else
// built now), plus the tuning plugin that TestCNIChain would otherwise
// build with the go command the guest does not have.
func toolsDir(t *testing.T, root string) string {
	d := filepath.Join(t.TempDir(), "tools")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	src := os.Getenv("CNI_TOOLS_DIR")
	if src == "" {
		if out, err := exec.Command("make", "-C", root, "tools", "CNI_TOOLS_DIR="+d).CombinedOutput(); err != nil {
			t.Fatalf("building the CNI tools: %v\n%s", err, out)
		}
	} else if out, err := exec.Command("cp", "-a", src+"/.", d).CombinedOutput(); err != nil {
		t.Fatalf("copying %s: %v\n%s", src, err, out)
	}
	if _, err := os.Stat(filepath.Join(d, "tuning")); err != nil {
		cmd := exec.Command("go", "install", "github.com/containernetworking/plugins/plugins/meta/tuning@v1.10.0")
		cmd.Env = append(os.Environ(), "GOBIN="+d, "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("building the tuning plugin (TestCNIChain will skip in the guest): %v\n%s", err, out)
		}
	}
	return d
}
