package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapbridge/tapbridge/test/testbed"
)

// udhcpcScript is busybox's example simple.script, cut to the address and
// the default route: it flushes the interface on deconfig, which udhcpc
// runs whenever it starts.
const udhcpcScript = `#!/bin/sh
echo "$1 $interface $ip" >> "$(dirname "$0")/events"
case "$1" in
deconfig) ip -4 addr flush dev "$interface" ;;
bound|renew)
	ip -4 addr replace "$ip/$mask" dev "$interface"
	for r in $router; do ip -4 route replace default via "$r" dev "$interface"; break; done
	;;
esac
`

// TestUDHCPCHandover runs busybox udhcpc on the hypervisor's eth0. After
// 'tapbridge up' udhcpc runs on br0 and renews the same lease there (three
// renewals forced with SIGUSR1: busybox renews at half the lease, whatever
// T1 says, which is a minute at dnsmasq's shortest lease); after 'tapbridge
// down', the same on eth0. As docs/dhcp.md says, udhcpc's deconfig at start
// may flush the interface once; the test checks the address is back.
func TestUDHCPCHandover(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("needs busybox (Debian package busybox-static)")
	}
	lan := testbed.NewLAN(t, testbed.LANOptions{DHCP: true})
	hv, srv := lan.HV, lan.DHCPServers()[0]
	l := &uplinkLAN{router: lan.Router, hv: hv, runDir: t.TempDir()}
	hv.MustExec(t, "ip", "addr", "flush", "dev", "eth0", "scope", "global")
	mac := strings.TrimSpace(hv.MustExec(t, "cat", "/sys/class/net/eth0/address"))
	dir := t.TempDir()
	client := testbed.StartDHCPClient(t, hv, dir, udhcpcScript,
		"busybox", "udhcpc", "-f", "-i", "eth0", "-s", filepath.Join(dir, "script"), "-p", filepath.Join(dir, "pid"))
	// The udhcpc tapbridge started, found by its pid file.
	current := client.Current
	count := func(ev string) int { return strings.Count(client.Events(), ev+"\n") }
	waitUntil(t, 30*time.Second, "udhcpc's lease on eth0", func() bool { return strings.Contains(client.Events(), "bound eth0 ") })
	leases, err := srv.Leases()
	if err != nil || len(leases) != 1 {
		t.Fatalf("leases: %v %v", leases, err)
	}
	first := leases[0]
	ip := first.IP.String()
	acks := regexp.MustCompile(`DHCPACK\(veth-r\) (\S+) (\S+)`)
	phase := func(holder string, args ...string) {
		t.Helper()
		mark, bound := len(srv.Log()), count("bound "+holder+" "+ip)
		out := l.mustTapbridge(t, args...)
		if !strings.Contains(out, `udhcpc now renews the lease on "`+holder+`"`) {
			t.Errorf("tapbridge %s: %s", args[0], out)
		}
		waitUntil(t, 30*time.Second, "udhcpc bound on "+holder, func() bool { return count("bound "+holder+" "+ip) > bound })
		for i := 1; i <= 3; i++ {
			pid := current()
			if pid == 0 {
				t.Fatalf("no udhcpc after %s", args[0])
			}
			before := count("renew " + holder + " " + ip)
			if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, 30*time.Second, fmt.Sprintf("renewal %d on %s", i, holder), func() bool { return count("renew "+holder+" "+ip) > before })
		}
		var got []string
		for _, m := range acks.FindAllStringSubmatch(srv.Log()[mark:], -1) {
			got = append(got, m[1]+" "+m[2])
		}
		if len(got) < 4 {
			t.Errorf("after %s: %d ACKs, want a bind and three renewals", args[0], len(got))
		}
		for _, g := range got {
			if g != ip+" "+mac {
				t.Errorf("after %s: ACK for %q, want %q", args[0], g, ip+" "+mac)
			}
		}
		if addrs := hv.MustExec(t, "ip", "-o", "-4", "addr", "show", "dev", holder); !strings.Contains(addrs, " "+ip+"/24") {
			t.Errorf("after %s: %s lacks %s: %s", args[0], holder, ip, addrs)
		}
		ls, err := srv.Leases()
		if err != nil || len(ls) != 1 || ls[0].ClientID != first.ClientID || ls[0].IP != first.IP {
			t.Errorf("after %s: leases %+v (%v), want the one of %+v", args[0], ls, err, first)
		}
	}
	phase("br0", "up", "--bridge", "br0", "--uplink", "eth0")
	// A second up leaves the client where it is.
	pid := current()
	if out := l.mustTapbridge(t, "up", "--bridge", "br0", "--uplink", "eth0"); !strings.Contains(out, "nothing changed") || strings.Contains(out, "udhcpc now") || current() != pid {
		t.Errorf("a second up: %s (udhcpc pid %d, then %d)", out, pid, current())
	}
	phase("eth0", "down", "--bridge", "br0")
}
