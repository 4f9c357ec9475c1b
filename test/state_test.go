package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/test/testbed"
)

// Tests of issue 9: state is evidence, not truth. A journal is acted on
// only when it describes the live host; `down` moves back what is live;
// locks are per kind, bounded and never held by a stopped caller; a crash
// anywhere leaves nothing a re-run cannot finish.

// writeConf writes a tapbridge configuration into a file of the test and
// returns its path.
func writeConf(t *testing.T, json string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tapbridge.conf")
	if err := os.WriteFile(p, []byte(json), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const uplinkConf = `{"cniVersion": "1.0.0", "name": "lan", "type": "tapbridge", "bridge": "br0", "uplink": "eth0"}`

// setAside lists the journals of bridge br set aside in runDir.
func setAside(t *testing.T, runDir, br string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(runDir, "uplink", br+".json.stale-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestJournalOfAnotherHostIsSetAside: a journal that describes another
// network namespace (the state directory is shared, as /run is by every
// namespace of a host) or another uplink device of the same name is never
// replayed: it is set aside with one line saying why, and up takes a
// fresh snapshot of what is live.
func TestJournalOfAnotherHostIsSetAside(t *testing.T) {
	t.Run("another network namespace", func(t *testing.T) {
		t.Parallel()
		a, b := newUplinkLAN(t), newUplinkLAN(t)
		b.runDir = a.runDir
		before := b.dump(t)
		a.mustTapbridge(t, "up", "--uplink", "eth0")
		out := b.mustTapbridge(t, "up", "--uplink", "eth0")
		if !strings.Contains(out, "set aside") || !strings.Contains(out, "another network namespace") {
			t.Errorf("up in the second namespace said %q, want the journal set aside naming the other namespace", out)
		}
		b.assertMigrated(t) // br0 has b's eth0's MAC, not a's
		if len(setAside(t, b.runDir, "br0")) != 1 {
			t.Errorf("set-aside journals: %v, want 1", setAside(t, b.runDir, "br0"))
		}
		// The journal is b's now, and b is alive: a's down refuses and
		// leaves it to b.
		if out, err := a.tapbridge(nil, "down"); err == nil || !strings.Contains(out, "another network namespace") || !strings.Contains(out, "nothing changed") {
			t.Errorf("down in the first namespace: %v, said %q; want a refusal naming the other namespace", err, out)
		}
		b.mustTapbridge(t, "down")
		b.assertState(t, before)
	})
	t.Run("uplink replaced by another device", func(t *testing.T) {
		t.Parallel()
		l := newUplinkLAN(t)
		// A TAP: an Ethernet device that needs no kernel module but tun.
		l.ip(t, "tuntap", "add", "dev", "dum0", "mode", "tap")
		l.ip(t, "addr", "add", "198.51.100.5/24", "dev", "dum0")
		l.ip(t, "link", "set", "dum0", "up")
		out, err := l.tapbridge([]string{"TAPBRIDGE_FAILPOINT=up:journal"}, "up", "--bridge", "br9", "--uplink", "dum0", "--no-probe")
		assertKilled(t, err, out)
		l.ip(t, "link", "del", "dum0")
		l.ip(t, "tuntap", "add", "dev", "dum0", "mode", "tap")
		l.ip(t, "addr", "add", "198.51.100.6/24", "dev", "dum0")
		l.ip(t, "link", "set", "dum0", "up")
		before := l.dump(t)
		out = l.mustTapbridge(t, "up", "--bridge", "br9", "--uplink", "dum0", "--no-probe")
		if !strings.Contains(out, "set aside") || !strings.Contains(out, `"dum0" is now another device (ifindex`) {
			t.Errorf("up said %q, want the journal set aside naming the new device", out)
		}
		br := l.ip(t, "addr", "show", "dev", "br9")
		if !strings.Contains(br, "198.51.100.6/24") || strings.Contains(br, "198.51.100.5") {
			t.Errorf("br9 after up, want the live 198.51.100.6 and not the old device's .5:\n%s", br)
		}
		l.mustTapbridge(t, "down", "--bridge", "br9")
		l.assertState(t, before)
	})
}

// TestAttachDoesNotReplayOverAdminChanges: after up, the admin takes eth0
// out of br0, deletes br0, gives eth0 198.51.100.10/24 and a new default
// route. The next VM start must not re-create br0 with the old
// 192.0.2.10 and .11: it sets the journal aside and moves what is live now.
func TestAttachDoesNotReplayOverAdminChanges(t *testing.T) {
	t.Parallel()
	l := newUplinkLAN(t)
	l.router.MustExec(t, "ip", "addr", "add", "198.51.100.1/24", "dev", "veth-r")
	conf := writeConf(t, uplinkConf)
	l.mustTapbridge(t, "up", "--uplink", "eth0")
	l.ip(t, "link", "set", "eth0", "nomaster")
	l.ip(t, "link", "del", "br0")
	l.ip(t, "addr", "add", "198.51.100.10/24", "dev", "eth0")
	l.ip(t, "route", "replace", "default", "via", "198.51.100.1", "dev", "eth0")
	admin := l.dump(t)

	out := l.mustTapbridge(t, "tap", "add", "t0", "--config", conf)
	if !strings.Contains(out, `journal of bridge "br0" set aside`) || !strings.Contains(out, "no longer matches the live state") {
		t.Errorf("tap add said %q, want one line reporting the journal set aside", out)
	}
	br := l.ip(t, "addr", "show", "dev", "br0")
	if !strings.Contains(br, "inet 198.51.100.10/24") || strings.Contains(br, "192.0.2.1") {
		t.Errorf("br0 after tap add, want the admin's 198.51.100.10 and none of the old addresses:\n%s", br)
	}
	if eth := l.ip(t, "addr", "show", "dev", "eth0"); strings.Contains(eth, "inet ") || !strings.Contains(eth, "master br0") {
		t.Errorf("eth0 after tap add, want a port of br0 without addresses:\n%s", eth)
	}
	if routes := l.ip(t, "route"); !strings.Contains(routes, "default via 198.51.100.1 dev br0") {
		t.Errorf("the admin's default route was not kept:\n%s", routes)
	}
	if err := l.router.Ping("198.51.100.10"); err != nil {
		t.Errorf("router cannot reach the host: %v", err)
	}
	if n := len(setAside(t, l.runDir, "br0")); n != 1 {
		t.Errorf("%d journals set aside, want 1", n)
	}
	if out := l.mustTapbridge(t, "status"); !strings.Contains(out, "consistent") || !strings.Contains(out, "set aside: "+filepath.Join(l.runDir, "uplink", "br0.json.stale-")) {
		t.Errorf("status = %q, want consistent and the journal set aside listed", out)
	}
	l.mustTapbridge(t, "tap", "del", "t0", "--config", conf)
	l.mustTapbridge(t, "down")
	l.assertState(t, admin)
}

// fillBridge makes count TAP ports (nobody holds them: no carrier) of br in the namespace, in one ip -batch.
func fillBridge(t *testing.T, n *testbed.NetNS, br string, count int) {
	t.Helper()
	var b strings.Builder
	for i := range count {
		fmt.Fprintf(&b, "tuntap add dev fill%d mode tap\nlink set fill%d master %s\n", i, i, br)
	}
	cmd := exec.Command("ip", "-n", n.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("filling %s: %v\n%s", br, err, out)
	}
}

// TestFailedAttachUndoesOnlyWhatItStarted: an attach fails after its
// uplink.Ensure (here because the bridge is full: the kernel takes 1023
// ports). When Ensure only resumed a migration an earlier run started,
// nothing is undone: the uplink stays in the bridge, the journal is kept.
// When it started the migration itself, it is undone exactly. Either way
// the user reads that the bridge is full, not "exchange full".
func TestFailedAttachUndoesOnlyWhatItStarted(t *testing.T) {
	for _, resumed := range []bool{true, false} {
		t.Run(fmt.Sprintf("resumed=%v", resumed), func(t *testing.T) {
			t.Parallel()
			l := newUplinkLAN(t)
			conf := writeConf(t, uplinkConf)
			if resumed {
				out, err := l.tapbridge([]string{"TAPBRIDGE_FAILPOINT=up:routes"}, "up", "--uplink", "eth0")
				assertKilled(t, err, out)
				fillBridge(t, l.hv, "br0", 1022) // with eth0: 1023
			} else {
				l.ip(t, "link", "add", "br0", "type", "bridge")
				l.ip(t, "link", "set", "br0", "up")
				fillBridge(t, l.hv, "br0", 1022) // eth0 still fits
			}
			// The kernel gives a bridge that once had a carrier an IPv6
			// link-local address and its routes: the bridge's, not the host's.
			// The bridge's carrier and operational state (and its routes'
			// linkdown flag) are compared once the kernel has caught up
			// with them (dump waits for it).
			hostState := func() []string {
				var out []string
				for _, line := range l.dump(t) {
					if !strings.Contains(line, "fe80") {
						out = append(out, line)
					}
				}
				return out
			}
			before := hostState()
			l.ip(t, "tuntap", "add", "t0", "mode", "tap")
			cmd := l.hv.Command(bin("qemu-ifup"), "t0")
			cmd.Env = append(os.Environ(), "TAPBRIDGE_CONF="+conf, "TAPBRIDGE_RUN_DIR="+l.runDir)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), `bridge "br0" is full (1023 ports)`) || strings.Contains(string(out), "exchange full") {
				t.Fatalf("qemu-ifup on a full bridge: %v, said %q; want it to say the bridge is full (1023 ports)", err, out)
			}
			l.ip(t, "tuntap", "del", "t0", "mode", "tap")
			if resumed {
				if eth := l.ip(t, "link", "show", "dev", "eth0"); !strings.Contains(eth, "master br0") {
					t.Errorf("a failed attach undid a migration it only resumed: eth0 left br0:\n%s", eth)
				}
				if _, err := os.Stat(filepath.Join(l.runDir, "uplink", "br0.json")); err != nil {
					t.Errorf("journal gone after a failed attach that only resumed the migration: %v", err)
				}
				return
			}
			if d := diffLines(before, hostState()); d != "" {
				t.Errorf("a failed attach did not undo the migration it started (-want +got):\n%s", d)
			}
		})
	}
}

// TestDownMovesBackLiveState: what the admin changed on br0 after up (an
// address added, a route added, the default route changed, an IPv6
// default route, an address's lifetimes renewed) is what down moves back,
// and down says what differs from the snapshot. Lifetimes are the
// remaining ones, not those of snapshot time.
func TestDownMovesBackLiveState(t *testing.T) {
	t.Parallel()
	l := newUplinkLAN(t)
	l.ip(t, "addr", "add", "192.0.2.12/24", "dev", "eth0", "valid_lft", "3600", "preferred_lft", "1800")
	l.mustTapbridge(t, "up", "--uplink", "eth0")
	l.ip(t, "addr", "change", "192.0.2.12/24", "dev", "br0", "valid_lft", "100", "preferred_lft", "50")
	lftSet := time.Now()
	l.ip(t, "addr", "add", "192.0.2.20/24", "dev", "br0")
	l.ip(t, "route", "add", "198.51.100.128/25", "via", "192.0.2.1", "dev", "br0")
	l.ip(t, "route", "replace", "default", "via", "192.0.2.2", "dev", "br0")
	l.ip(t, "-6", "route", "add", "default", "via", "2001:db8::1", "dev", "br0")

	out := l.mustTapbridge(t, "down")
	for _, want := range []string{"added since up: 192.0.2.20/24", "route 198.51.100.128/25 via 192.0.2.1", "route default via 192.0.2.2", "route default via 2001:db8::1", "gone since up: route default via 192.0.2.1"} {
		if !strings.Contains(out, want) {
			t.Errorf("down said %q, want it to mention %q", out, want)
		}
	}
	eth := l.ip(t, "addr", "show", "dev", "eth0")
	for _, want := range []string{"inet 192.0.2.10/24", "inet 192.0.2.11/24", "inet 192.0.2.12/24", "inet 192.0.2.20/24", "inet6 2001:db8::10/64"} {
		if !strings.Contains(eth, want) {
			t.Errorf("eth0 after down lacks %q:\n%s", want, eth)
		}
	}
	lft := regexp.MustCompile(`inet 192\.0\.2\.12/24[^\n]*\n\s+valid_lft (\d+)sec preferred_lft (\d+)sec`).FindStringSubmatch(eth)
	if lft == nil {
		t.Fatalf("192.0.2.12 has no finite lifetimes on eth0 after down:\n%s", eth)
	}
	// What remains of the 100 s: down takes seconds inside the kernel test
	// guest (TCG), more than the fixed 10 s this allowed once.
	if v, _ := strconv.Atoi(lft[1]); v > 100 || v < 100-int(time.Since(lftSet).Seconds())-1 {
		t.Errorf("valid_lft of 192.0.2.12 = %ss after down, %v after it was set to 100s; want the remaining (not the snapshot's 3600s)", lft[1], time.Since(lftSet).Round(time.Second))
	}
	if p, _ := strconv.Atoi(lft[2]); p > 50 {
		t.Errorf("preferred_lft of 192.0.2.12 = %ss after down, want <= 50s", lft[2])
	}
	routes := l.ip(t, "route", "show", "table", "all") + l.ip(t, "-6", "route", "show", "table", "all")
	for _, want := range []string{"default via 192.0.2.2 dev eth0", "198.51.100.128/25 via 192.0.2.1 dev eth0", "198.51.100.0/24 via 192.0.2.1 dev eth0 metric 50", "default via 192.0.2.1 dev eth0 table 100", "default via 2001:db8::1 dev eth0"} {
		if !strings.Contains(routes, want) {
			t.Errorf("routes after down lack %q:\n%s", want, routes)
		}
	}
	if strings.Contains(routes, "br0") || strings.Contains(routes, "default via 192.0.2.1 dev eth0 \n") {
		t.Errorf("routes after down:\n%s", routes)
	}
	if _, err := l.hv.Exec("ip", "link", "show", "dev", "br0"); err == nil {
		t.Errorf("br0 survived down")
	}
}

// TestLockKinds: a bridge called "policy" has its own lock, not the
// policy lock every attach takes after the bridge's (it used to wait on
// itself forever).
func TestLockKinds(t *testing.T) {
	t.Parallel()
	needRoot(t)
	n := testbed.NewNetNS(t)
	runDir := t.TempDir()
	cmd := n.Command(bin("tapbridge"), "tap", "add", "t0", "--bridge", "policy", "--lock-timeout", "10s")
	cmd.Env = append(os.Environ(), "TAPBRIDGE_RUN_DIR="+runDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tap add on a bridge called policy: %v\n%s", err, out)
	}
	if out := n.MustExec(t, "ip", "-o", "link", "show", "master", "policy"); !strings.Contains(out, "t0") {
		t.Errorf("t0 is not a port of bridge policy: %s", out)
	}
	for _, p := range []string{"lock/bridge/policy.lock", "lock/policy.lock"} {
		if _, err := os.Stat(filepath.Join(runDir, p)); err != nil {
			t.Errorf("lock %s: %v", p, err)
		}
	}
}

// TestLockWaitIsBounded: a stopped process holds the bridge lock (as an
// ordinary user could stop a helper that kept their uid). Every command
// that needs the lock gives up after the lock timeout (flag or
// environment) with one line naming the holder's PID, and changes nothing.
func TestLockWaitIsBounded(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("flock not found (util-linux)")
	}
	l := newUplinkLAN(t)
	conf := writeConf(t, uplinkConf)
	lockPath := filepath.Join(l.runDir, "lock", "bridge", "br0.lock")
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o755); err != nil {
		t.Fatal(err)
	}
	// flock(1) holds the lock and waits for its child: both in a process
	// group of their own, killed together by its id.
	holder := exec.Command("flock", lockPath, "sleep", "600")
	holder.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-holder.Process.Pid, syscall.SIGKILL); _ = holder.Wait() })
	f, err := os.Open(lockPath)
	for ; err != nil; f, err = os.Open(lockPath) { // created by flock
		time.Sleep(5 * time.Millisecond)
	}
	for unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil { // not taken yet
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		time.Sleep(5 * time.Millisecond)
	}
	f.Close()
	if err := holder.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	before := l.dump(t)
	holderName := fmt.Sprintf("held by pid %d (flock), stopped", holder.Process.Pid)
	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"tap add, flag", nil, []string{"tap", "add", "t0", "--config", conf, "--lock-timeout", "300ms"}, holderName},
		{"up, environment", []string{"TAPBRIDGE_LOCK_TIMEOUT=300ms"}, []string{"up", "--uplink", "eth0"}, holderName},
		{"down, environment in seconds", []string{"TAPBRIDGE_LOCK_TIMEOUT=0.3"}, []string{"down"}, holderName},
		{"bad environment", []string{"TAPBRIDGE_LOCK_TIMEOUT=soon"}, []string{"down"}, `TAPBRIDGE_LOCK_TIMEOUT: lock timeout "soon"`},
	}
	for _, tt := range tests {
		start := time.Now()
		out, err := l.tapbridge(tt.env, tt.args...)
		took := time.Since(start)
		out = strings.TrimSpace(out)
		if err == nil || !strings.Contains(out, tt.want) || strings.Contains(out, "\n") {
			t.Errorf("%s: %v, said %q; want one line containing %q", tt.name, err, out, tt.want)
		}
		if took > 5*time.Second {
			t.Errorf("%s took %v with a 300ms lock timeout", tt.name, took)
		}
		l.assertState(t, before)
	}
}

// TestKillAnywhere kills up, tap add, tap del and down with SIGKILL at a
// random moment, cycle after cycle; after each kill a re-run of the same
// command must finish the job, and the host must then be exactly in the
// state that command promises: addresses, routes, rules, links and the
// nftables ruleset compared in full. No temporary file may be left.
func TestKillAnywhere(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("-short: hundreds of kill cycles")
	}
	l := newUplinkLAN(t)
	conf := writeConf(t, uplinkConf)
	// What legitimately differs between two runs of the same step: the
	// ifindex of a re-created link (also in a front's alias and its device
	// group) and the random MAC a new TAP is given (with the link-local
	// address derived from it).
	unstable := regexp.MustCompile(`^(-d addr show: )\d+:|fe(:[0-9a-f]{2}){5}|fe80::fc[0-9a-f]*:[0-9a-f]*ff:fe[0-9a-f]*:[0-9a-f]*|ifindex=\d+|group \d+`)
	state := func() []string {
		var lines []string
		for _, line := range l.dump(t) {
			lines = append(lines, unstable.ReplaceAllString(line, "${1}X"))
		}
		out, err := l.hv.Exec("nft", "list", "ruleset")
		if err != nil {
			t.Fatalf("nft list ruleset: %v", err)
		}
		for _, line := range strings.Split(out, "\n") {
			if line = strings.TrimSpace(line); line != "" {
				lines = append(lines, "nft: "+line)
			}
		}
		return lines
	}
	steps := []struct {
		name string
		args []string
	}{
		{"up", []string{"up", "--uplink", "eth0"}},
		{"attach", []string{"tap", "add", "t0", "--config", conf, "--mac", "52:54:00:12:34:56", "--mac-spoof-check", "--ips", "192.0.2.50", "--ip-spoof-check", "--dhcp-guard"}},
		{"detach", []string{"tap", "del", "t0", "--config", conf}},
		{"down", []string{"down"}},
	}
	// The state after each step, from a clean run of the cycle after a
	// first one (which leaves the shared, empty policy table behind).
	for _, s := range steps {
		l.mustTapbridge(t, s.args...)
	}
	want := make([][]string, len(steps))
	initial := state()
	for i, s := range steps {
		l.mustTapbridge(t, s.args...)
		want[i] = state()
	}
	if !strings.Contains(strings.Join(want[1], "\n"), "nft: ") || !strings.Contains(strings.Join(want[1], "\n"), "52:54:00:12:34:56") {
		t.Fatalf("after attach the ruleset holds no policy of t0:\n%s", strings.Join(want[1], "\n"))
	}
	if d := diffLines(initial, want[len(want)-1]); d != "" {
		t.Fatalf("one clean cycle does not come back to the start (-want +got):\n%s", d)
	}
	cycles := 75
	if d, ok := t.Deadline(); ok && time.Until(d) < 5*time.Minute {
		cycles = 25
	}
	rng := rand.New(rand.NewPCG(9, 9))
	killed, finished := 0, 0
	start := time.Now()
	for c := range cycles {
		for i, s := range steps {
			cmd := l.hv.Command(bin("tapbridge"), s.args...)
			cmd.Env = append(os.Environ(), "TAPBRIDGE_RUN_DIR="+l.runDir)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			delay := time.Duration(rng.IntN(30000)) * time.Microsecond
			timer := time.AfterFunc(delay, func() { _ = cmd.Process.Kill() })
			err := cmd.Wait()
			timer.Stop()
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				killed++
			} else if err != nil {
				t.Fatalf("cycle %d %s (not killed): %v", c, s.name, err)
			} else {
				finished++
			}
			if out, err := l.tapbridge(nil, s.args...); err != nil {
				t.Fatalf("cycle %d: re-running %s after a kill after %v: %v\n%s", c, s.name, delay, err, out)
			}
			// Operational state (carrier, LOWERLAYERDOWN, tentative
			// addresses) follows a link coming up through the kernel's
			// linkwatch, asynchronously: give it a moment to settle.
			d := diffLines(want[i], state())
			for settle := time.Now().Add(3 * time.Second); d != "" && time.Now().Before(settle); d = diffLines(want[i], state()) {
				time.Sleep(50 * time.Millisecond)
			}
			if d != "" {
				t.Fatalf("cycle %d: after %s killed at %v and re-run (-want +got):\n%s", c, s.name, delay, d)
			}
		}
	}
	var temps []string
	_ = filepath.WalkDir(l.runDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(d.Name(), ".tmp-") {
			temps = append(temps, p)
		}
		return nil
	})
	if len(temps) > 0 {
		t.Errorf("temporary files left: %v", temps)
	}
	t.Logf("%d cycles of %d steps in %v: %d runs killed, %d finished before the kill; all recovered", cycles, len(steps), time.Since(start).Round(time.Second), killed, finished)
}

// TestUpKeepsRemainingLifetimes: an address with finite lifetimes goes to
// the bridge with what remains of them, and a run resuming an interrupted
// up leaves an address already on the bridge as it is now (here renewed
// to 100s), never the snapshot's lifetimes of long ago.
func TestUpKeepsRemainingLifetimes(t *testing.T) {
	t.Parallel()
	l := newUplinkLAN(t)
	l.ip(t, "addr", "add", "192.0.2.12/24", "dev", "eth0", "valid_lft", "3600", "preferred_lft", "1800")
	out, err := l.tapbridge([]string{"TAPBRIDGE_FAILPOINT=up:flush"}, "up", "--uplink", "eth0")
	assertKilled(t, err, out)
	lft := regexp.MustCompile(`inet 192\.0\.2\.12/24[^\n]*\n\s+valid_lft (\d+)sec preferred_lft (\d+)sec`)
	m := lft.FindStringSubmatch(l.ip(t, "addr", "show", "dev", "br0"))
	if m == nil {
		t.Fatalf("192.0.2.12 not on br0 with finite lifetimes after the first run:\n%s", l.ip(t, "addr", "show", "dev", "br0"))
	}
	if v, _ := strconv.Atoi(m[1]); v > 3600 || v < 3500 {
		t.Errorf("valid_lft on br0 = %ss, want what remained of 3600s", m[1])
	}
	l.ip(t, "addr", "change", "192.0.2.12/24", "dev", "br0", "valid_lft", "100", "preferred_lft", "50")
	l.mustTapbridge(t, "up", "--uplink", "eth0")
	l.assertMigrated(t)
	m = lft.FindStringSubmatch(l.ip(t, "addr", "show", "dev", "br0"))
	if m == nil {
		t.Fatalf("192.0.2.12 lost its lifetimes on br0 after the resumed up:\n%s", l.ip(t, "addr", "show", "dev", "br0"))
	}
	if v, _ := strconv.Atoi(m[1]); v > 100 {
		t.Errorf("valid_lft on br0 after the resumed up = %ss, want the remaining <= 100s, not the snapshot's 3600s", m[1])
	}
	if p, _ := strconv.Atoi(m[2]); p > 50 {
		t.Errorf("preferred_lft on br0 after the resumed up = %ss, want <= 50s", m[2])
	}
}

// TestTapAddNeverRecreatesAHeldMultiQueueTAP: a QEMU holds a multi-queue
// TAP (here the test, with one queue); `tap add` of the same name without
// --multi-queue refuses and leaves the TAP, the same device, in place:
// attaching another descriptor for a moment, which a multi-queue TAP
// accepts while held, is no proof that nobody holds it.
func TestTapAddNeverRecreatesAHeldMultiQueueTAP(t *testing.T) {
	t.Parallel()
	needRoot(t)
	n := testbed.NewNetNS(t)
	runDir := t.TempDir()
	tb := func(args ...string) (string, error) {
		cmd := n.Command(bin("tapbridge"), args...)
		cmd.Env = append(os.Environ(), "TAPBRIDGE_RUN_DIR="+runDir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := tb("tap", "add", "mq0", "--multi-queue"); err != nil {
		t.Fatalf("tap add --multi-queue: %v\n%s", err, out)
	}
	index := func() string {
		return strings.SplitN(n.MustExec(t, "ip", "-o", "link", "show", "dev", "mq0"), ":", 2)[0]
	}
	before := index()
	var queue int
	err := n.Do(func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		req, err := unix.NewIfreq("mq0")
		if err != nil {
			unix.Close(fd)
			return err
		}
		req.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_MULTI_QUEUE)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, req); err != nil {
			unix.Close(fd)
			return err
		}
		queue = fd
		return nil
	})
	if err != nil {
		t.Fatalf("holding a queue of mq0: %v", err)
	}
	defer unix.Close(queue)
	out, err := tb("tap", "add", "mq0")
	if err == nil || !strings.Contains(out, "in use") {
		t.Errorf("tap add over a held multi-queue TAP: %v, said %q; want a refusal saying it is in use", err, out)
	}
	if after := index(); after != before {
		t.Errorf("the held TAP was deleted and recreated: ifindex %s, was %s", after, before)
	}
}
