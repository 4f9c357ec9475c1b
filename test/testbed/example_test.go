package testbed_test

import (
	"fmt"
	"os"
	"time"

	"github.com/tapbridge/tapbridge/test/testbed"
)

// A program that is not a test (make demo) uses a Session as its TB: Close,
// a fatal error, or Ctrl-C releases everything. The guest attaches through
// tapbridge's QEMU hooks, run by QEMU inside the hypervisor namespace.
func ExampleNewSession() {
	s := testbed.NewSession(os.Stderr)
	defer s.Close()

	lan := testbed.NewLAN(s, testbed.LANOptions{DHCP: true})
	lan.HV.MustExec(s, "bin/tapbridge", "up", "--bridge", "br0", "--uplink", "eth0")
	g := testbed.StartGuest(s, testbed.GuestOpts{
		NetNS:  lan.HV,
		Netdev: "tap,ifname=tap0,script=bin/qemu-ifup,downscript=bin/qemu-ifdown",
		Env:    []string{"TAPBRIDGE_CONF=conf/tapbridge.conf"},
	})
	ip, err := g.WaitLease(60 * time.Second)
	if err != nil {
		s.Fatalf("%v", err)
	}
	if err := g.WaitReady(10 * time.Second); err != nil {
		s.Fatalf("%v", err)
	}
	page, err := lan.Router.Fetch("http://" + ip.String() + "/")
	if err != nil {
		s.Fatalf("%v", err)
	}
	fmt.Printf("guest %s leased %s and serves %q\n", g.MAC, ip, page)
}
