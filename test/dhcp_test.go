package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapbridge/tapbridge/test/testbed"
)

// dhclientScript does to the address and the default route what Debian's
// dhclient-script does (address with the lease's lifetimes, flushed on
// EXPIRE, FAIL, RELEASE and STOP), without touching /etc, and logs every
// call.
const dhclientScript = `#!/bin/sh
echo "$reason $interface $new_ip_address" >> "$(dirname "$0")/events"
case "$reason" in
BOUND|RENEW|REBIND|REBOOT)
	if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then
		ip -4 addr flush dev "$interface" label "$interface"
	fi
	ip -4 addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" label "$interface" \
		valid_lft "$new_dhcp_lease_time" preferred_lft "$new_dhcp_lease_time"
	for r in $new_routers; do ip -4 route replace default via "$r" dev "$interface"; break; done
	;;
EXPIRE|FAIL|RELEASE|STOP)
	ip -4 addr flush dev "$interface" label "$interface"
	;;
esac
`

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitUntil checks cond every 200 ms until it holds or timeout passes.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting %s for %s: timed out", timeout, what)
		}
		<-tick.C
	}
}

// TestDHCPUplinkHandover runs ISC dhclient (Debian's DHCP client for
// ifupdown) on the hypervisor's eth0 with a 2-minute lease and T1 = 20 s
// from the router's dnsmasq, which also sends IPv6 router advertisements.
// After 'tapbridge up' the same lease (same MAC, client identifier and
// address) is renewed at least three times on br0 and the address is never
// deleted from br0; SLAAC's address and the RA-learned default route are on
// br0, none is left on eth0. After 'tapbridge down', the same on eth0.
// It takes about 2.5 minutes: it waits for real renewals.
func TestDHCPUplinkHandover(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: waits for six real DHCP renewals (about 105 s)")
	}
	needRoot(t)
	dhclient, err := exec.LookPath("dhclient")
	if err != nil {
		t.Skip("needs dhclient (Debian package isc-dhcp-client; make test installs it)")
	}
	lan := testbed.NewLAN(t, testbed.LANOptions{DHCP: true, DHCPConfig: testbed.DHCPConfig{
		Lease: 2 * time.Minute, T1: 20 * time.Second, T2: 90 * time.Second, RA: true,
	}})
	hv, srv := lan.HV, lan.DHCPServers()[0]
	runDir := t.TempDir()
	l := &uplinkLAN{router: lan.Router, hv: hv, runDir: runDir}
	// The host gets its address from DHCP only: no static one.
	hv.MustExec(t, "ip", "addr", "flush", "dev", "eth0", "scope", "global")
	mac := strings.TrimSpace(hv.MustExec(t, "cat", "/sys/class/net/eth0/address"))

	dir := t.TempDir()
	conf := filepath.Join(dir, "dhclient.conf")
	if err := os.WriteFile(conf, []byte("send dhcp-client-identifier \"hv-host\";\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A copy: Debian's AppArmor profile sbin.dhclient confines
	// /usr/sbin/dhclient to /etc/dhcp/dhclient-script and its own lease and
	// pid paths, and attaches by path.
	bin, err := os.ReadFile(dhclient)
	if err != nil {
		t.Fatal(err)
	}
	dhclient = filepath.Join(dir, "dhclient")
	if err := os.WriteFile(dhclient, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	// tapbridge starts the later clients; they write the same pid file.
	client := testbed.StartDHCPClient(t, hv, dir, dhclientScript,
		dhclient, "-4", "-d", "-cf", conf, "-lf", filepath.Join(dir, "leases"), "-pf", filepath.Join(dir, "pid"), "-sf", filepath.Join(dir, "script"), "eth0")
	readEvents := func() []string { return strings.Split(strings.TrimSpace(client.Events()), "\n") }
	waitUntil(t, 30*time.Second, "dhclient's first lease on eth0", func() bool {
		return strings.Contains(strings.Join(readEvents(), "\n"), "BOUND eth0 ")
	})
	leases, err := srv.Leases()
	if err != nil || len(leases) != 1 {
		t.Fatalf("leases: %v %v", leases, err)
	}
	first := leases[0]
	if first.ClientID == "" || first.MAC.String() != mac {
		t.Fatalf("first lease %+v: want MAC %s and a client identifier", first, mac)
	}
	ip := first.IP.String()

	mon := hv.Command("ip", "-o", "monitor", "address")
	var monOut lockedBuffer
	mon.Stdout = &monOut
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mon.Process.Kill(); _ = mon.Wait() })

	acks := regexp.MustCompile(`DHCPACK\(veth-r\) (\S+) (\S+)`)
	phase := func(holder, other, verb string) {
		t.Helper()
		mark, evMark := len(srv.Log()), len(readEvents())
		monMark := len(monOut.String())
		start := time.Now()
		args := []string{verb, "--bridge", "br0"}
		if verb == "up" {
			args = append(args, "--uplink", "eth0")
		}
		out := l.mustTapbridge(t, args...)
		t.Logf("tapbridge %s: %s", verb, strings.TrimSpace(out))
		// The bind on holder, then three renewals.
		var got []string
		waitUntil(t, 100*time.Second, "a bind and three renewals on "+holder, func() bool {
			got = nil
			for _, m := range acks.FindAllStringSubmatch(srv.Log()[mark:], -1) {
				got = append(got, m[1]+" "+m[2])
			}
			return len(got) >= 4
		})
		t.Logf("%s: %d ACKs in %s", holder, len(got), time.Since(start).Round(time.Second))
		for _, g := range got {
			if g != ip+" "+mac {
				t.Errorf("after %s: ACK for %q, want %q", verb, g, ip+" "+mac)
			}
		}
		for _, ev := range readEvents()[evMark:] {
			f := strings.Fields(ev)
			if len(f) < 2 || f[1] != holder || f[0] == "EXPIRE" || f[0] == "FAIL" || f[0] == "RELEASE" || f[0] == "STOP" {
				t.Errorf("after %s: dhclient script called with %q, want only binds and renewals on %s", verb, ev, holder)
			}
		}
		for _, line := range strings.Split(monOut.String()[monMark:], "\n") {
			if strings.HasPrefix(line, "Deleted") && strings.Contains(line, " "+holder+" ") && strings.Contains(line, ip+"/") {
				t.Errorf("after %s: the address was deleted from %s: %s", verb, holder, line)
			}
		}
		addrs := hv.MustExec(t, "ip", "-o", "addr", "show", "dev", holder)
		if !strings.Contains(addrs, " "+ip+"/24") {
			t.Errorf("after %s: %s lacks %s:\n%s", verb, holder, ip, addrs)
		}
		// The SLAAC address keeps its finite lifetime (a permanent copy
		// would never follow a renumbering).
		if !regexp.MustCompile(`inet6 2001:db8::\S+/64 scope global .*dynamic .*valid_lft \d+sec`).MatchString(addrs) {
			t.Errorf("after %s: %s lacks its SLAAC address:\n%s", verb, holder, addrs)
		}
		if r := hv.MustExec(t, "ip", "-6", "route", "show", "default", "dev", holder, "proto", "ra"); !strings.Contains(r, "via fe80::") {
			t.Errorf("after %s: no RA-learned default route on %s: %q", verb, holder, r)
		}
		if r, err := hv.Exec("ip", "-6", "route", "show", "default", "dev", other, "proto", "ra"); err == nil && strings.TrimSpace(r) != "" {
			t.Errorf("after %s: an RA default route is left on %s: %q", verb, other, r)
		}
		ls, err := srv.Leases()
		if err != nil || len(ls) != 1 || ls[0].ClientID != first.ClientID || ls[0].IP != first.IP || ls[0].MAC.String() != mac {
			t.Errorf("after %s: leases %+v (%v), want the one of %+v", verb, ls, err, first)
		}
	}
	// SLAAC on eth0 first, so the migration has something to carry.
	waitUntil(t, 30*time.Second, "SLAAC and an RA default route on eth0", func() bool {
		r, _ := hv.Exec("ip", "-6", "route", "show", "default", "dev", "eth0", "proto", "ra")
		return strings.Contains(r, "via fe80::")
	})
	phase("br0", "eth0", "up")
	phase("eth0", "br0", "down")
}
