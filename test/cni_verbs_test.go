package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"

	"github.com/tapbridge/tapbridge/internal/cniplugin"
	"github.com/tapbridge/tapbridge/internal/testkit"
	"github.com/tapbridge/tapbridge/test/testbed"
)

// pluginConf is one plugin configuration as a runtime passes it on stdin.
func pluginConf(t testing.TB, version string, extra map[string]any) []byte {
	t.Helper()
	c := tbPlugin(map[string]any{"cniVersion": version, "name": "lan"})
	for k, v := range extra {
		c[k] = v
	}
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestCNIAddFailsCleanly gives ADD every kind of bad input: each fails
// with the spec's error code and a message naming what is wrong, and
// leaves the hypervisor, the sandbox and the plugin's records exactly as
// they were.
func TestCNIAddFailsCleanly(t *testing.T) {
	notNetns := filepath.Join(t.TempDir(), "not-a-netns")
	if err := os.WriteFile(notNetns, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		conf  map[string]any
		env   map[string]string // overrides; "" removes the variable
		setup func(t *testing.T, b *cniBed, sb *testbed.NetNS)
		code  uint
		msg   string
	}{
		{name: "mtu out of range", conf: map[string]any{"mtu": 10}, code: types.ErrInvalidNetworkConfig, msg: `"mtu": must be between 68 and 65535`},
		{name: "mtu not a number", conf: map[string]any{"mtu": "big"}, code: types.ErrInvalidNetworkConfig, msg: `"mtu"`},
		{name: "unknown mode", conf: map[string]any{"mode": "bridged"}, code: types.ErrInvalidNetworkConfig, msg: `"mode": must be "netns" or "host"`},
		{name: "bridge name too long", conf: map[string]any{"bridge": "a-very-long-bridge"}, code: types.ErrInvalidNetworkConfig, msg: `bridge "a-very-long-bridge"`},
		{name: "unknown owner", conf: map[string]any{"owner": "no-such-user-tb"}, code: types.ErrInvalidNetworkConfig, msg: `"owner"`},
		{name: "uplink is the bridge", conf: map[string]any{"uplink": "br0"}, code: types.ErrInvalidNetworkConfig, msg: `"uplink"`},
		{name: "multicast MAC", conf: map[string]any{"mac": "01:00:5e:00:00:01"}, code: types.ErrInvalidNetworkConfig, msg: `"mac"`},
		{name: "no CNI_NETNS", env: map[string]string{"CNI_NETNS": ""}, code: types.ErrInvalidEnvironmentVariables, msg: "CNI_NETNS"},
		{name: "CNI_NETNS not a namespace", env: map[string]string{"CNI_NETNS": notNetns}, code: types.ErrInvalidEnvironmentVariables, msg: "CNI_NETNS"},
		{name: "CNI_NETNS is the plugin's namespace", env: map[string]string{"CNI_NETNS": "HV"}, code: types.ErrInvalidEnvironmentVariables, msg: `use mode "host"`},
		{name: "CNI_IFNAME too long", env: map[string]string{"CNI_IFNAME": "eth0-much-too-long"}, code: types.ErrInvalidEnvironmentVariables, msg: "interface name is too long"},
		{name: "CNI_ARGS MAC", env: map[string]string{"CNI_ARGS": "IgnoreUnknown=1;MAC=zz"}, code: types.ErrInvalidEnvironmentVariables, msg: `CNI_ARGS MAC: invalid MAC "zz"`},
		{
			name: "bridge name taken by a veth",
			setup: func(t *testing.T, b *cniBed, _ *testbed.NetNS) {
				b.hv.MustExec(t, "ip", "link", "add", "br0", "type", "veth", "peer", "name", "br0-peer")
			},
			code: cniplugin_ErrBridge, msg: `bridge "br0" exists and is not a bridge`,
		},
		{name: "uplink missing", conf: map[string]any{"uplink": "eth9"}, code: cniplugin_ErrUplink, msg: `"eth9"`},
		{
			name: "uplink in another bridge",
			conf: map[string]any{"uplink": "eth1"},
			setup: func(t *testing.T, b *cniBed, _ *testbed.NetNS) {
				b.hv.MustExec(t, "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1-peer")
				b.hv.MustExec(t, "ip", "link", "add", "br1", "type", "bridge")
				b.hv.MustExec(t, "ip", "link", "set", "eth1", "master", "br1")
			},
			code: cniplugin_ErrUplink, msg: `uplink "eth1" is already a port of bridge "br1"`,
		},
		{
			name: "interface exists in the sandbox",
			setup: func(t *testing.T, _ *cniBed, sb *testbed.NetNS) {
				sb.MustExec(t, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer")
			},
			code: cniplugin_ErrExists, msg: `interface in CNI_NETNS "eth0" already exists`,
		},
		{name: "IPAM plugin fails", conf: map[string]any{"ipam": staticIPAM("not-an-address")}, code: types.ErrInternal, msg: "not-an-address"},
		{name: "IPAM plugin missing", conf: map[string]any{"ipam": map[string]any{"type": "no-such-ipam"}}, code: cniplugin_ErrLink, msg: `"no-such-ipam"`},
		{name: "ipSpoofCheck without addresses", conf: map[string]any{"ipSpoofCheck": true}, code: types.ErrInvalidNetworkConfig, msg: `"ipSpoofCheck": needs the guest's addresses`},
		{name: "MTU too large for a TAP", conf: map[string]any{"mtu": 65535}, code: cniplugin_ErrLink, msg: "a TAP takes at most 65521"},
		{name: "MTU too large for a TAP, host mode", conf: map[string]any{"mtu": 65535, "mode": "host"}, code: cniplugin_ErrLink, msg: "MTU"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newCNIBed(t, nil)
			sb := testbed.NewNetNS(t)
			if tt.setup != nil {
				tt.setup(t, b, sb)
			}
			env := map[string]string{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": sb.Path, "CNI_IFNAME": "eth0"}
			for k, v := range tt.env {
				if v == "HV" {
					v = b.hv.Path
				}
				env[k] = v
			}
			before := b.state(t, sb)
			out, err := b.plugin(env, pluginConf(t, "1.1.0", tt.conf))
			if err == nil {
				t.Fatalf("ADD succeeded:\n%s", out)
			}
			e := cniError(t, out)
			if e.Code != tt.code || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("error %d %q, want %d and a message containing %q", e.Code, e.Msg, tt.code, tt.msg)
			}
			if strings.Contains(e.Msg, "\n") {
				t.Errorf("message is not one line: %q", e.Msg)
			}
			if diff := cmp.Diff(before, b.state(t, sb)); diff != "" {
				t.Errorf("a failed ADD changed the system (-before +after):\n%s", diff)
			}
		})
	}
}

// The plugin's own error codes, as documented in docs/cni.md.
const (
	cniplugin_ErrBridge = 100
	cniplugin_ErrUplink = 101
	cniplugin_ErrLink   = 102
	cniplugin_ErrExists = 103
	cniplugin_ErrCheck  = 104
)

// TestCNIDelIdempotent deletes attachments whose sandbox or links are
// already gone, and ones never added: DEL succeeds and still removes the
// host side (host veth or TAP, record, IPAM lease).
func TestCNIDelIdempotent(t *testing.T) {
	tests := []struct {
		name  string
		mode  string
		added bool
		// breakIt runs between ADD and DEL; it may change rt.NetNS.
		breakIt     func(t *testing.T, b *cniBed, sb *testbed.NetNS, rt *libcni.RuntimeConf)
		wantSandbox []string // links left in the sandbox, when it still exists
	}{
		{name: "never added", mode: "netns"},
		{name: "never added, host mode", mode: "host"},
		{name: "twice", mode: "netns", added: true},
		{
			name: "sandbox deleted", mode: "netns", added: true,
			breakIt: func(t *testing.T, _ *cniBed, sb *testbed.NetNS, _ *libcni.RuntimeConf) {
				if err := sb.Delete(); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "no CNI_NETNS", mode: "netns", added: true,
			breakIt: func(t *testing.T, _ *cniBed, sb *testbed.NetNS, rt *libcni.RuntimeConf) {
				rt.NetNS = ""
			},
			wantSandbox: []string{"lo device"}, // from the record
		},
		{
			name: "TAP deleted in the sandbox", mode: "netns", added: true,
			breakIt: func(t *testing.T, _ *cniBed, sb *testbed.NetNS, _ *libcni.RuntimeConf) {
				sb.MustExec(t, "ip", "link", "del", "eth0")
			},
		},
		{
			name: "host veth deleted", mode: "netns", added: true,
			breakIt: func(t *testing.T, b *cniBed, _ *testbed.NetNS, rt *libcni.RuntimeConf) {
				b.hv.MustExec(t, "ip", "link", "del", hostPortName(rt.ContainerID, rt.IfName))
			},
		},
		{
			name: "host TAP deleted", mode: "host", added: true,
			breakIt: func(t *testing.T, b *cniBed, _ *testbed.NetNS, rt *libcni.RuntimeConf) {
				b.hv.MustExec(t, "ip", "link", "del", hostTAPName(rt.ContainerID, rt.IfName))
			},
		},
		{
			name: "a foreign link joined the device group", mode: "netns", added: true,
			breakIt: func(t *testing.T, _ *cniBed, sb *testbed.NetNS, rt *libcni.RuntimeConf) {
				sb.MustExec(t, "ip", "link", "add", "foreign0", "type", "veth", "peer", "name", "foreign1")
				sb.MustExec(t, "ip", "link", "set", "foreign0", "group", fmt.Sprint(cniplugin.Group(rt.ContainerID, rt.IfName)))
			},
			wantSandbox: []string{"foreign0 veth", "foreign1 veth", "lo device"},
		},
		{
			name: "bridge deleted", mode: "host", added: true,
			breakIt: func(t *testing.T, b *cniBed, _ *testbed.NetNS, _ *libcni.RuntimeConf) {
				b.hv.MustExec(t, "ip", "link", "del", "br0")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newCNIBed(t, nil)
			sb := testbed.NewNetNS(t)
			leases := t.TempDir()
			list := confList(t, "1.1.0", "lan", tbPlugin(map[string]any{
				"mode": tt.mode,
				"ipam": map[string]any{"type": "host-local", "subnet": "198.51.100.0/24", "dataDir": leases},
			}))
			rt := &libcni.RuntimeConf{ContainerID: "c1", NetNS: sb.Path, IfName: "eth0"}
			if tt.added {
				b.mustAdd(t, list, rt)
			}
			if tt.breakIt != nil {
				tt.breakIt(t, b, sb, rt)
			}
			for i := range 2 {
				if err := b.del(list, rt); err != nil {
					t.Fatalf("DEL #%d: %v", i+1, err)
				}
			}
			for _, l := range cniLinks(t, b.hv) {
				if strings.HasPrefix(l, "tb") {
					t.Errorf("left in the hypervisor: %s", l)
				}
			}
			if r := b.records(t); len(r) != 0 {
				t.Errorf("records left: %v", r)
			}
			if tt.wantSandbox != nil {
				if diff := cmp.Diff(tt.wantSandbox, cniLinks(t, sb)); diff != "" {
					t.Errorf("sandbox links after DEL (-want +got):\n%s", diff)
				}
			}
			// host-local keeps one file per leased address.
			files, _ := filepath.Glob(filepath.Join(leases, "lan", "198.*"))
			if len(files) != 0 {
				t.Errorf("IPAM leases left: %v", files)
			}
		})
	}
}

// TestCNICheckFindsDifferences breaks an attachment in every way CHECK
// looks at; CHECK fails with a message that says what is wrong.
func TestCNICheckFindsDifferences(t *testing.T) {
	tests := []struct {
		name    string
		mode    string
		breakIt func(t *testing.T, b *cniBed, sb *testbed.NetNS, port string)
		msg     string
	}{
		{
			name: "TAP MTU", mode: "netns",
			breakIt: func(t *testing.T, _ *cniBed, sb *testbed.NetNS, _ string) {
				sb.MustExec(t, "ip", "link", "set", "eth0", "mtu", "1400")
			},
			msg: `TAP "eth0" has MTU 1400, bridge "br0" has 1500`,
		},
		{
			name: "TAP missing", mode: "netns",
			breakIt: func(t *testing.T, _ *cniBed, sb *testbed.NetNS, _ string) {
				sb.MustExec(t, "ip", "link", "del", "eth0")
			},
			msg: `TAP: "eth0": no such interface`,
		},
		{
			name: "TAP owner", mode: "netns",
			breakIt: func(t *testing.T, _ *cniBed, sb *testbed.NetNS, _ string) {
				sb.MustExec(t, "ip", "link", "del", "eth0")
				sb.MustExec(t, "ip", "tuntap", "add", "eth0", "mode", "tap", "user", "0")
			},
			msg: `TAP "eth0" is owned by uid 0, want 65534 ("owner")`,
		},
		{
			name: "TAP down", mode: "netns",
			breakIt: func(t *testing.T, _ *cniBed, sb *testbed.NetNS, _ string) {
				sb.MustExec(t, "ip", "link", "set", "eth0", "down")
			},
			msg: `TAP "eth0" is down`,
		},
		{
			name: "redirect removed", mode: "netns",
			breakIt: func(t *testing.T, _ *cniBed, sb *testbed.NetNS, _ string) {
				sb.MustExec(t, "tc", "qdisc", "del", "dev", "eth0", "ingress")
			},
			msg: `frames received on "eth0" are not redirected to "tbp`,
		},
		{
			name: "veth peer down", mode: "netns",
			breakIt: func(t *testing.T, _ *cniBed, sb *testbed.NetNS, port string) {
				sb.MustExec(t, "ip", "link", "set", "tbp"+port[2:12], "down")
			},
			msg: `veth peer "tbp`,
		},
		{
			name: "host port off the bridge", mode: "netns",
			breakIt: func(t *testing.T, b *cniBed, _ *testbed.NetNS, port string) {
				b.hv.MustExec(t, "ip", "link", "set", port, "nomaster")
			},
			msg: `host port: "tb`,
		},
		{
			name: "bridge missing", mode: "host",
			breakIt: func(t *testing.T, b *cniBed, _ *testbed.NetNS, _ string) {
				b.hv.MustExec(t, "ip", "link", "del", "br0")
			},
			msg: `"br0": no such interface`,
		},
		{
			name: "host TAP down", mode: "host",
			breakIt: func(t *testing.T, b *cniBed, _ *testbed.NetNS, port string) {
				b.hv.MustExec(t, "ip", "link", "set", port, "down")
			},
			msg: `is down`,
		},
		{
			name: "IPAM lease lost", mode: "netns",
			breakIt: func(t *testing.T, b *cniBed, _ *testbed.NetNS, _ string) {
				files, _ := filepath.Glob(filepath.Join(b.runDir, "leases", "lan", "198.*"))
				for _, f := range files {
					os.Remove(f)
				}
			},
			msg: "host-local: Failed to find address added by container c1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newCNIBed(t, nil)
			sb := testbed.NewNetNS(t)
			list := confList(t, "1.1.0", "lan", tbPlugin(map[string]any{
				"mode": tt.mode, "owner": 65534,
				"ipam": map[string]any{"type": "host-local", "subnet": "198.51.100.0/24", "dataDir": filepath.Join(b.runDir, "leases")},
			}))
			rt := &libcni.RuntimeConf{ContainerID: "c1", NetNS: sb.Path, IfName: "eth0"}
			b.mustAdd(t, list, rt)
			t.Cleanup(func() { _ = b.del(list, rt) })
			if err := b.check(list, rt); err != nil {
				t.Fatalf("CHECK after ADD: %v", err)
			}
			port := hostPortName("c1", "eth0")
			if tt.mode == "host" {
				port = hostTAPName("c1", "eth0")
			}
			tt.breakIt(t, b, sb, port)
			err := b.check(list, rt)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("CHECK = %v, want an error containing %q", err, tt.msg)
			}
			if tt.name != "IPAM lease lost" && testkit.CNICode(err) != cniplugin_ErrCheck {
				t.Errorf("CHECK error code %d, want %d", testkit.CNICode(err), cniplugin_ErrCheck)
			}
		})
	}
}

// TestCNIStatus: STATUS says "plugin not available" (50) while the bridge
// or the configured uplink is missing or down, and succeeds otherwise.
func TestCNIStatus(t *testing.T) {
	tests := []struct {
		name   string
		uplink bool
		setup  []string // `ip` argument lists run in the hypervisor
		msg    string   // "" for success
	}{
		{name: "no bridge", msg: `bridge "br0" does not exist`},
		{name: "bridge down", setup: []string{"link add br0 type bridge"}, msg: `bridge "br0" is down`},
		{name: "bridge up", setup: []string{"link add br0 type bridge", "link set br0 up"}},
		{name: "bridge is a veth", setup: []string{"link add br0 type veth peer name br0-p", "link set br0 up"}, msg: "not a bridge"},
		{name: "uplink missing", uplink: true, setup: []string{"link add br0 type bridge", "link set br0 up"}, msg: `uplink: "eth1": no such interface`},
		{name: "uplink down", uplink: true, setup: []string{"link add br0 type bridge", "link set br0 up", "link add eth1 type veth peer name eth1-p"}, msg: `uplink "eth1" is down`},
		{name: "uplink without carrier", uplink: true, setup: []string{"link add br0 type bridge", "link set br0 up", "link add eth1 type veth peer name eth1-p", "link set eth1 up"}, msg: `uplink "eth1" has no carrier`},
		{name: "uplink up", uplink: true, setup: []string{"link add br0 type bridge", "link set br0 up", "link add eth1 type veth peer name eth1-p", "link set eth1 up", "link set eth1-p up"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newCNIBed(t, nil)
			for _, s := range tt.setup {
				b.hv.MustExec(t, "ip", strings.Fields(s)...)
			}
			conf := map[string]any{}
			if tt.uplink {
				conf["uplink"] = "eth1"
			}
			err := b.status(confList(t, "1.1.0", "lan", tbPlugin(conf)))
			switch {
			case tt.msg == "" && err != nil:
				t.Fatalf("STATUS: %v", err)
			case tt.msg == "":
			case err == nil || !strings.Contains(err.Error(), tt.msg) || testkit.CNICode(err) != types.ErrPluginNotAvailable:
				t.Fatalf("STATUS = %v (code %d), want code 50 and %q", err, testkit.CNICode(err), tt.msg)
			}
		})
	}
}
