package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// options are the driver's flags.
type options struct {
	bin      string // tapbridge's binaries (make build)
	baseline string // the same binaries built from an earlier commit, optional
	tools    string // cnitool and the upstream CNI plugins (make tools)
	out      string // the report; the PNGs go next to it
	rounds   int    // alternating rounds per scale
	ports    int    // the large scale
	frames   int    // rounds of the frames/s phase
}

// envMountNS marks the child that runs in the private mount namespace.
const envMountNS = "TAPBRIDGE_BENCH_MOUNTNS"

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin", "directory of tapbridge's binaries")
	flag.StringVar(&o.baseline, "baseline", "", "directory of the binaries of an earlier commit, measured as \"before\" (optional)")
	flag.StringVar(&o.tools, "tools", ".cache/cni-tools", "directory of the upstream CNI plugins: bridge, tap, noop")
	flag.StringVar(&o.out, "out", "docs/benchmarks.md", "the report to write")
	flag.IntVar(&o.rounds, "rounds", 61, "alternating rounds at each scale")
	flag.IntVar(&o.ports, "ports", 1000, "attached ports at the large scale")
	flag.IntVar(&o.frames, "frame-rounds", 7, "alternating rounds of the frames/s phase")
	renderFrom := flag.String("render", "", "write the report from the raw results (the .json next to an earlier report) without measuring")
	flag.Parse()
	if *renderFrom != "" {
		if err := render(*renderFrom, o.out); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: needs root: it creates network and mount namespaces")
		os.Exit(1)
	}
	if os.Getenv(envMountNS) == "" {
		os.Exit(reexec())
	}
	runtime.LockOSThread() // this thread enters the hypervisor namespace
	start := time.Now()
	if err := runBench(o); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "bench: done in %s, report in %s\n", time.Since(start).Round(time.Second), o.out)
}

// reexec runs this program again in a private mount namespace (Go makes
// "/" private there, so nothing mounted inside leaks out) and returns its
// exit status.
func reexec() int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envMountNS+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	return 0
}

func runBench(o options) error {
	for _, p := range []*string{&o.bin, &o.baseline, &o.tools, &o.out} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return err
			}
			*p = abs
		}
	}
	e, err := newEnv(o)
	if err != nil {
		return err
	}
	defer e.close()
	r := &results{opts: o, args: strings.Join(os.Args[1:], " "), started: time.Now(), machine: machine()}
	r.commit = gitDescribe()
	if err := e.measure(r); err != nil {
		return err
	}
	r.finished = time.Now()
	return r.write(o.out)
}

// gitDescribe names the commit measured.
func gitDescribe() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
