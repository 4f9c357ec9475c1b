package failpoint

import (
	"os"
	"strconv"
	"syscall"
	"time"
)

// Hit kills the current process with SIGKILL, as a crash or an OOM kill
// would, when TAPBRIDGE_FAILPOINT names this step. Nothing runs after it: no
// deferred function, no cleanup.
//
// When TAPBRIDGE_FAILPOINT_TRACE names a file, Hit first appends a line
// "step unix-nanoseconds" to it, so that a test can tell when each step
// was passed (which packets crossed the wire during which step, say).
func Hit(step string) {
	if trace := os.Getenv("TAPBRIDGE_FAILPOINT_TRACE"); trace != "" {
		if f, err := os.OpenFile(trace, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
			_, _ = f.WriteString(step + " " + strconv.FormatInt(time.Now().UnixNano(), 10) + "\n")
			f.Close()
		}
	}
	if fp := os.Getenv("TAPBRIDGE_FAILPOINT"); fp != "" && fp == step {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL cannot be caught; wait for it to land
	}
}
