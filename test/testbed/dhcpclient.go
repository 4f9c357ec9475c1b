package testbed

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// DHCPClient is a DHCP client (ISC dhclient, busybox udhcpc) that a test
// runs in a namespace of the LAN, with a script that logs each call to the
// file events, and that `tapbridge up` and `down` restart on another
// interface: the client running now is found by its pid file.
type DHCPClient struct {
	// Dir holds the script, its log events and the pid file pid.
	Dir string
	pid int // the client the test started
}

// StartDHCPClient writes script to dir/script and runs argv in n; argv
// names dir/script as the client's script and dir/pid as its pid file, and
// the script appends a line a call to dir/events. Cleanup kills, by PID,
// the client running now when it is one tapbridge restarted, and the one
// the test started.
func StartDHCPClient(t TB, n *NetNS, dir, script string, argv ...string) *DHCPClient {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "script"), []byte(script), 0o755); err != nil {
		t.Fatalf("%v", err)
	}
	cmd := n.Command(argv[0], argv[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("%v", err)
	}
	waited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(waited) }()
	c := &DHCPClient{Dir: dir, pid: cmd.Process.Pid}
	t.Cleanup(func() {
		if pid := c.Current(); pid != 0 && pid != c.pid {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = cmd.Process.Kill()
		<-waited
	})
	return c
}

// Current returns the PID of the client running now, by its pid file, or
// 0: a PID whose command line does not name the pid file is not the
// client's.
func (c *DHCPClient) Current() int {
	pidFile := filepath.Join(c.Dir, "pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || !strings.Contains(string(cl), pidFile) {
		return 0
	}
	return pid
}

// Events returns what the script logged so far.
func (c *DHCPClient) Events() string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, "events"))
	return string(b)
}
