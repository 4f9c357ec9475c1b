package libvirt

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/tapbridge/tapbridge/internal/bridge"
	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/nstest"
	"github.com/tapbridge/tapbridge/internal/policy"
	"github.com/tapbridge/tapbridge/internal/tap"
)

// bridgeTAP makes what libvirt has made for <interface type='bridge'> when
// it runs the start hook: a TAP enslaved to the bridge and up.
func bridgeTAP(t *testing.T, name, br string) {
	t.Helper()
	b, _, err := bridge.Ensure(bridge.Spec{Name: br})
	if err != nil {
		t.Fatal(err)
	}
	l, err := tap.Create(name, tap.DefaultOptions)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetMaster(l, b); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
}

func hook(t *testing.T, c *config.Conf, op string, xml []byte) error {
	t.Helper()
	return Hook(c, []string{"vm1", op, "begin", "-"}, bytes.NewReader(xml))
}

func ports(t *testing.T) []string {
	t.Helper()
	p, err := policy.Ports()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHookLifecycle(t *testing.T) {
	nstest.Run(t, func() {
		c := &config.Conf{}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		prepare, start := read(t, "prepare.xml"), read(t, "start.xml")
		if err := hook(t, c, "prepare", prepare); err != nil {
			t.Fatal(err)
		}
		saved := filepath.Join(SavedDir(), "65642984-d205-4c17-9cd1-1801d78340bf.xml")
		if got, err := os.ReadFile(saved); err != nil || !bytes.Equal(got, prepare) {
			t.Fatalf("saved XML at prepare: %v; want the hook's stdin", err)
		}
		bridgeTAP(t, "vnet2", "br0")
		if err := hook(t, c, "start", start); err != nil {
			t.Fatal(err)
		}
		// The metadata's mac-spoof-check gives vnet2 a filter chain.
		if p := ports(t); !slices.Contains(p, "vnet2") {
			t.Fatalf("policy ports after start = %v; want vnet2", p)
		}
		// libvirt runs the other operations too; they change nothing.
		for _, op := range []string{"started", "stopped"} {
			if err := hook(t, c, op, start); err != nil {
				t.Errorf("%s: %v", op, err)
			}
		}
		if p := ports(t); !slices.Contains(p, "vnet2") {
			t.Fatalf("policy ports after started, stopped = %v; want vnet2", p)
		}
		if err := tap.Delete("vnet2"); err != nil {
			t.Fatal(err)
		}
		// libvirt passes "release" the XML without the TAPs' names.
		if err := hook(t, c, "release", prepare); err != nil {
			t.Fatal(err)
		}
		if p := ports(t); len(p) != 0 {
			t.Errorf("policy ports after release = %v; want none", p)
		}
		if entries, _ := os.ReadDir(SavedDir()); len(entries) != 0 {
			t.Errorf("saved files after release: %v; want none", entries)
		}
	})
}

// A TAP of the released domain's name that still exists keeps its policy:
// it is not the domain's any more, or libvirt did not delete it.
func TestHookReleaseKeepsLiveTAP(t *testing.T) {
	nstest.Run(t, func() {
		c := &config.Conf{}
		_ = c.Validate()
		bridgeTAP(t, "vnet2", "br0")
		if err := hook(t, c, "start", read(t, "start.xml")); err != nil {
			t.Fatal(err)
		}
		if err := hook(t, c, "release", read(t, "start.xml")); err != nil {
			t.Fatal(err)
		}
		if p := ports(t); !slices.Contains(p, "vnet2") {
			t.Errorf("policy ports = %v; want vnet2 kept", p)
		}
	})
}

// Invalid metadata, or a policy that cannot be enforced, makes libvirt
// refuse the domain at prepare; at start nothing is left applied.
func TestHookRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, from, to string
		conf           string
		err            string
	}{
		{"misspelled", `mac-spoof-check="yes"`, `mac-spof-check="yes"`, `{}`, `<port mac-spof-check>: unknown attribute; did you mean "mac-spoof-check"?`},
		{"ip check without ips", `ips="192.0.2.50"`, `ip-spoof-check="yes"`, `{}`, `"ipSpoofCheck": needs the guest's addresses`},
		{"bad config value from metadata", `ips="192.0.2.50"`, `bridge="br0/x"`, `{}`, `bridge`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nstest.Run(t, func() {
				c, err := config.Parse([]byte(tc.conf))
				if err != nil {
					t.Fatal(err)
				}
				for _, op := range []string{"prepare", "start"} {
					file := map[string]string{"prepare": "prepare.xml", "start": "start.xml"}[op]
					xml := []byte(strings.Replace(string(read(t, file)), tc.from, tc.to, 1))
					if op == "start" {
						bridgeTAP(t, "vnet2", "br0")
					}
					err := hook(t, c, op, xml)
					if err == nil || !strings.Contains(err.Error(), tc.err) {
						t.Errorf("%s: Hook = %v; want an error containing %q", op, err, tc.err)
					}
				}
				if p := ports(t); len(p) != 0 {
					t.Errorf("policy ports = %v; want none", p)
				}
				if entries, _ := os.ReadDir(SavedDir()); len(entries) != 0 {
					t.Errorf("saved XML of a refused domain: %v", entries)
				}
			})
		})
	}
}

// An interface on another bridge is not tapbridge's: no policy, no error.
func TestHookOtherBridge(t *testing.T) {
	nstest.Run(t, func() {
		c := &config.Conf{Bridge: "br1"}
		_ = c.Validate()
		bridgeTAP(t, "vnet2", "br0")
		if err := hook(t, c, "start", read(t, "start.xml")); err != nil {
			t.Fatal(err)
		}
		if p := ports(t); len(p) != 0 {
			t.Errorf("policy ports = %v; want none", p)
		}
	})
}
