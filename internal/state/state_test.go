package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMain lets the test binary act as a writer that a test kills.
func TestMain(m *testing.M) {
	if dir := os.Getenv("STATE_TEST_WRITER"); dir != "" {
		os.Setenv("TAPBRIDGE_RUN_DIR", dir)
		for i := 0; ; i++ {
			if err := WriteJSON(Path("uplink", "br0.json"), map[string]any{"n": i, "pad": strings.Repeat("x", 4096)}); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
	}
	os.Exit(m.Run())
}

// TestKilledWritersLeaveNoTempFiles kills a process writing a record with
// SIGKILL at random moments, 200 times: the record is never torn, and the
// next write leaves no temporary file behind.
func TestKilledWritersLeaveNoTempFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 200 kills")
	}
	dir := t.TempDir()
	t.Setenv("TAPBRIDGE_RUN_DIR", dir)
	rng := rand.New(rand.NewPCG(12, 12))
	leftBeforeCleanup := 0
	for i := range 200 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "STATE_TEST_WRITER="+dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.IntN(5000)) * time.Microsecond) // a random moment, not a synchronisation
		_ = cmd.Process.Kill()
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("kill %d: the writer was not killed: %v", i, err)
		}
		var rec map[string]any
		if err := ReadJSON(Path("uplink", "br0.json"), &rec); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("kill %d: torn record: %v", i, err)
		}
		temps, _ := TempFiles()
		leftBeforeCleanup += len(temps)
	}
	if err := WriteJSON(Path("uplink", "br0.json"), map[string]int{"n": 0}); err != nil {
		t.Fatal(err)
	}
	temps, err := TempFiles()
	if err != nil || len(temps) != 0 {
		t.Errorf("temporary files after 200 kills and one write: %v %v", temps, err)
	}
	t.Logf("200 kills: %d temporary files seen between kills (each removed by the next write), 0 left", leftBeforeCleanup)
}

// TestWriteJSONRemovesOnlyDeadTemps: a temporary file no writer holds is
// removed by the next write into its directory; one a live writer holds
// (locked) is not.
func TestWriteJSONRemovesOnlyDeadTemps(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TAPBRIDGE_RUN_DIR", dir)
	if err := os.MkdirAll(Path("cni", "lan"), 0o755); err != nil {
		t.Fatal(err)
	}
	dead := Path("cni", "lan", ".c1:eth0.tmp-dead")
	live := Path("cni", "lan", ".c2:eth0.tmp-live")
	for _, p := range []string{dead, live} {
		if err := os.WriteFile(p, []byte("{"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(live)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(Path("cni", "lan", "c3:eth0"), map[string]string{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dead temporary file kept: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("live temporary file removed: %v", err)
	}
	var got map[string]string
	if err := ReadJSON(Path("cni", "lan", "c3:eth0"), &got); err != nil || got["a"] != "b" {
		t.Errorf("record = %v, %v", got, err)
	}
}

// TestLockWaitIsBounded: a wait for a held lock ends after the timeout
// with an error naming the holder's PID, and the lock is not taken late
// behind the caller's back.
func TestLockWaitIsBounded(t *testing.T) {
	t.Setenv("TAPBRIDGE_RUN_DIR", t.TempDir())
	held, err := LockBridge("br0")
	if err != nil {
		t.Fatal(err)
	}
	SetLockTimeout(200 * time.Millisecond)
	defer SetLockTimeout(0)
	start := time.Now()
	_, err = LockBridge("br0")
	took := time.Since(start)
	if !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("LockBridge on a held lock = %v, want ErrLockTimeout", err)
	}
	want := fmt.Sprintf("held by pid %d (", os.Getpid())
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `bridge "br0"`) {
		t.Errorf("error %q does not name the bridge and %q", err, want)
	}
	if took < 200*time.Millisecond || took > 2*time.Second {
		t.Errorf("the wait took %v, want about 200ms", took)
	}
	held.Unlock()
	again, err := LockBridge("br0") // the abandoned wait must not keep it
	if err != nil {
		t.Fatalf("LockBridge after the holder left: %v", err)
	}
	again.Unlock()
}

// TestLockKinds: each kind of lock has its own namespace, so a bridge
// called "policy" or an uplink and a bridge of the same name never share
// a lock.
func TestLockKinds(t *testing.T) {
	t.Setenv("TAPBRIDGE_RUN_DIR", t.TempDir())
	SetLockTimeout(200 * time.Millisecond)
	defer SetLockTimeout(0)
	p, err := LockPolicy()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Unlock()
	b, err := LockBridge("policy")
	if err != nil {
		t.Fatalf("bridge \"policy\" while the policy lock is held: %v", err)
	}
	defer b.Unlock()
	u, err := LockUplink("policy")
	if err != nil {
		t.Fatalf("uplink \"policy\" while bridge \"policy\" is locked: %v", err)
	}
	u.Unlock()
	for _, p := range []string{"lock/policy.lock", "lock/bridge/policy.lock", "lock/uplink/policy.lock"} {
		if _, err := os.Stat(filepath.Join(Dir(), p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func TestParseLockTimeout(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"30s", 30 * time.Second, ""},
		{"1.5", 1500 * time.Millisecond, ""},
		{"250ms", 250 * time.Millisecond, ""},
		{"0", 0, "must be positive"},
		{"-1s", 0, "must be positive"},
		{"soon", 0, `lock timeout "soon": want a duration`},
	} {
		got, err := ParseLockTimeout(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseLockTimeout(%q) = %v, %v; want error %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseLockTimeout(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

// TestHostDiffers: a record of this host matches; one of another boot, of
// another namespace or without either does not, and says why.
func TestHostDiffers(t *testing.T) {
	live, err := CurrentHost()
	if err != nil {
		t.Fatal(err)
	}
	if d := live.Differs(live); d != "" {
		t.Errorf("the live host differs from itself: %s", d)
	}
	for _, tt := range []struct {
		h    Host
		want string
	}{
		{Host{NetNS: live.NetNS, BootID: "00000000-0000-0000-0000-000000000000"}, "before a reboot"},
		{Host{NetNS: "4:1", BootID: live.BootID}, "another network namespace"},
		{Host{NetNS: live.NetNS, NetNSCookie: live.NetNSCookie + 1, BootID: live.BootID}, "since deleted, whose inode number the kernel gave this one"},
		{Host{}, "older tapbridge"},
	} {
		if d := tt.h.Differs(live); !strings.Contains(d, tt.want) {
			t.Errorf("%+v.Differs = %q, want %q", tt.h, d, tt.want)
		}
	}
	if live.NetNSCookie == 0 {
		t.Errorf("the live host has no namespace cookie (SO_NETNS_COOKIE, Linux 5.14)")
	}
	// A record without a cookie (an older tapbridge's, or a kernel
	// before 5.14) is compared by inode alone.
	noCookie := live
	noCookie.NetNSCookie = 0
	if d := noCookie.Differs(live); d != "" {
		t.Errorf("a record without a cookie differs: %s", d)
	}
	b, _ := json.Marshal(live)
	if !strings.Contains(string(b), `"netns"`) || !strings.Contains(string(b), `"bootID"`) {
		t.Errorf("Host JSON = %s", b)
	}
}
