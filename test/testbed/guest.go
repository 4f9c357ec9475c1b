package testbed

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// QEMU is the emulator StartGuest runs.
var QEMU = "qemu-system-x86_64"

// GuestOpts says how to start a guest.
type GuestOpts struct {
	// NetNS is the namespace QEMU runs in, so where its TAP device, its
	// scripts and its bridge helper live. Nil means the root namespace:
	// only for a netdev that touches nothing there.
	NetNS *NetNS
	// Netdev is QEMU's -netdev value without the id, for example
	//	tap,ifname=tap0,script=/path/qemu-ifup,downscript=/path/qemu-ifdown
	//	tap,ifname=tap0,script=no,downscript=no
	//	bridge,br=br0,helper=/path/bridge-helper
	// The guest's only NIC, a virtio-net-pci, is attached to it.
	Netdev string
	// MAC is the guest NIC's MAC; "" picks a random 52:54:00:xx:xx:xx.
	MAC string
	// Image is what to boot; nil builds the default one.
	Image *Image
	// Credential, if set, runs QEMU as that user, e.g. nobody:
	// &syscall.Credential{Uid: 65534, Gid: 65534}. In the root namespace it
	// is set through SysProcAttr.Credential; in another namespace, `ip
	// netns exec` must enter it as root first, so setpriv(1) changes the
	// user after that. Files of the Image must be readable by that user
	// (the default image is).
	Credential *syscall.Credential
	// Env is added to QEMU's environment, which its scripts and bridge
	// helper inherit (e.g. TAPBRIDGE_CONF=...).
	Env []string
	// MemoryMB is the guest's memory; 0 means 256.
	MemoryMB int
	// Args are extra QEMU arguments, appended last.
	Args []string
	// Static, when not empty, makes the guest configure these addresses
	// itself instead of running DHCP, as a routed guest does: each as /32
	// (/128 for IPv6, without duplicate address detection) and the default
	// routes via the on-link gateways 169.254.0.1 and fe80::1. The console
	// then prints TB-STATIC instead of TB-LEASE; WaitReady works as before.
	Static []netip.Addr
}

// Guest is a running QEMU guest. It talks on its serial console, which the
// test bed captures: see scripts.go for the protocol.
type Guest struct {
	MAC        string
	Args       []string // QEMU's full command line
	ConsoleLog string   // file with everything the console printed

	proc    *process
	console *logBuffer
	stdin   io.WriteCloser

	mu     sync.Mutex // serializes Run
	nextID int
}

// StartGuest boots a guest under QEMU with TCG (KVM fails on these hosts),
// 256 MiB, no display, the serial console on QEMU's stdio and -no-reboot,
// so a guest that panics makes QEMU exit. It returns at once; a boot takes
// about 7 s (see WaitLease and WaitReady). Cleanup stops QEMU (SIGTERM by
// PID, then SIGKILL) and, if the test failed, logs the console.
func StartGuest(t TB, opts GuestOpts) *Guest {
	t.Helper()
	g, err := startGuest(t, opts)
	if g != nil {
		t.Cleanup(func() {
			if err := g.Stop(); err != nil {
				t.Logf("%v", err)
			}
			if t.Failed() {
				t.Logf("console of guest %s (%s):\n%s", g.MAC, strings.Join(g.Args, " "), g.Output())
			}
		})
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	return g
}

// startGuest does the work of StartGuest.
func startGuest(t TB, opts GuestOpts) (*Guest, error) {
	if opts.Netdev == "" {
		return nil, fmt.Errorf("starting a guest: no netdev")
	}
	mac := opts.MAC
	if mac == "" {
		var err error
		if mac, err = RandomMAC(); err != nil {
			return nil, err
		}
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return nil, fmt.Errorf("starting a guest: %w", err)
	}
	mac = hw.String()

	// Not t.TempDir: that is 0700, and QEMU may run as another user.
	dir, err := os.MkdirTemp("", "tb-guest-")
	if err != nil {
		return nil, fmt.Errorf("starting guest %s: %w", mac, err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("starting guest %s: %w", mac, err)
	}
	img := opts.Image
	if img == nil {
		if img, err = WriteImage(dir); err != nil {
			return nil, err
		}
		if opts.Credential != nil {
			if img.Kernel, err = readableCopy(img.Kernel, dir); err != nil {
				return nil, fmt.Errorf("starting guest %s: %w", mac, err)
			}
		}
	}
	mem := opts.MemoryMB
	if mem == 0 {
		mem = 256
	}

	args := []string{
		"-name", "tb-guest-" + mac,
		"-accel", "tcg",
		"-m", strconv.Itoa(mem),
		"-nodefaults", "-no-user-config",
		"-nographic", "-serial", "stdio", "-monitor", "none",
		"-no-reboot",
		"-kernel", img.Kernel,
		"-initrd", img.Initrd,
		"-append", appendLine(opts.Static),
		"-netdev", opts.Netdev + ",id=n0",
		// romfile=: no PXE option ROM, which -kernel does not need.
		"-device", "virtio-net-pci,netdev=n0,mac=" + mac + ",romfile=",
	}
	args = append(args, opts.Args...)

	var cmd *exec.Cmd
	switch {
	case opts.NetNS == nil:
		cmd = exec.Command(QEMU, args...)
		if opts.Credential != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: opts.Credential}
		}
	case opts.Credential != nil:
		cmd = opts.NetNS.Command("setpriv", append(setprivArgs(opts.Credential), append([]string{"--", QEMU}, args...)...)...)
	default:
		cmd = opts.NetNS.Command(QEMU, args...)
	}
	cmd.Env = append(os.Environ(), opts.Env...)

	logPath := filepath.Join(dir, "console.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("starting guest %s: %w", mac, err)
	}
	t.Cleanup(func() { logFile.Close() })
	g := &Guest{
		MAC:        mac,
		Args:       cmd.Args,
		ConsoleLog: logPath,
		console:    &logBuffer{file: logFile},
	}
	cmd.Stdout, cmd.Stderr = g.console, g.console
	if g.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("starting guest %s: %w", mac, err)
	}
	if g.proc, err = startProcess("qemu", cmd); err != nil {
		return nil, fmt.Errorf("starting guest %s: %w", mac, err)
	}
	return g, nil
}

// appendLine is the guest kernel's command line; tb.ip= tells /init to
// configure a static address (see scripts.go).
func appendLine(static []netip.Addr) string {
	line := "console=ttyS0 quiet panic=-1"
	var ips []string
	for _, a := range static {
		ips = append(ips, a.String())
	}
	if len(ips) > 0 {
		line += " tb.ip=" + strings.Join(ips, ",")
	}
	return line
}

// readableCopy returns path if everyone may read it, else a copy in dir that
// everyone may read (some distributions install kernels 0600).
func readableCopy(path, dir string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o004 != 0 {
		return path, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	cp := filepath.Join(dir, filepath.Base(path))
	if err := os.WriteFile(cp, data, 0o644); err != nil {
		return "", err
	}
	return cp, nil
}

// setprivArgs are setpriv(1)'s options for cred. Changing the user clears
// the parent-death signal, so setpriv sets it again.
func setprivArgs(cred *syscall.Credential) []string {
	args := []string{
		"--reuid=" + strconv.Itoa(int(cred.Uid)),
		"--regid=" + strconv.Itoa(int(cred.Gid)),
		"--pdeathsig=KILL",
	}
	if len(cred.Groups) == 0 {
		return append(args, "--clear-groups")
	}
	var gs []string
	for _, g := range cred.Groups {
		gs = append(gs, strconv.Itoa(int(g)))
	}
	return append(args, "--groups="+strings.Join(gs, ","))
}

// RandomMAC returns a random MAC in QEMU's locally administered range
// 52:54:00:xx:xx:xx.
func RandomMAC() (string, error) {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("choosing a MAC: %w", err)
	}
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2]), nil
}

// PID returns QEMU's process ID.
func (g *Guest) PID() int { return g.proc.pid() }

// Output returns everything the serial console (and QEMU on stderr) printed
// so far, with "\r\n" turned into "\n".
func (g *Guest) Output() string {
	return strings.ReplaceAll(g.console.String(), "\r\n", "\n")
}

// Exited is closed when QEMU has exited.
func (g *Guest) Exited() <-chan struct{} { return g.proc.done }

// Wait waits for QEMU to exit and returns its exit error, like exec.Cmd.Wait.
func (g *Guest) Wait() error {
	<-g.proc.done
	if g.proc.err != nil {
		return fmt.Errorf("qemu for guest %s: %w", g.MAC, g.proc.err)
	}
	return nil
}

// Stop stops QEMU: SIGTERM by PID (QEMU then runs the netdev's downscript),
// up to 10 s to exit, then SIGKILL. Stopping a stopped guest does nothing.
func (g *Guest) Stop() error {
	err := g.proc.stop(10 * time.Second)
	g.stdin.Close()
	if err != nil {
		return fmt.Errorf("stopping guest %s: %w", g.MAC, err)
	}
	return nil
}

var (
	// A whole line only: the serial console arrives a few bytes at a time
	// under TCG, and "TB-LEASE ip=198.51.100.1" may be the first part of
	// 198.51.100.149.
	leaseLine = regexp.MustCompile(`TB-LEASE ip=(\S+)[^\n]*\n`)
	errorLine = regexp.MustCompile(`TB-ERROR[^\n]*`)
)

// WaitOutput waits until the console has printed s. It gives up early, with
// the console's last lines in the error, when the guest reports TB-ERROR or
// QEMU exits.
func (g *Guest) WaitOutput(s string, timeout time.Duration) error {
	return g.wait("waiting for "+strconv.Quote(s), timeout, func(out string) bool {
		return strings.Contains(out, s)
	})
}

// WaitLease waits for the guest's DHCP lease (TB-LEASE) and returns the
// leased address.
func (g *Guest) WaitLease(timeout time.Duration) (netip.Addr, error) {
	var ip netip.Addr
	var perr error
	err := g.wait("waiting for a DHCP lease", timeout, func(out string) bool {
		var found bool
		ip, found, perr = leaseIn(out)
		return found
	})
	if err == nil {
		err = perr
	}
	return ip, err
}

// leaseIn finds the address of the first whole TB-LEASE line in a console's
// output.
func leaseIn(out string) (ip netip.Addr, found bool, err error) {
	m := leaseLine.FindStringSubmatch(out)
	if m == nil {
		return netip.Addr{}, false, nil
	}
	ip, err = netip.ParseAddr(m[1])
	return ip, true, err
}

// WaitReady waits until the guest has its lease and serves HTTP
// (TB-READY).
func (g *Guest) WaitReady(timeout time.Duration) error {
	return g.wait("waiting for the guest to be ready", timeout, func(out string) bool {
		return strings.Contains(out, "\nTB-READY\n")
	})
}

// wait polls the console until done reports true.
func (g *Guest) wait(what string, timeout time.Duration, done func(string) bool) error {
	var guestErr string
	err := poll(timeout, g.proc.done, func() (bool, error) {
		out := g.Output()
		if done(out) {
			return true, nil
		}
		if m := errorLine.FindString(out); m != "" {
			guestErr = m
			return true, nil
		}
		return false, nil
	})
	if err == nil && guestErr != "" {
		err = fmt.Errorf("guest reported %q", guestErr)
	}
	if errors.Is(err, ErrExited) && g.proc.err != nil {
		err = fmt.Errorf("%w (%v)", err, g.proc.err)
	}
	if err != nil {
		return fmt.Errorf("guest %s: %s: %w; console ends with:\n%s", g.MAC, what, err, g.tail(15))
	}
	return nil
}

// tail returns the console's last n lines.
func (g *Guest) tail(n int) string {
	lines := strings.Split(strings.TrimRight(g.Output(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Run runs a one-line shell command in the guest, through the serial
// console, once the guest is ready, and returns its output (stdout and
// stderr). A non-zero exit status is an error. Runs are serialized.
//
//	out, err := g.Run("ip -4 addr show dev eth0", 5*time.Second)
func (g *Guest) Run(command string, timeout time.Duration) (string, error) {
	if strings.ContainsAny(command, "\r\n") {
		return "", fmt.Errorf("guest %s: running %q: the command must be one line", g.MAC, command)
	}
	deadline := time.Now().Add(timeout)
	if err := g.WaitReady(timeout); err != nil {
		return "", err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.nextID++
	id := strconv.Itoa(g.nextID)
	if _, err := io.WriteString(g.stdin, id+" "+command+"\n"); err != nil {
		return "", fmt.Errorf("guest %s: running %q: %w", g.MAC, command, err)
	}
	re := regexp.MustCompile(`(?s)\nTB-BEGIN-` + id + `\n(.*?)TB-END-` + id + ` rc=(\d+)\n`)
	var m []string
	err := g.wait("running "+strconv.Quote(command), time.Until(deadline), func(out string) bool {
		m = re.FindStringSubmatch(out)
		return m != nil
	})
	if err != nil {
		return "", err
	}
	if m[2] != "0" {
		what := fmt.Sprintf("guest %s: %q", g.MAC, command)
		return m[1], withOutput(what, fmt.Errorf("exit status %s", m[2]), []byte(m[1]))
	}
	return m[1], nil
}
