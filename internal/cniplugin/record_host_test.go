package cniplugin

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/state"
)

// TestRecordOfAnotherHostIsSetAside: a record written in another network
// namespace (the state directory is shared by every namespace of a host),
// before a reboot, or by an older schema is not acted on by DEL or GC: it
// is set aside, kept for inspection, and GC's listing skips it.
func TestRecordOfAnotherHostIsSetAside(t *testing.T) {
	live, err := state.CurrentHost()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		edit  func(r *record)
		stale bool
	}{
		{"this host", func(r *record) {}, false},
		{"another network namespace", func(r *record) { r.Host.NetNS = "4:1" }, true},
		{"another boot", func(r *record) { r.Host.BootID = "00000000-0000-0000-0000-000000000000" }, true},
		{"older schema", func(r *record) { r.Version = 0; r.Host = state.Host{} }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("TAPBRIDGE_RUN_DIR", t.TempDir())
			c := &config.Conf{Mode: config.ModeHost, Bridge: "br0"}
			c.Name = "lan"
			r := newRecord(c, "c1", "eth0")
			if r.Host != live || r.Version != recordVersion {
				t.Fatalf("a new record says %+v version %d, want %+v version %d", r.Host, r.Version, live, recordVersion)
			}
			tt.edit(r)
			if err := r.save(); err != nil {
				t.Fatal(err)
			}
			got, err := readRecord("lan", "c1", "eth0")
			if err != nil {
				t.Fatal(err)
			}
			if (got == nil) != tt.stale {
				t.Fatalf("readRecord = %+v, want stale %v", got, tt.stale)
			}
			aside, _ := filepath.Glob(r.path() + ".stale-*")
			if tt.stale && len(aside) != 1 {
				t.Errorf("set aside: %v, want one", aside)
			}
			if _, err := os.Stat(r.path()); tt.stale == (err == nil) {
				t.Errorf("record still in place: %v", err)
			}
			recs, err := records("lan")
			if err != nil || len(recs) != map[bool]int{true: 0, false: 1}[tt.stale] {
				t.Errorf("records = %v, %v", recs, err)
			}
		})
	}
}
