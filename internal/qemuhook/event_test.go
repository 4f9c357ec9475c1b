package qemuhook

import (
	"bytes"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/event"
	"github.com/tapbridge/tapbridge/internal/nstest"
)

func TestNameOption(t *testing.T) {
	for in, want := range map[string]string{
		"vm1":                             "vm1",
		"guest=vm1,debug-threads=on":      "vm1",
		"debug-threads=on,guest=vm2":      "vm2",
		"vm3,process=qemu-vm3":            "vm3",
		"process=qemu-vm4":                "",
		"":                                "",
		"customer42-vm1,debug-threads=on": "customer42-vm1",
	} {
		if got := nameOption(in); got != want {
			t.Errorf("nameOption(%q) = %q, want %q", in, got, want)
		}
	}
}

// journal points package event at a datagram socket of the test's and
// returns a function that reads the next record as fields.
func journal(t *testing.T) func() map[string]string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "journal.socket")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	old := event.JournalSocket
	event.JournalSocket = sock
	t.Cleanup(func() { event.JournalSocket = old })
	t.Setenv(event.EnvJournalSocket, "")
	return func() map[string]string {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 8192)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("no journal record: %v", err)
		}
		m := map[string]string{}
		for _, l := range strings.Split(strings.TrimSuffix(string(buf[:n]), "\n"), "\n") {
			k, v, _ := strings.Cut(l, "=")
			m[k] = v
		}
		// not the test's concern: constant or the test binary's name
		delete(m, "SYSLOG_FACILITY")
		delete(m, "SYSLOG_IDENTIFIER")
		return m
	}
}

// The hooks are quiet on success and print one line on failure; both are
// recorded in the journal with the TAP, the bridge, the guest's MAC and
// whether it was refused.
func TestMainLogs(t *testing.T) {
	nstest.Run(t, func() {
		next := journal(t)
		qemuTAP(t, "tap0")
		good := writeConf(t, `{"bridge": "br0"}`)[config.EnvConf]
		bad := writeConf(t, `{"bridge": "br1", "mtu": 12}`)[config.EnvConf]
		tests := []struct {
			name       string
			args       []string
			conf       string
			wantCode   int
			wantStderr string
			want       map[string]string
		}{
			{
				name: "attach", args: []string{"qemu-ifup", "tap0"}, conf: good,
				want: map[string]string{
					"MESSAGE":          `attach port "tap0" bridge "br0" mac 52:54:00:12:34:56: ok`,
					"PRIORITY":         "6",
					"TAPBRIDGE_ACTION": "attach", "TAPBRIDGE_RESULT": "ok", "TAPBRIDGE_BRIDGE": "br0",
					"TAPBRIDGE_PORT": "tap0", "TAPBRIDGE_MAC": "52:54:00:12:34:56",
				},
			},
			{
				name: "detach", args: []string{"qemu-ifdown", "tap0"}, conf: good,
				want: map[string]string{
					"MESSAGE":          `detach port "tap0" bridge "br0": ok`,
					"PRIORITY":         "6",
					"TAPBRIDGE_ACTION": "detach", "TAPBRIDGE_RESULT": "ok", "TAPBRIDGE_BRIDGE": "br0", "TAPBRIDGE_PORT": "tap0",
				},
			},
			{
				name: "refused", args: []string{"qemu-ifup", "tap0"}, conf: bad, wantCode: 1,
				wantStderr: `qemu-ifup: cannot attach TAP "tap0" to bridge "br1": ` + bad + `: config: "mtu": must be between 68 and 65535, got 12` + "\n",
				want: map[string]string{
					"MESSAGE":          `attach port "tap0" bridge "br1": refused: ` + bad + `: config: "mtu": must be between 68 and 65535, got 12`,
					"PRIORITY":         "4",
					"TAPBRIDGE_ACTION": "attach", "TAPBRIDGE_RESULT": "refused", "TAPBRIDGE_BRIDGE": "br1", "TAPBRIDGE_PORT": "tap0",
					"TAPBRIDGE_ERROR": bad + `: config: "mtu": must be between 68 and 65535, got 12`,
				},
			},
		}
		for _, tt := range tests {
			t.Setenv(config.EnvConf, tt.conf)
			t.Setenv(config.EnvMAC, "52:54:00:12:34:56")
			var stderr bytes.Buffer
			if code := Main(tt.args, &stderr); code != tt.wantCode || stderr.String() != tt.wantStderr {
				t.Errorf("%s: Main(%q) = %d, stderr %q; want %d, %q", tt.name, tt.args, code, stderr.String(), tt.wantCode, tt.wantStderr)
			}
			if diff := cmp.Diff(tt.want, next()); diff != "" {
				t.Errorf("%s: journal record (-want +got):\n%s", tt.name, diff)
			}
		}
	})
}
