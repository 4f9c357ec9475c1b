package testbed

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/tapbridge/tapbridge/internal/nstest"
)

// netnsDir is where `ip netns` keeps its named namespaces.
const netnsDir = "/run/netns"

// NetNS is a network namespace: one the test bed created (NewNetNS), or any
// other one named by OpenNetNS, such as a CNI runtime's.
type NetNS struct {
	// Name is the `ip netns` name, or "" when the namespace is not under
	// /run/netns.
	Name string
	// Path is the namespace's bind mount, e.g. /run/netns/tb-1a2b3c4d.
	Path string
}

// NewNetNS creates a network namespace called "tb-" plus 8 random hex
// digits, with lo up and IPv6 duplicate address detection off (so an
// address is usable, and a dump of the state stable, at once). Cleanup
// deletes it.
func NewNetNS(t TB) *NetNS {
	t.Helper()
	skipUnlessPrivileged(t)
	n, err := CreateNetNS()
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := n.Delete(); err != nil {
			t.Logf("%v", err)
		}
	})
	return n
}

// CreateNetNS is NewNetNS without a TB: the caller deletes the namespace.
func CreateNetNS() (*NetNS, error) {
	n, _, err := makeNetNS(nil)
	if err != nil {
		return nil, err
	}
	if err := n.setUp(); err != nil {
		_ = n.Delete()
		return nil, err
	}
	return n, nil
}

// randomName returns "tb-" and 8 random hex digits.
func randomName() (string, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("choosing a netns name: %w", err)
	}
	return "tb-" + hex.EncodeToString(b), nil
}

// setUp turns IPv6 duplicate address detection off in a new namespace and
// brings lo up.
func (n *NetNS) setUp() error {
	err := n.Do(func() error {
		for _, c := range []string{"all", "default"} {
			f := "/proc/sys/net/ipv6/conf/" + c + "/accept_dad"
			if err := os.WriteFile(f, []byte("0"), 0o644); err != nil {
				return fmt.Errorf("writing %s: %w", f, err)
			}
		}
		return nil
	})
	if err == nil {
		_, err = n.Exec("ip", "link", "set", "lo", "up")
	}
	if err != nil {
		return fmt.Errorf("setting up netns %q: %w", n, err)
	}
	return nil
}

// OpenNetNS names an existing namespace by its `ip netns` name or by the
// path of its bind mount (a CNI runtime's, or /proc/PID/ns/net). It checks
// nothing: a wrong name fails at first use.
func OpenNetNS(ref string) *NetNS {
	if !strings.Contains(ref, "/") {
		return &NetNS{Name: ref, Path: filepath.Join(netnsDir, ref)}
	}
	n := &NetNS{Path: ref}
	for _, dir := range []string{netnsDir, "/var/run/netns"} {
		if filepath.Dir(filepath.Clean(ref)) == dir {
			n.Name = filepath.Base(ref)
		}
	}
	return n
}

// String returns the name, or the path of an unnamed namespace.
func (n *NetNS) String() string {
	if n.Name != "" {
		return n.Name
	}
	return n.Path
}

// Delete deletes a namespace that `ip netns` knows. The namespace itself
// lives on while a process still runs in it, so stop those first.
func (n *NetNS) Delete() error {
	if n.Name == "" {
		return fmt.Errorf("deleting netns %q: not a named namespace", n.Path)
	}
	if out, err := exec.Command("ip", "netns", "delete", n.Name).CombinedOutput(); err != nil {
		if _, serr := os.Stat(n.Path); os.IsNotExist(serr) {
			return nil
		}
		return withOutput(fmt.Sprintf("deleting netns %q", n.Name), err, out)
	}
	return nil
}

// Do runs fn on an OS thread that is inside the namespace (nstest.Do, the
// one way tests enter a namespace): create sockets and netlink handles in
// fn itself, not in goroutines it starts.
func (n *NetNS) Do(fn func() error) error { return nstest.Do(n.Path, fn) }

// Command returns a command that runs name inside the namespace. A named
// namespace uses `ip netns exec`, which also mounts a matching /sys; any
// other uses `nsenter --net`. Both exec the program, so cmd.Process.Pid is
// the program's own PID.
func (n *NetNS) Command(name string, args ...string) *exec.Cmd {
	argv := append(n.prefix(), name)
	return exec.Command(argv[0], append(argv[1:], args...)...)
}

// prefix is the command line that enters the namespace.
func (n *NetNS) prefix() []string {
	if n.Name != "" {
		return []string{"ip", "netns", "exec", n.Name}
	}
	return []string{"nsenter", "--net=" + n.Path, "--"}
}

// Exec runs name inside the namespace and returns its standard output; on
// failure it returns standard output and error together, and the error
// carries them too. On success stderr is dropped: ip(8) warns there about
// the peers of veths whose namespace another test is deleting meanwhile,
// which must not end up in output the caller parses.
func (n *NetNS) Exec(name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := n.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		out := append(stdout.Bytes(), stderr.Bytes()...)
		what := fmt.Sprintf("running %q in netns %q", strings.Join(append([]string{name}, args...), " "), n)
		return string(out), withOutput(what, err, out)
	}
	return stdout.String(), nil
}

// withOutput wraps err as "what: err: output", leaving out an empty output.
func withOutput(what string, err error, out []byte) error {
	if o := strings.TrimSpace(string(out)); o != "" {
		return fmt.Errorf("%s: %w: %s", what, err, o)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// MustExec is Exec that fails t on error.
func (n *NetNS) MustExec(t TB, name string, args ...string) string {
	t.Helper()
	out, err := n.Exec(name, args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return out
}

// Ping sends one ICMP echo request from the namespace to addr (IPv4 or
// IPv6) and waits up to 2 s for the reply. It uses busybox, as the hosts
// have no iputils.
func (n *NetNS) Ping(addr string) error {
	_, err := n.Exec("busybox", "ping", "-c", "1", "-W", "2", addr)
	return err
}

// Fetch is FetchFrom(n.Path, url).
func (n *NetNS) Fetch(url string) (string, error) {
	return FetchFrom(n.Path, url)
}

// Inode returns the namespace's inode number, which identifies it: two paths
// name the same namespace when their inodes match.
func (n *NetNS) Inode() (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(n.Path, &st); err != nil {
		return 0, fmt.Errorf("stat netns %q: %w", n, err)
	}
	return st.Ino, nil
}

// skipUnlessPrivileged skips a test (not a Session) that cannot or should
// not build namespaces: one run without root, or with -short.
func skipUnlessPrivileged(t TB) {
	sk, ok := t.(interface{ Skip(args ...any) })
	if !ok {
		return
	}
	t.Helper()
	if err := privileged(); err != nil {
		sk.Skip(err)
	}
}

// privileged says why namespaces are not built here: not root, or a test
// binary run with -short (the unit tests only: `make test-unit`).
func privileged() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the test bed needs root: it creates network namespaces")
	}
	if f := flag.Lookup("test.short"); f != nil && f.Value.String() == "true" {
		return fmt.Errorf("-short: the test bed builds network namespaces (run as root without -short for the end-to-end tests)")
	}
	return nil
}
