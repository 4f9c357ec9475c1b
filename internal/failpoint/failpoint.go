package failpoint

import (
	"os"
	"syscall"
)

// Hit kills the current process with SIGKILL, as a crash or an OOM kill
// would, when TAPBRIDGE_FAILPOINT names this step. Nothing runs after it: no
// deferred function, no cleanup.
func Hit(step string) {
	if fp := os.Getenv("TAPBRIDGE_FAILPOINT"); fp != "" && fp == step {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL cannot be caught; wait for it to land
	}
}
