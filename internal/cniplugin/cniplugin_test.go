package cniplugin

import (
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/testkit"
)

func TestNames(t *testing.T) {
	// Pinned: names must never change between releases. The literals were
	// computed outside the code under test (python3's hashlib.sha256 of
	// CONTAINERID + "/" + IFNAME).
	tests := []struct {
		cid, ifn        string
		port, tap, peer string
	}{
		{"c1", "eth0", "tbd72e032fedd", "tbtd72e032fed", "tbpd72e032fed"},
		{"a-b", "c", "tb4e84717d75b", "tbt4e84717d75", "tbp4e84717d75"},
		{strings.Repeat("x", 200), "net1", "tb6d214c98f3e", "tbt6d214c98f3", "tbp6d214c98f3"},
	}
	for _, tt := range tests {
		got := []string{HostPortName(tt.cid, tt.ifn), HostTAPName(tt.cid, tt.ifn), PeerName(tt.cid, tt.ifn)}
		if want := []string{tt.port, tt.tap, tt.peer}; !slices.Equal(got, want) {
			t.Errorf("names of (%.10q, %q) = %q, want %q", tt.cid, tt.ifn, got, want)
		}
	}
	// The separator keeps ("a-b", "c") and ("a", "b-c") apart.
	if HostPortName("a-b", "c") == HostPortName("a", "b-c") {
		t.Error(`HostPortName("a-b", "c") == HostPortName("a", "b-c")`)
	}
	// The third byte of a host port name is a hex digit, never 't' or 'p'.
	for cid := range 200 {
		n := HostPortName(strings.Repeat("c", cid), "eth0")
		if strings.HasPrefix(n, HostTAPPrefix) || strings.HasPrefix(n, PeerPrefix) {
			t.Fatalf("host port name %q starts like a TAP or peer name", n)
		}
	}
}

func TestRecordOurs(t *testing.T) {
	for _, mode := range []string{config.ModeNetns, config.ModeHost} {
		r := newRecord(&config.Conf{Mode: mode}, "c1", "eth0")
		if !r.ours() {
			t.Errorf("mode %s: a derived record is not ours: %+v", mode, r)
		}
		r.HostPort = "eth0"
		if r.ours() {
			t.Errorf("mode %s: a record naming %q is ours", mode, r.HostPort)
		}
	}
	if a, b := recordPath("n", "a-b", "c"), recordPath("n", "a", "b-c"); a == b {
		t.Errorf("two attachments share the record %q", a)
	}
}

func TestArgsMAC(t *testing.T) {
	tests := []struct {
		args, want string
		code       uint
	}{
		{"", "", 0},
		{"IgnoreUnknown=1;K8S_POD_NAME=vm1;MAC=52:54:00:12:34:56", "52:54:00:12:34:56", 0},
		{"K8S_POD_NAMESPACE=default", "", 0},
		{"MAC", "", types.ErrInvalidEnvironmentVariables},
	}
	for _, tt := range tests {
		got, err := argsMAC(tt.args)
		if code := testkit.CNICode(err); got != tt.want || code != tt.code {
			t.Errorf("argsMAC(%q) = %q, code %d (%v); want %q, code %d", tt.args, got, code, err, tt.want, tt.code)
		}
	}
}

func TestGuestMAC(t *testing.T) {
	derived := DerivedMAC("c1", "eth0").String()
	tests := []struct {
		name, conf, args, want string
		code                   uint
	}{
		{"derived", `{}`, "", derived, 0},
		{"config", `{"mac":"52:54:00:00:00:01"}`, "", "52:54:00:00:00:01", 0},
		{"CNI_ARGS over config", `{"mac":"52:54:00:00:00:01"}`, "MAC=52:54:00:00:00:02", "52:54:00:00:00:02", 0},
		{"runtimeConfig over CNI_ARGS", `{"runtimeConfig":{"mac":"52:54:00:00:00:03"}}`, "MAC=52:54:00:00:00:02", "52:54:00:00:00:03", 0},
		{"multicast in CNI_ARGS", `{}`, "MAC=01:00:5e:00:00:01", "", types.ErrInvalidEnvironmentVariables},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse([]byte(tt.conf))
			if err != nil {
				t.Fatal(err)
			}
			m, err := guestMAC(c, &skel.CmdArgs{ContainerID: "c1", IfName: "eth0", Args: tt.args})
			if code := testkit.CNICode(err); code != tt.code {
				t.Fatalf("code %d (%v), want %d", code, err, tt.code)
			}
			if err == nil && m.String() != tt.want {
				t.Errorf("MAC %s, want %s", m, tt.want)
			}
		})
	}
	if derived != DerivedMAC("c1", "eth0").String() || derived == DerivedMAC("c2", "eth0").String() {
		t.Error("DerivedMAC is not stable, or not distinct")
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name, conf string
		code       uint
		msg        string // the error names the field
	}{
		{"defaults", `{"cniVersion":"1.1.0","name":"lan","type":"tapbridge"}`, 0, ""},
		{"mtu", `{"name":"lan","mtu":20}`, types.ErrInvalidNetworkConfig, `"mtu"`},
		{"mtu type", `{"name":"lan","mtu":"big"}`, types.ErrInvalidNetworkConfig, `"mtu"`},
		{"mode", `{"name":"lan","mode":"bridge"}`, types.ErrInvalidNetworkConfig, `"mode"`},
		{"bridge", `{"name":"lan","bridge":"a-very-long-bridge-name"}`, types.ErrInvalidNetworkConfig, `bridge`},
		{"owner", `{"name":"lan","owner":"no-such-user-here"}`, types.ErrInvalidNetworkConfig, `"owner"`},
		{"type", `{"name":"lan","type":"bridge"}`, types.ErrInvalidNetworkConfig, `"type"`},
		{"runtimeConfig.mac", `{"name":"lan","runtimeConfig":{"mac":"ff:ff:ff:ff:ff:ff"}}`, types.ErrInvalidNetworkConfig, `"runtimeConfig.mac"`},
		{"prevResult", `{"name":"lan","cniVersion":"1.0.0","prevResult":{"cniVersion":"9.9.9"}}`, types.ErrInvalidNetworkConfig, `"prevResult"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(&skel.CmdArgs{StdinData: []byte(tt.conf)})
			if code := testkit.CNICode(err); code != tt.code {
				t.Fatalf("code %d (%v), want %d", code, err, tt.code)
			}
			if err != nil && !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not name %s", err, tt.msg)
			}
			if err == nil {
				if diff := cmp.Diff([]string{"br0", "netns"}, []string{c.Bridge, c.Mode}); diff != "" {
					t.Errorf("defaults (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// FuzzLoad feeds the plugin's configuration and CNI_ARGS parsing arbitrary
// input: it must never panic, and what it accepts it must accept again.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"lan","type":"tapbridge","mode":"host","owner":0,"mtu":9000}`), "IgnoreUnknown=1;MAC=52:54:00:12:34:56")
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"lan","prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}]}}`), "")
	f.Add([]byte(`{"name":"lan","runtimeConfig":{"mac":"52:54:00:00:00:01"},"ipam":{"type":"static"}}`), "MAC=")
	f.Fuzz(func(t *testing.T, conf []byte, cniArgs string) {
		args := &skel.CmdArgs{ContainerID: "c1", IfName: "eth0", Args: cniArgs, StdinData: conf}
		c, err := load(args)
		if err != nil {
			if testkit.CNICode(err) != types.ErrInvalidNetworkConfig {
				t.Fatalf("load: code %d for %v", testkit.CNICode(err), err)
			}
			return
		}
		if _, err := load(args); err != nil {
			t.Fatalf("accepted once, refused again: %v", err)
		}
		m, err := guestMAC(c, args)
		if err == nil && (len(m) != 6 || m[0]&1 != 0) {
			t.Fatalf("guest MAC %s is not a unicast Ethernet address", m)
		}
	})
}
