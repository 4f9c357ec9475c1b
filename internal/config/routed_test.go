package config

import (
	"strings"
	"testing"
)

func TestRoutedKeys(t *testing.T) {
	for _, tc := range []struct {
		conf    string
		wantErr string // "" for valid
	}{
		{`{"routed": true, "uplink": "eth0"}`, ""},
		{`{"routed": true}`, `config: "routed": needs "uplink", the interface facing the provider`},
		{`{"routed": true, "uplink": "eth0", "vlan": 10}`, `config: "vlan": has no meaning in routed mode`},
		{`{"routed": true, "uplink": "eth0", "uplinkVlans": [10]}`, `config: "uplinkVlans": has no meaning in routed mode`},
		{`{"routed": "yes", "uplink": "eth0"}`, `"routed": must be bool`},
		{`{"uplink": "eth0", "uplinkMACs": "strict"}`, ""},
		{`{"uplink": "eth0", "uplinkMACs": ["02:00:00:00:0a:01", "02:00:00:00:0a:02"]}`, ""},
		{`{"uplinkMACs": "strict"}`, `config: "uplinkMACs": needs "uplink"`},
		{`{"uplink": "eth0", "uplinkMACs": "loose"}`, `"uplinkMACs": must be "strict" or a list of MACs, got "loose"`},
		{`{"uplink": "eth0", "uplinkMACs": ["02:00:00:00:0a"]}`, `config: "uplinkMACs":`},
		{`{"uplink": "eth0", "uplinkMACs": 1}`, `"uplinkMACs": must be "strict" or a list of MACs, got 1`},
	} {
		t.Run(tc.conf, func(t *testing.T) {
			_, err := Parse([]byte(tc.conf))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Parse = %v, want no error", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Parse = %v, want an error containing %q", err, tc.wantErr)
			case err != nil && strings.Contains(err.Error(), "\n"):
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestUplinkMACsRoundTrip(t *testing.T) {
	for _, in := range []string{`"strict"`, `["02:00:00:00:0a:01"]`} {
		c, err := Parse([]byte(`{"uplink": "eth0", "uplinkMACs": ` + in + `}`))
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.UplinkMACs.MarshalJSON()
		if err != nil || string(out) != in {
			t.Errorf("uplinkMACs %s marshals to %s, %v", in, out, err)
		}
		if !c.UplinkMACs.Enabled() {
			t.Errorf("uplinkMACs %s: not enabled", in)
		}
	}
}

func TestRoutedEnv(t *testing.T) {
	for _, tc := range []struct {
		v       string
		want    bool
		wantErr string
	}{
		{"1", true, ""}, {"true", true, ""}, {"0", false, ""}, {"TRUE", true, ""},
		{"yes", false, `config: "TAPBRIDGE_ROUTED": must be true or false, got "yes"`},
	} {
		c := &Conf{Uplink: "eth0"}
		err := c.ApplyEnv(func(k string) string {
			if k == EnvRouted {
				return tc.v
			}
			return ""
		})
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("TAPBRIDGE_ROUTED=%s: %v, want %q", tc.v, err, tc.wantErr)
			}
			continue
		}
		if err != nil || c.Routed != tc.want {
			t.Errorf("TAPBRIDGE_ROUTED=%s: routed %t, %v; want %t", tc.v, c.Routed, err, tc.want)
		}
	}
}

func TestCheckEnvKnowsRouted(t *testing.T) {
	if err := CheckEnv([]string{"TAPBRIDGE_ROUTED=1"}); err != nil {
		t.Errorf("CheckEnv(TAPBRIDGE_ROUTED) = %v", err)
	}
}
