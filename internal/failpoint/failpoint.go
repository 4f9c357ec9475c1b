package failpoint

import (
	"os"
	"strconv"
	"syscall"
	"time"
)

// The variables that turn fault injection on. Only tests set them.
const (
	// EnvKill names the step at which Hit kills the process.
	EnvKill = "TAPBRIDGE_FAILPOINT"
	// EnvTrace names a file Hit notes each step in.
	EnvTrace = "TAPBRIDGE_FAILPOINT_TRACE"
)

// Hit kills the current process with SIGKILL, as a crash or an OOM kill
// would, when TAPBRIDGE_FAILPOINT names this step. Nothing runs after it: no
// deferred function, no cleanup.
//
// When TAPBRIDGE_FAILPOINT_TRACE names a file, Hit first appends a line
// "step unix-nanoseconds" to it, so that a test can tell when each step
// was passed (which packets crossed the wire during which step, say).
func Hit(step string) {
	if trace := os.Getenv(EnvTrace); trace != "" {
		if f, err := os.OpenFile(trace, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
			_, _ = f.WriteString(step + " " + strconv.FormatInt(time.Now().UnixNano(), 10) + "\n")
			f.Close()
		}
	}
	if fp := os.Getenv(EnvKill); fp != "" && fp == step {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL cannot be caught; wait for it to land
	}
}

// Disable turns fault injection off for the rest of the process. A
// privileged program that an unprivileged caller runs (the setuid bridge
// helper) calls it first: the caller must neither crash it mid-way nor
// make it create or append to a file of the caller's choosing as root.
func Disable() {
	_ = os.Unsetenv(EnvKill)
	_ = os.Unsetenv(EnvTrace)
}
