package cli

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tapbridge/tapbridge/internal/event"
	"github.com/tapbridge/tapbridge/internal/nstest"
)

// Commands that change the host leave a record in the journal: what, on
// which bridge and port, and how it ended.
func TestCommandsLog(t *testing.T) {
	nstest.Run(t, func() {
		sock := filepath.Join(t.TempDir(), "journal.socket")
		c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		old := event.JournalSocket
		event.JournalSocket = sock
		t.Cleanup(func() { event.JournalSocket = old })
		t.Setenv(event.EnvJournalSocket, "")

		tests := []struct {
			args []string
			want map[string]string
		}{
			{[]string{"gc"}, map[string]string{"TAPBRIDGE_ACTION": "gc", "TAPBRIDGE_RESULT": "unchanged"}},
			{[]string{"up", "--bridge", "br0", "--uplink", "eth9"}, map[string]string{
				"TAPBRIDGE_ACTION": "up", "TAPBRIDGE_RESULT": "refused", "TAPBRIDGE_BRIDGE": "br0", "TAPBRIDGE_UPLINK": "eth9",
			}},
			{[]string{"tap", "add", "vm1-0", "--bridge", "br0", "--mac", "52:54:00:12:34:56"}, map[string]string{
				"TAPBRIDGE_ACTION": "tap-add", "TAPBRIDGE_RESULT": "ok", "TAPBRIDGE_BRIDGE": "br0", "TAPBRIDGE_PORT": "vm1-0", "TAPBRIDGE_MAC": "52:54:00:12:34:56",
			}},
			{[]string{"tap", "add", "vm1-0", "--bridge", "br0", "--mac", "52:54:00:12:34:56"}, map[string]string{
				"TAPBRIDGE_ACTION": "tap-add", "TAPBRIDGE_RESULT": "unchanged", "TAPBRIDGE_BRIDGE": "br0", "TAPBRIDGE_PORT": "vm1-0", "TAPBRIDGE_MAC": "52:54:00:12:34:56",
			}},
			{[]string{"tap", "del", "vm1-0", "--bridge", "br0"}, map[string]string{
				"TAPBRIDGE_ACTION": "tap-del", "TAPBRIDGE_RESULT": "ok", "TAPBRIDGE_BRIDGE": "br0", "TAPBRIDGE_PORT": "vm1-0",
			}},
		}
		for _, tt := range tests {
			_, _ = runCLI(t, tt.args...)
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 8192)
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("%q: no journal record: %v", tt.args, err)
			}
			got := map[string]string{}
			for _, l := range strings.Split(strings.TrimSuffix(string(buf[:n]), "\n"), "\n") {
				if k, v, _ := strings.Cut(l, "="); strings.HasPrefix(k, "TAPBRIDGE_") && k != "TAPBRIDGE_ERROR" {
					got[k] = v
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%q: journal record (-want +got):\n%s", tt.args, diff)
			}
		}
	})
}
