package testbed

import (
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

// Daemon is a long-running program that a test starts and then talks to,
// such as containerd or libvirtd in a mount namespace of its own: its
// output is kept for the failure message, and it is stopped by its PID.
type Daemon struct {
	name string
	p    *process
	log  logBuffer
	stop sync.Once
}

// StartDaemon starts cmd, whose output it collects, as the daemon called
// name. Cleanup stops it (Stop) and, when the test failed, logs its output;
// a cleanup the caller registers afterwards runs before that, while the
// daemon still answers.
func StartDaemon(t TB, name string, cmd *exec.Cmd) *Daemon {
	t.Helper()
	d := &Daemon{name: name}
	cmd.Stdout, cmd.Stderr = &d.log, &d.log
	p, err := startProcess(name, cmd)
	if err != nil {
		t.Fatalf("%v", err)
	}
	d.p = p
	t.Cleanup(func() {
		d.Stop(t)
		if t.Failed() {
			t.Logf("%s's output:\n%s", name, d.log.String())
		}
	})
	return d
}

// WaitReady calls ready until it returns nil; the test fails when the
// daemon exits first, or 30 s pass.
func (d *Daemon) WaitReady(t TB, ready func() error) {
	t.Helper()
	var last error
	err := poll(30*time.Second, d.p.done, func() (bool, error) {
		last = ready()
		return last == nil, nil
	})
	switch {
	case errors.Is(err, ErrExited):
		t.Fatalf("%s exited: %v\n%s", d.name, d.p.err, d.log.String())
	case err != nil:
		t.Fatalf("%s is not ready after 30s: %v\n%s", d.name, last, d.log.String())
	}
}

// PID is the daemon's process ID.
func (d *Daemon) PID() int { return d.p.pid() }

// Enter returns a command that runs args in the daemon's mount and network
// namespaces (nsenter), with env as its whole environment.
func (d *Daemon) Enter(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(d.PID()), "-m", "-n", "--"}, args...)...)
	cmd.Env = env
	return cmd
}

// Root is path inside the daemon's mount namespace, seen from the test.
func (d *Daemon) Root(path string) string {
	return fmt.Sprintf("/proc/%d/root%s", d.PID(), path)
}

// Stop stops the daemon by its PID: SIGTERM, and SIGKILL after 10 s. Only
// the first call acts.
func (d *Daemon) Stop(t TB) {
	d.stop.Do(func() {
		if err := d.p.stop(10 * time.Second); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
}
