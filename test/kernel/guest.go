package kernel

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// GuestEnv is set to "1" in the guest's environment. testbed.CheckGuest
// reads it, so tests that would boot a QEMU guest of their own skip there.
const GuestEnv = "TAPBRIDGE_KERNEL_GUEST"

// QEMU is the emulator that boots the kernel.
var QEMU = "qemu-system-x86_64"

// Package is one package whose tests run in the guest.
type Package struct {
	ImportPath string
	Rel        string // its directory, relative to the module root
	Binary     string // its test binary on the host, once built
}

// ListPackages returns the packages matching patterns (as `go list` takes
// them, run in root) that have tests.
func ListPackages(root string, patterns []string) ([]Package, error) {
	cmd := exec.Command("go", append([]string{"list", "-f", "{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}} {{.Dir}}{{end}}"}, patterns...)...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s: %w: %s", strings.Join(patterns, " "), err, strings.TrimSpace(stderr.String()))
	}
	var pkgs []Package
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, dir, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			return nil, err
		}
		pkgs = append(pkgs, Package{ImportPath: path, Rel: rel})
	}
	return pkgs, nil
}

// BuildTests builds the packages' test binaries into dir, static
// (CGO_ENABLED=0), and sets their Binary.
func BuildTests(root, dir string, pkgs []Package) error {
	args := []string{"test", "-c", "-o", dir + "/", "-ldflags=-s -w"}
	seen := map[string]string{}
	for i, p := range pkgs {
		name := filepath.Base(p.ImportPath) + ".test"
		if other, ok := seen[name]; ok {
			return fmt.Errorf("packages %q and %q would both build %s", other, p.ImportPath, name)
		}
		seen[name] = p.ImportPath
		pkgs[i].Binary = filepath.Join(dir, name)
		args = append(args, "./"+p.Rel)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the test binaries: %w\n%s", err, out)
	}
	return nil
}

// Config says what the guest runs and how.
type Config struct {
	Kernel, Version string    // the kernel to boot and its version
	Root            string    // the module root, copied to /src
	Packages        []Package // with their binaries built
	BinDir          string    // tapbridge's binaries, for TAPBRIDGE_BIN_DIR
	ToolsDir        string    // cnitool and the CNI plugins, for CNI_TOOLS_DIR
	Run             string    // -test.run for every package; "" for all
	Skip            string    // -test.skip for every package; "" for none
	TestTimeout     time.Duration
	CPUs, MemoryMB  int
	Append          string // more of the kernel's command line
	// Groups is how many guests run the packages at once, each from the
	// same initramfs with its own share of them (Split); 0 or 1 is one
	// guest.
	Groups int
	// Progress, if set, is called with each marker line ("@@@ start
	// PACKAGE", "@@@ exit PACKAGE STATUS SECONDS") while the guest runs.
	Progress func(line string)
}

// Build stages the guest's root file system in dir/root and packs it into
// dir/initramfs.cpio, which it returns. The staging tree is removed.
func Build(dir string, c Config) (string, error) {
	for prog, pkg := range Required {
		if _, err := exec.LookPath(prog); err != nil {
			return "", fmt.Errorf("%s not found: install %s", prog, pkg)
		}
	}
	root := filepath.Join(dir, "root")
	defer os.RemoveAll(root)
	s, err := NewStage(root)
	if err != nil {
		return "", fmt.Errorf("staging the guest: %w", err)
	}
	if err := s.AddBusybox(); err != nil {
		return "", err
	}
	for _, p := range Programs {
		path, err := exec.LookPath(p)
		if err != nil {
			continue
		}
		if err := s.AddProgram(path); err != nil {
			return "", fmt.Errorf("staging %s: %w", p, err)
		}
	}
	for _, l := range []string{"modprobe", "depmod", "insmod", "rmmod", "lsmod", "modinfo"} {
		if err := s.Symlink("/usr/bin/kmod", "usr/sbin/"+l); err != nil {
			return "", err
		}
	}
	for _, d := range []string{"/etc/iproute2", "/usr/share/iproute2", "/usr/lib/iproute2"} {
		if _, err := os.Stat(d); err == nil {
			if err := s.CopyTree(d, d, nil, 1<<20); err != nil {
				return "", err
			}
		}
	}
	for _, f := range []string{"/etc/protocols", "/etc/services", "/etc/ethertypes"} {
		if err := s.CopyFile(f, f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
	}
	if err := s.AddModules(c.Version); err != nil {
		return "", err
	}
	if err := s.CopyTree(c.Root, "src", map[string]bool{".git": true, "bin": true, ".cache": true}, 1<<20); err != nil {
		return "", fmt.Errorf("staging the source tree: %w", err)
	}
	if err := s.CopyTree(c.BinDir, "opt/tapbridge/bin", nil, 1<<30); err != nil {
		return "", fmt.Errorf("staging tapbridge's binaries: %w", err)
	}
	if err := s.CopyTree(c.ToolsDir, "opt/cni/bin", nil, 1<<30); err != nil {
		return "", fmt.Errorf("staging the CNI tools: %w", err)
	}
	for g, pkgs := range Split(c.Packages, c.Groups) {
		var manifest strings.Builder
		for _, p := range pkgs {
			name := filepath.Base(p.Binary)
			if err := s.CopyFile(p.Binary, filepath.Join("tests", name)); err != nil {
				return "", fmt.Errorf("staging %s: %w", name, err)
			}
			fmt.Fprintf(&manifest, "%s %s %s\n", name, p.ImportPath, p.Rel)
		}
		if err := s.WriteFile(fmt.Sprintf("tests/manifest.%d", g), 0o644, []byte(manifest.String())); err != nil {
			return "", err
		}
	}
	if err := s.WriteFile("init", 0o755, []byte(initScript(c))); err != nil {
		return "", err
	}
	initrd := filepath.Join(dir, "initramfs.cpio")
	if err := s.Pack(initrd); err != nil {
		return "", err
	}
	return initrd, nil
}

// Heavy is the package that gets a guest of its own when there are two or
// more: the end-to-end package, which runs longer than all the others
// together under TCG.
const Heavy = "test"

// Split shares pkgs out between n guests: with n >= 2, Heavy alone in the
// first and the rest in the second (a guest that would run nothing is left
// out); else all in one.
func Split(pkgs []Package, n int) [][]Package {
	if n < 2 {
		return [][]Package{pkgs}
	}
	var heavy, rest []Package
	for _, p := range pkgs {
		if p.Rel == Heavy {
			heavy = append(heavy, p)
		} else {
			rest = append(rest, p)
		}
	}
	var groups [][]Package
	for _, g := range [][]Package{heavy, rest} {
		if len(g) > 0 {
			groups = append(groups, g)
		}
	}
	return groups
}

// initScript is the guest's /init: set up the file systems, run each test
// binary of its manifest (tests/manifest.N, N from tapbridge.group=N on
// the kernel's command line) with its output on the second serial port
// between markers, power off. Each binary runs in its package's directory
// of /src, as `go test` would run it.
func initScript(c Config) string {
	flags := "-test.v=test2json -test.count=1 -test.timeout=" + c.TestTimeout.String()
	if c.Run != "" {
		flags += " -test.run=" + shellQuote(c.Run)
	}
	if c.Skip != "" {
		flags += " -test.skip=" + shellQuote(c.Skip)
	}
	return `#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/busybox
export HOME=/root TMPDIR=/tmp ` + GuestEnv + `=1
export TAPBRIDGE_BIN_DIR=/opt/tapbridge/bin CNI_TOOLS_DIR=/opt/cni/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
ln -sf /proc/self/fd /dev/fd
echo /sbin/modprobe > /proc/sys/kernel/modprobe
hostname kernel-test
ip link set lo up
# /dev/net/tun appears only once tun is loaded: nothing asks for it first.
# udev's default rules make it 0666 on a real host; devtmpfs makes it 0600.
modprobe tun
chmod 0666 /dev/net/tun
stty -F /dev/ttyS1 raw -echo
exec 3>/dev/ttyS1
echo "@@@ kernel $(uname -r) cpus $(nproc)" >&3
group=0
for arg in $(cat /proc/cmdline); do
	case "$arg" in tapbridge.group=*) group=${arg#tapbridge.group=} ;; esac
done
while read bin pkg rel; do
	start=$(date +%s)
	echo "@@@ start $pkg" >&3
	(cd "/src/$rel" && exec "/tests/$bin" ` + flags + `) </dev/null >&3 2>&1
	rc=$?
	printf '\n@@@ exit %s %d %d\n' "$pkg" "$rc" "$(($(date +%s) - start))" >&3
done < "/tests/manifest.$group"
echo "@@@ done" >&3
sync
poweroff -f
`
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Boot runs the guest until it powers off, ctx ends or it dies, and returns
// what it wrote on its console (ttyS0) and on its result port (ttyS1), and
// the CPU time QEMU used (the guest's cost without the host's other load).
// QEMU gets no network device: nothing of the host's network is reachable
// from the guest.
//
// group picks the guest's share of the packages (Split); its console and
// results files are named after it in dir.
func Boot(ctx context.Context, dir, initrd string, group int, c Config) (console, results []byte, cpu time.Duration, err error) {
	consolePath := filepath.Join(dir, fmt.Sprintf("console.%d.log", group))
	resultsPath := filepath.Join(dir, fmt.Sprintf("results.%d.log", group))
	args := []string{
		"-name", fmt.Sprintf("tapbridge-kernel-test-%d", group),
		"-accel", "tcg",
		"-cpu", "max",
		"-smp", strconv.Itoa(c.CPUs),
		"-m", strconv.Itoa(c.MemoryMB),
		"-nodefaults", "-no-user-config",
		"-nographic", "-monitor", "none",
		"-nic", "none",
		"-no-reboot",
		"-serial", "file:" + consolePath,
		"-serial", "file:" + resultsPath,
		"-kernel", c.Kernel,
		"-initrd", initrd,
		// random.trust_cpu: RDRAND (emulated by -cpu max) seeds the
		// kernel's RNG at once, so getrandom does not block the tests.
		"-append", fmt.Sprintf("console=ttyS0 panic=-1 loglevel=4 random.trust_cpu=on tapbridge.group=%d %s", group, c.Append),
	}
	cmd := exec.Command(QEMU, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	// QEMU dies with the thread that started it, so a test binary killed
	// outright leaves no guest behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, nil, 0, fmt.Errorf("starting %s: %w", QEMU, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	reported := 0
	progress := func() {
		if c.Progress == nil {
			return
		}
		b, _ := os.ReadFile(resultsPath)
		var markers []string
		for _, l := range strings.SplitAfter(string(b), "\n") {
			if strings.HasSuffix(l, "\n") && (strings.HasPrefix(l, "@@@ start ") || strings.HasPrefix(l, "@@@ exit ")) {
				markers = append(markers, strings.TrimSpace(l))
			}
		}
		for ; reported < len(markers); reported++ {
			c.Progress(markers[reported])
		}
	}
wait:
	for {
		select {
		case err = <-done:
			if err != nil {
				err = fmt.Errorf("%s: %w: %s", QEMU, err, strings.TrimSpace(stderr.String()))
			}
			break wait
		case <-ctx.Done():
			_ = cmd.Process.Kill() // our own QEMU, by PID
			<-done
			err = fmt.Errorf("the guest did not power off in time: %w", ctx.Err())
			break wait
		case <-tick.C:
			progress()
		}
	}
	progress()
	if st := cmd.ProcessState; st != nil {
		cpu = st.UserTime() + st.SystemTime()
	}
	console, _ = os.ReadFile(consolePath)
	results, _ = os.ReadFile(resultsPath)
	return console, results, cpu, err
}

// Result is the run of one package's test binary in the guest.
type Result struct {
	ImportPath string
	Output     []byte // the binary's -test.v=test2json output
	Finished   bool   // the binary exited (else the guest died or timed out)
	Exit       int
	Seconds    int
}

// Parse splits the result port's output into the packages' runs, and
// reports the kernel line and whether the guest got to the end.
func Parse(results []byte) (rs []Result, kernel string, done bool) {
	var cur *Result
	for _, line := range bytes.SplitAfter(results, []byte("\n")) {
		text := strings.TrimRight(string(line), "\r\n")
		f := strings.Fields(text)
		switch {
		case len(f) >= 2 && f[0] == "@@@" && f[1] == "kernel":
			kernel = strings.Join(f[2:], " ")
		case len(f) == 3 && f[0] == "@@@" && f[1] == "start":
			rs = append(rs, Result{ImportPath: f[2]})
			cur = &rs[len(rs)-1]
		case len(f) == 5 && f[0] == "@@@" && f[1] == "exit" && cur != nil && f[2] == cur.ImportPath:
			cur.Finished = true
			cur.Exit, _ = strconv.Atoi(f[3])
			cur.Seconds, _ = strconv.Atoi(f[4])
			cur = nil
		case len(f) == 2 && f[0] == "@@@" && f[1] == "done":
			done = true
		case cur != nil:
			cur.Output = append(cur.Output, line...)
		}
	}
	return rs, kernel, done
}

// Event is one test2json event.
type Event struct {
	Action  string
	Test    string
	Output  string
	Elapsed float64
}

// Events turns a test binary's -test.v=test2json output into events, with
// `go tool test2json`.
func Events(output []byte) ([]Event, error) {
	cmd := exec.Command("go", "tool", "test2json")
	cmd.Stdin = bytes.NewReader(output)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go tool test2json: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var evs []Event
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("reading test2json's output: %w", err)
		}
		evs = append(evs, e)
	}
	return evs, sc.Err()
}
