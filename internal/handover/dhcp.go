package handover

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// procRoot is where processes are looked up; tests point it elsewhere.
var procRoot = "/proc"

// Client is a DHCP client process that serves one interface.
type Client struct {
	PID   int
	Name  string   // "dhclient" or "udhcpc"
	Argv  []string // its command line
	Iface string   // the interface it serves
	exe   string
	env   []string
	dir   string
	// cgroup is its cgroup v2 path, as /proc/PID/cgroup gives it.
	cgroup string
}

// cgroupRoot is where the cgroup v2 hierarchy is mounted.
var cgroupRoot = "/sys/fs/cgroup"

// kinds maps a client's program name to how its command line names the
// interface it serves.
var kinds = map[string]func(argv []string) []string{
	"dhclient": dhclientIfaces,
	"udhcpc":   udhcpcIfaces,
}

// dhclientIfaces returns the interfaces of a dhclient command line: the
// arguments that are neither options nor option values.
func dhclientIfaces(argv []string) []string {
	// Options of ISC dhclient 4.4 that take a value.
	withValue := map[string]bool{
		"-p": true, "-s": true, "-g": true, "-e": true, "-cf": true, "-df": true,
		"-lf": true, "-pf": true, "-sf": true, "-sl": true, "-timeout": true,
		"--prefix-len-hint": true, "--decline-wait-time": true, "--dad-wait-time": true,
		"--address-prefix-len": true, "-B": false,
	}
	var out []string
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		switch {
		case withValue[a]:
			i++
		case strings.HasPrefix(a, "-"):
		default:
			out = append(out, a)
		}
	}
	return out
}

// udhcpcIfaces returns the interface of a busybox udhcpc command line: the
// value of -i (or --interface), eth0 when there is none.
func udhcpcIfaces(argv []string) []string {
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		switch {
		case (a == "-i" || a == "--interface") && i+1 < len(argv):
			return []string{argv[i+1]}
		case strings.HasPrefix(a, "--interface="):
			return []string{strings.TrimPrefix(a, "--interface=")}
		case strings.HasPrefix(a, "-i") && len(a) > 2 && !strings.HasPrefix(a, "--"):
			return []string{a[2:]}
		}
	}
	return []string{"eth0"}
}

// rewrite returns argv with the interface from replaced by to.
func rewrite(name string, argv []string, from, to string) []string {
	out := slices.Clone(argv)
	if name == "udhcpc" {
		for i := 1; i < len(out); i++ {
			a := out[i]
			switch {
			case (a == "-i" || a == "--interface") && i+1 < len(out):
				out[i+1] = to
				return out
			case strings.HasPrefix(a, "--interface="):
				out[i] = "--interface=" + to
				return out
			case strings.HasPrefix(a, "-i") && len(a) > 2 && !strings.HasPrefix(a, "--"):
				out[i] = "-i" + to
				return out
			}
		}
		return append(out, "-i", to) // udhcpc's default is eth0
	}
	for i := 1; i < len(out); i++ {
		if out[i] == from && slices.Contains(dhclientIfaces(out[:i+1]), from) {
			out[i] = to
		}
	}
	return out
}

// program returns which known DHCP client argv runs, or "".
func program(argv []string) (string, []string) {
	if len(argv) == 0 {
		return "", nil
	}
	base := filepath.Base(argv[0])
	if base == "busybox" && len(argv) > 1 {
		// "busybox udhcpc ...": the applet is the first argument.
		if argv[1] == "udhcpc" {
			return "udhcpc", argv[1:]
		}
		return "", nil
	}
	if _, ok := kinds[base]; ok {
		return base, argv
	}
	return "", nil
}

// unmovable are DHCP clients Find recognises but Move does not restart:
// their command lines are not parsed, so one naming the interface anywhere
// is reported.
var unmovable = map[string]bool{"dhcpcd": true, "pump": true}

// Find returns the DHCP clients of the caller's network namespace that
// serve iface.
func Find(iface string) ([]Client, error) {
	cs, _, err := find(iface)
	return cs, err
}

// find returns the clients Move can restart, and the "NAME (pid N)" of
// those it cannot.
func find(iface string) ([]Client, []string, error) {
	self, err := netnsOf("thread-self")
	if err != nil {
		return nil, nil, fmt.Errorf("finding DHCP clients: %w", err)
	}
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, nil, fmt.Errorf("finding DHCP clients: %w", err)
	}
	var out []Client
	var other []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		c, ok := client(pid)
		name := ""
		switch {
		case ok && c.Iface == iface:
		case !ok:
			if name = unmovableOf(pid, iface); name == "" {
				continue
			}
		default:
			continue
		}
		if ns, err := netnsOf(e.Name()); err != nil || ns != self {
			continue // another namespace's client, or gone
		}
		if name != "" {
			other = append(other, fmt.Sprintf("%s (pid %d)", name, pid))
			continue
		}
		out = append(out, c)
	}
	return out, other, nil
}

// unmovableOf returns the name of an unmovable client pid runs when its
// command line names iface, else "".
func unmovableOf(pid int, iface string) string {
	raw, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cmdline"))
	if err != nil || len(raw) == 0 {
		return ""
	}
	argv := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
	if name := filepath.Base(argv[0]); unmovable[name] && slices.Contains(argv[1:], iface) {
		return name
	}
	return ""
}

// client reads process pid and says whether it is a known DHCP client
// serving a single interface.
func client(pid int) (Client, bool) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	raw, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil || len(raw) == 0 {
		return Client{}, false
	}
	argv := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
	name, args := program(argv)
	if name == "" {
		return Client{}, false
	}
	ifaces := kinds[name](args)
	if len(ifaces) != 1 {
		// A client serving several interfaces (or all of them) is not one
		// this package can split.
		return Client{}, false
	}
	c := Client{PID: pid, Name: name, Argv: argv, Iface: ifaces[0]}
	c.exe, _ = os.Readlink(filepath.Join(dir, "exe"))
	c.dir, _ = os.Readlink(filepath.Join(dir, "cwd"))
	if cg, err := os.ReadFile(filepath.Join(dir, "cgroup")); err == nil {
		for _, line := range strings.Split(string(cg), "\n") {
			if p, ok := strings.CutPrefix(line, "0::"); ok {
				c.cgroup = p
			}
		}
	}
	if env, err := os.ReadFile(filepath.Join(dir, "environ")); err == nil && len(env) > 0 {
		c.env = strings.Split(strings.TrimSuffix(string(env), "\x00"), "\x00")
	}
	return c, true
}

// netnsOf returns the network namespace of a /proc entry ("thread-self" or
// a PID), as the target of its ns/net link.
func netnsOf(entry string) (string, error) {
	return os.Readlink(filepath.Join(procRoot, entry, "ns", "net"))
}

// Move stops c without letting it release its lease or deconfigure its
// interface, and starts it again serving to. It returns the new process's
// PID.
func Move(c Client, to string) (int, error) {
	fd, err := unix.PidfdOpen(c.PID, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return 0, fmt.Errorf("%s (pid %d) on %q: gone before it could be moved", c.Name, c.PID, c.Iface)
		}
		return 0, fmt.Errorf("%s (pid %d) on %q: %w", c.Name, c.PID, c.Iface, err)
	}
	defer unix.Close(fd)
	// With the pidfd held, the PID cannot be recycled: check it is still
	// the process that was found.
	if now, ok := client(c.PID); !ok || !slices.Equal(now.Argv, c.Argv) {
		return 0, fmt.Errorf("%s (pid %d) on %q: gone before it could be moved", c.Name, c.PID, c.Iface)
	}
	exe := c.exe
	if exe == "" || strings.HasSuffix(exe, " (deleted)") {
		// Upgraded since it started: run what its name runs now.
		if exe, err = exec.LookPath(c.Argv[0]); err != nil {
			return 0, fmt.Errorf("%s (pid %d) on %q: finding its program: %w", c.Name, c.PID, c.Iface, err)
		}
	}
	// The new client starts in the old one's cgroup (its supervisor's: the
	// unit that ran ifup, say), not in tapbridge's, where systemd would
	// kill it with the rest of tapbridge.service. Opened before the kill:
	// an emptied unit cgroup may be removed.
	cgFD := -1
	if c.cgroup != "" {
		if fd, err := unix.Open(filepath.Join(cgroupRoot, c.cgroup), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
			cgFD = fd
			defer unix.Close(cgFD)
		}
	}
	// SIGKILL, not SIGTERM: on SIGTERM udhcpc -R and dhclient -r release
	// the lease, and a client's exit script flushes its interface.
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return 0, fmt.Errorf("stopping %s (pid %d) on %q: %w", c.Name, c.PID, c.Iface, err)
	}
	// The pidfd turns readable when the process has exited.
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(pfd, int((5 * time.Second).Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("stopping %s (pid %d) on %q: %w", c.Name, c.PID, c.Iface, err)
		}
		if n == 0 {
			return 0, fmt.Errorf("stopping %s (pid %d) on %q: still running 5s after SIGKILL", c.Name, c.PID, c.Iface)
		}
		break
	}
	dir := c.dir
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		dir = "/" // its working directory is gone: a client must still start
	}
	name, _ := program(c.Argv)
	start := func(cgFD int) (*exec.Cmd, error) {
		cmd := &exec.Cmd{
			Path: exe,
			Args: rewrite(name, c.Argv, c.Iface, to),
			Env:  c.env,
			Dir:  dir,
			// Its own session: it outlives tapbridge, as it outlived
			// whoever started it.
			SysProcAttr: &syscall.SysProcAttr{Setsid: true, UseCgroupFD: cgFD >= 0, CgroupFD: cgFD},
		}
		return cmd, cmd.Start()
	}
	cmd, err := start(cgFD)
	if err != nil && cgFD >= 0 {
		// The cgroup is gone with the old client, or takes no process
		// (a cgroup with children and controllers): start it in ours.
		cmd, err = start(-1)
	}
	if err != nil {
		return 0, fmt.Errorf("starting %s on %q again: %w (it was stopped on %q: start it by hand)", c.Name, to, err, c.Iface)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	waitArgs(pid)
	return pid, nil
}

// waitArgs waits (up to a second) until the process pid shows its command
// line. exec.Cmd.Start returns once the kernel has closed the child's
// close-on-exec files, a moment before the new program's arguments are in
// place: until then /proc/PID/cmdline reads empty, and the client would
// not be found as one (by a down right after the up that moved it). A
// client that died at once (a zombie's command line reads empty too) is
// not waited for.
func waitArgs(pid int) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if b, err := os.ReadFile(filepath.Join(dir, "cmdline")); err != nil || len(b) > 0 {
			return // gone, or shows its arguments
		}
		// /proc/PID/stat: "PID (COMM) STATE ...", COMM may hold anything.
		if st, err := os.ReadFile(filepath.Join(dir, "stat")); err != nil || strings.HasPrefix(string(st[strings.LastIndexByte(string(st), ')')+1:]), " Z") {
			return
		}
	}
}
