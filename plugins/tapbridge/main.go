// Command tapbridge is the CNI plugin of type "tapbridge" when CNI_COMMAND
// is set, and the operator command line otherwise.
package main

import (
	"os"
	"runtime"

	"github.com/tapbridge/tapbridge/internal/cli"
)

func init() {
	// Netlink and namespace work must stay on one OS thread.
	runtime.LockOSThread()
}

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
