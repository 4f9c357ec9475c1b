package testbed

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// process is a program the test bed started. It is stopped by its own PID
// only, never by name.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // cmd.Wait's result, set before done is closed
}

// startProcess starts cmd. The process gets SIGKILL if the thread that
// started it dies (Pdeathsig), so a test binary that is killed outright does
// not leave it behind; stop is still the normal way out. Since that is the
// thread's death, not the process's, never start one from a goroutine that
// locks its thread and exits (such as inside NetNS.Do).
func startProcess(name string, cmd *exec.Cmd) (*process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	// A grandchild that keeps stdout open must not block Wait forever.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// pid returns the process ID.
func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then sends SIGKILL and waits again.
func (p *process) stop(grace time.Duration) error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stopping %s (pid %d): %w", p.name, p.pid(), err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("killing %s (pid %d): %w", p.name, p.pid(), err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (pid %d) still runs 5s after SIGKILL", p.name, p.pid())
	}
}

// logBuffer is an io.Writer that keeps everything written to it, safe for
// concurrent use, and optionally copies it to a file.
type logBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	file *os.File
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.file != nil {
		_, _ = b.file.Write(p)
	}
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// poll calls cond every 20 ms until it returns true or an error, the
// deadline passes, or done is closed.
func poll(timeout time.Duration, done <-chan struct{}, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout * slowdown())
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if ok || err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return ErrTimeout
		}
		select {
		case <-done:
			// One last look: the process may have said it on its way out.
			if ok, err := cond(); ok || err != nil {
				return err
			}
			return ErrExited
		case <-tick.C:
		}
	}
}

// slowdown stretches the test bed's waits inside the kernel test guest
// (test/kernel sets TAPBRIDGE_KERNEL_GUEST), where TCG runs everything
// about ten times slower: dnsmasq alone can take seconds to start there.
func slowdown() time.Duration {
	if os.Getenv("TAPBRIDGE_KERNEL_GUEST") != "" {
		return 10
	}
	return 1
}

var (
	// ErrTimeout matches a wait that ran out of time.
	ErrTimeout = errors.New("timed out")
	// ErrExited matches a wait that ended because the process exited.
	ErrExited = errors.New("process exited")
)
