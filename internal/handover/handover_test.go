package handover

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRewrite(t *testing.T) {
	tests := []struct {
		name string
		argv string
		from string
		want string // "" when argv is no known client of from
		to   string
	}{
		{"ifupdown's dhclient", "/sbin/dhclient -4 -v -i -pf /run/dhclient.eth0.pid -lf /var/lib/dhcp/dhclient.eth0.leases -I -df /var/lib/dhcp/dhclient6.eth0.leases eth0", "eth0",
			"/sbin/dhclient -4 -v -i -pf /run/dhclient.eth0.pid -lf /var/lib/dhcp/dhclient.eth0.leases -I -df /var/lib/dhcp/dhclient6.eth0.leases br0", "br0"},
		{"dhclient whose pid file is named like the interface", "dhclient -pf eth0 eth0", "eth0", "dhclient -pf eth0 br0", "br0"},
		{"dhclient of another interface", "dhclient -d eth1", "eth0", "", "br0"},
		{"dhclient of two interfaces", "dhclient eth0 eth1", "eth0", "", "br0"},
		{"dhclient of every interface", "dhclient -d", "eth0", "", "br0"},
		{"udhcpc -i", "udhcpc -f -i eth0 -s /etc/udhcpc/default.script", "eth0", "udhcpc -f -i br0 -s /etc/udhcpc/default.script", "br0"},
		{"udhcpc -iIF", "udhcpc -ieth0 -f", "eth0", "udhcpc -ibr0 -f", "br0"},
		{"udhcpc --interface=", "udhcpc --interface=eth0", "eth0", "udhcpc --interface=br0", "br0"},
		{"udhcpc defaults to eth0", "udhcpc -f", "eth0", "udhcpc -f -i br0", "br0"},
		{"busybox udhcpc", "/bin/busybox udhcpc -i br0 -b", "br0", "/bin/busybox udhcpc -i eth0 -b", "eth0"},
		{"busybox something else", "/bin/busybox sleep eth0", "eth0", "", "br0"},
		{"not a DHCP client", "/usr/sbin/sshd -D eth0", "eth0", "", "br0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			argv := strings.Fields(tt.argv)
			name, args := program(argv)
			var got string
			if name != "" {
				if ifs := kinds[name](args); len(ifs) == 1 && ifs[0] == tt.from {
					got = strings.Join(rewrite(name, argv, tt.from, tt.to), " ")
				}
			}
			if got != tt.want {
				t.Errorf("(-want +got):\n%s", cmp.Diff(tt.want, got))
			}
		})
	}
}

// TestMove runs a stand-in DHCP client (sleep, called "dhclient", whose
// argument "1000" is the "interface") and moves it to "2000": the old one
// dies by SIGKILL, the new one runs the rewritten command line with the old
// environment and working directory. No network is touched.
func TestMove(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("needs sleep")
	}
	dir := t.TempDir()
	old := &exec.Cmd{Path: sleep, Args: []string{"dhclient", "1000"}, Env: []string{"LEASE_KEPT=yes"}, Dir: dir}
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = old.Process.Kill(); _ = old.Wait() })
	waitCmdline(t, old.Process.Pid)
	found, err := Find("1000")
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].PID != old.Process.Pid || found[0].Name != "dhclient" {
		t.Fatalf("Find: %+v, want pid %d", found, old.Process.Pid)
	}
	pid, err := Move(found[0], "2000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, 0, nil)
	})
	if err := old.Wait(); err == nil || old.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("the old client ended with %v, want SIGKILL", err)
	}
	if got := waitCmdline(t, pid); got != "dhclient 2000" {
		t.Errorf("new command line %q, want %q", got, "dhclient 2000")
	}
	env, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
	if !strings.Contains(string(env), "LEASE_KEPT=yes") {
		t.Errorf("new environment %q lacks LEASE_KEPT=yes", env)
	}
	if cwd, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "cwd")); cwd != dir {
		t.Errorf("new working directory %q, want %q", cwd, dir)
	}
	if again, err := Find("1000"); err != nil || len(again) != 0 {
		t.Errorf("after Move, Find(1000) = %+v, %v; want none", again, err)
	}
}

// TestFindUnmovable: a dhcpcd serving the interface is reported, not moved.
func TestFindUnmovable(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("needs sleep")
	}
	p := &exec.Cmd{Path: sleep, Args: []string{"dhcpcd", "3000"}}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Process.Kill(); _ = p.Wait() })
	waitCmdline(t, p.Process.Pid)
	movable, other, err := find("3000")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"dhcpcd (pid " + strconv.Itoa(p.Process.Pid) + ")"}
	if len(movable) != 0 || !cmp.Equal(other, want) {
		t.Errorf("find: movable %+v, other %q; want none and %q", movable, other, want)
	}
}

// waitCmdline waits until process pid shows its command line, and returns
// it with spaces between the arguments. exec.Cmd.Start returns once the
// kernel has closed the child's close-on-exec files, which happens before
// the new program's arguments are in place: until then /proc/PID/cmdline
// reads empty, and Find passes the process by as it would any process that
// is not (yet) a DHCP client.
func waitCmdline(t *testing.T, pid int) string {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		cmdline, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		if got := strings.ReplaceAll(strings.TrimSuffix(string(cmdline), "\x00"), "\x00", " "); got != "" {
			return got
		}
	}
	t.Fatalf("pid %d shows no command line after 5s", pid)
	return ""
}
