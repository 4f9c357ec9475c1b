package testbed_test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/tapbridge/tapbridge/test/testbed"
)

// TestSettle: right after the LAN is made and a TAP nobody holds is set
// up, a dump may still show the state before the kernel's linkwatch ran
// (eth0 "NO-CARRIER" without a link-local address, the TAP "UNKNOWN");
// once Settle returns, the dumps show what a quiet host shows: eth0 up
// with its link-local address, the TAP without a carrier. 300 TAPs made
// first in another namespace hold linkwatch up for about 3 s (it handles
// 100 links a second), as a test of a full bridge does for every test
// running beside it.
func TestSettle(t *testing.T) {
	needLAN(t)
	busy := testbed.NewNetNS(t)
	var b strings.Builder
	for i := range 300 {
		fmt.Fprintf(&b, "tuntap add dev f%d mode tap\n", i)
	}
	cmd := exec.Command("ip", "-n", busy.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("making 300 TAPs: %v\n%s", err, out)
	}
	lan := testbed.NewLAN(t, testbed.LANOptions{})
	hv := lan.HV
	hv.MustExec(t, "ip", "tuntap", "add", "dev", "dum0", "mode", "tap")
	hv.MustExec(t, "ip", "link", "set", "dum0", "up")
	hv.Settle(t)
	links := hv.MustExec(t, "ip", "-o", "link")
	addrs := hv.MustExec(t, "ip", "-o", "-6", "addr")
	for _, l := range strings.Split(links, "\n") {
		switch {
		case strings.Contains(l, " eth0@"):
			if strings.Contains(l, "NO-CARRIER") || !strings.Contains(l, "state UP ") {
				t.Errorf("eth0 after Settle, want it up with its carrier:\n%s", l)
			}
		case strings.Contains(l, " dum0:"):
			if !strings.Contains(l, "NO-CARRIER") || !strings.Contains(l, "state DOWN ") {
				t.Errorf("dum0 after Settle, want it without carrier:\n%s", l)
			}
		}
	}
	if !strings.Contains(addrs, "eth0    inet6 fe80::") || strings.Contains(addrs, "tentative") {
		t.Errorf("IPv6 addresses after Settle, want eth0's link-local address and nothing tentative:\n%s", addrs)
	}
}
