// Command qemu-ifup is tapbridge's QEMU front end. One binary, three names:
//
//	qemu-ifup IFNAME                      -netdev tap,script=...
//	qemu-ifdown IFNAME                    -netdev tap,downscript=...
//	tapbridge-bridge-helper --br=BR --fd=N  -netdev bridge,helper=...
//
// (the helper is also recognised by its flags). See docs/qemu.md.
package main

import (
	"os"
	"runtime"

	"github.com/tapbridge/tapbridge/internal/qemuhook"
)

func init() {
	// Netlink work stays on one OS thread; the helper also drops its
	// capabilities from this thread (and, in a cgo-free build, all others).
	runtime.LockOSThread()
}

func main() {
	os.Exit(qemuhook.Main(os.Args, os.Stderr))
}
