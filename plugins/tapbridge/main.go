// Command tapbridge is the CNI plugin of type "tapbridge" when CNI_COMMAND
// is set, and the operator command line otherwise.
package main

import (
	"os"
	"runtime"

	"github.com/tapbridge/tapbridge/internal/cli"
	"github.com/tapbridge/tapbridge/internal/cniplugin"
)

func init() {
	// Netlink and namespace work must stay on one OS thread.
	runtime.LockOSThread()
}

func main() {
	if os.Getenv("CNI_COMMAND") != "" {
		cniplugin.Main("CNI plugin tapbridge " + cli.Version)
		return
	}
	os.Exit(cli.Main(os.Args[1:]))
}
