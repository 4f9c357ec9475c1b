package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte(`{"cniVersion":"1.1.0","name":"lan","type":"tapbridge"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Bridge != "br0" || c.Mode != ModeNetns || c.OwnerID() != -1 || c.GroupID() != -1 {
		t.Fatalf("defaults: bridge %q mode %q owner %d group %d", c.Bridge, c.Mode, c.OwnerID(), c.GroupID())
	}
}

func TestParseFull(t *testing.T) {
	c, err := Parse([]byte(`{
		"bridge": "br1", "uplink": "eth0", "mtu": 9000, "mode": "host",
		"owner": 1000, "group": "root", "multiQueue": true, "mac": "52:54:00:00:00:01",
		"ips": ["192.0.2.50/24", "2001:db8::50"], "vlan": 10, "uplinkVlans": [10, 20],
		"probeTimeout": "3s", "runtimeConfig": {"mac": "52:54:00:00:00:02"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.OwnerID() != 1000 || c.GroupID() != 0 {
		t.Errorf("owner/group = %d/%d, want 1000/0", c.OwnerID(), c.GroupID())
	}
	ips, _ := ParseIPs("ips", c.IPs)
	if len(ips) != 2 || ips[0].String() != "192.0.2.50" || ips[1].String() != "2001:db8::50" {
		t.Errorf("ips = %v", ips)
	}
	m, err := c.GuestMAC("52:54:00:00:00:03")
	if err != nil || m.String() != "52:54:00:00:00:02" {
		t.Errorf("GuestMAC = %v, %v: runtimeConfig must win", m, err)
	}
	if d, _ := c.ProbeDuration(); d.Seconds() != 3 {
		t.Errorf("probeTimeout = %v", d)
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	tests := []struct{ conf, want string }{
		{`{"bridge": "this-name-is-too-long"}`, `bridge "this-name-is-too-long"`},
		{`{"bridge": "br/0"}`, `bridge "br/0"`},
		{`{"uplink": "eth 0"}`, `uplink "eth 0"`},
		{`{"uplink": "br0"}`, `"uplink": must differ`},
		{`{"mtu": 10}`, `"mtu": must be between 68 and 65535`},
		{`{"mtu": "big"}`, `"mtu"`},
		{`{"mode": "bridge"}`, `"mode": must be "netns" or "host"`},
		{`{"owner": "no-such-user-here"}`, `"owner": no user`},
		{`{"group": "no-such-group-here"}`, `"group": no group`},
		{`{"mac": "01:00:5e:00:00:01"}`, `"mac"`},
		{`{"runtimeConfig": {"mac": "xx"}}`, `"runtimeConfig.mac"`},
		{`{"ips": ["300.1.1.1"]}`, `"ips": invalid IP address "300.1.1.1"`},
		{`{"vlan": 4095}`, `"vlan": must be between 1 and 4094`},
		{`{"uplink": "eth0", "uplinkVlans": [0]}`, `"uplinkVlans"`},
		{`{"uplinkVlans": [10]}`, `"uplinkVlans": needs "uplink"`},
		{`{"probeTimeout": "soon"}`, `"probeTimeout"`},
		{`{"bridge": `, `invalid JSON`},
		{`{"owner": 4294967296}`, `"owner": 4294967296 is not a valid id`},
		{`{"owner": "4294967295"}`, `"owner": 4294967295 is not a valid id`},
		{`{"group": -1}`, `"group": -1 is not a valid id`},
		{`{"owner": 1e3}`, `"owner": 1e3 is not a valid id`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := Parse([]byte(tt.conf))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse(%s) = %v, want error containing %s", tt.conf, err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if c, err := Load(filepath.Join(dir, "missing"), true); err != nil || c.Bridge != "br0" {
		t.Fatalf("Load(missing, optional) = %v, %v", c, err)
	}
	if _, err := Load(filepath.Join(dir, "missing"), false); err == nil {
		t.Fatal("Load(missing, required) succeeded")
	}
	p := filepath.Join(dir, "bad.conf")
	os.WriteFile(p, []byte(`{"mtu": 1}`), 0o644)
	if _, err := Load(p, true); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("Load(bad) = %v, want error naming the file", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"bridge":"br0","uplink":"eth0","mtu":1500}`,
		`{"owner":"nobody","group":65534,"ips":["192.0.2.1,2001:db8::1"]}`,
		`{"vlan":10,"uplink":"eth0","uplinkVlans":[10,4094]}`, `{"mac":"52:54:00:12:34:56"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		// What Parse accepts must be valid again after a round trip.
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config fails Validate: %v", err)
		}
		if len(c.Bridge) == 0 || len(c.Bridge) > 15 {
			t.Fatalf("accepted bridge %q", c.Bridge)
		}
	})
}

func TestApplyEnv(t *testing.T) {
	env := map[string]string{EnvBridge: "br7", EnvMAC: "52:54:00:aa:bb:cc", EnvIPs: "192.0.2.77,2001:db8::77", EnvVLAN: "10", EnvIsolated: "true"}
	c := &Conf{Bridge: "br0"}
	if err := c.ApplyEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	ips, _ := ParseIPs("ips", c.IPs)
	if c.Bridge != "br7" || c.MAC != "52:54:00:aa:bb:cc" || len(ips) != 2 || c.VLAN != 10 || !c.Isolated {
		t.Fatalf("ApplyEnv: %+v", c)
	}
	env[EnvVLAN] = "ten"
	if err := (&Conf{}).ApplyEnv(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), EnvVLAN) {
		t.Fatalf("bad %s: %v", EnvVLAN, err)
	}
}

func TestUnknownKeysNameTheNearestKnownKey(t *testing.T) {
	tests := []struct{ conf, want string }{
		{`{"macSpoofChek": true, "isolate": true}`, `config: "isolate": unknown key; did you mean "isolated"? (also "macSpoofChek": did you mean "macSpoofCheck"?)`},
		{`{"MacSpoofCheck": true}`, `config: "MacSpoofCheck": unknown key; did you mean "macSpoofCheck"?`},
		{`{"dhcp_guard": false}`, `config: "dhcp_guard": unknown key; did you mean "dhcpGuard"?`},
		{`{"uplinkVlan": [10]}`, `config: "uplinkVlan": unknown key; did you mean "uplinkVlans"?`},
	}
	for _, tt := range tests {
		t.Run(tt.conf, func(t *testing.T) {
			_, err := Parse([]byte(tt.conf))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Parse(%s) = %v\nwant %s", tt.conf, err, tt.want)
			}
		})
	}
	// The keys of CNI itself, and the spec's reserved prefix, are not ours
	// to refuse.
	ok := `{"cniVersion": "1.1.0", "name": "lan", "type": "tapbridge", "capabilities": {"mac": true},
		"ipam": {"type": "static", "anything": 1}, "dns": {}, "args": {"cni": {}}, "runtimeConfig": {"mac": "52:54:00:00:00:02", "other": 1},
		"prevResult": {"cniVersion": "1.1.0"}, "cni.dev/valid-attachments": []}`
	if _, err := Parse([]byte(ok)); err != nil {
		t.Fatalf("Parse(CNI keys) = %v", err)
	}
}

func TestCheckEnv(t *testing.T) {
	if err := CheckEnv([]string{"PATH=/bin", "TAPBRIDGE_MAC=52:54:00:00:00:01", "TAPBRIDGE_RUN_DIR=/tmp/x", "TAPBRIDGEX=1"}); err != nil {
		t.Fatalf("CheckEnv(known) = %v", err)
	}
	err := CheckEnv([]string{"TAPBRIDGE_ISOLATE=1"})
	want := `config: "TAPBRIDGE_ISOLATE": unknown variable; did you mean "TAPBRIDGE_ISOLATED"?`
	if err == nil || err.Error() != want {
		t.Fatalf("CheckEnv(TAPBRIDGE_ISOLATE) = %v, want %s", err, want)
	}
}
