package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"

	"github.com/tapbridge/tapbridge/internal/mac"
)

// EnvRouted is the environment variable through which qemu-ifup is told to
// attach the VM routed ("routed"): "1" or "true".
const EnvRouted = "TAPBRIDGE_ROUTED"

// UplinkMACs is the value of "uplinkMACs": "strict", or a list of MACs.
// When set, only the host's MAC, the listed MACs and the guest MACs of the
// VM ports tapbridge attached may leave through the uplink.
type UplinkMACs struct {
	Strict bool     // "strict" (a list is strict too)
	MACs   []string // the list, as written
}

// UnmarshalJSON accepts "strict" or ["02:00:00:00:00:01", ...].
func (u *UplinkMACs) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		*u = UplinkMACs{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		if s != "strict" {
			return errors.New(`"uplinkMACs": must be "strict" or a list of MACs, got ` + string(b))
		}
		*u = UplinkMACs{Strict: true}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return errors.New(`"uplinkMACs": must be "strict" or a list of MACs, got ` + string(b))
	}
	*u = UplinkMACs{Strict: true, MACs: list}
	return nil
}

// MarshalJSON writes the value as it was given.
func (u UplinkMACs) MarshalJSON() ([]byte, error) {
	if len(u.MACs) > 0 {
		return json.Marshal(u.MACs)
	}
	if u.Strict {
		return json.Marshal("strict")
	}
	return []byte("null"), nil
}

// Enabled reports whether source MACs are checked at the uplink.
func (u *UplinkMACs) Enabled() bool { return u != nil && (u.Strict || len(u.MACs) > 0) }

// Parsed returns the listed MACs.
func (u *UplinkMACs) Parsed() ([]net.HardwareAddr, error) {
	if u == nil {
		return nil, nil
	}
	var out []net.HardwareAddr
	for _, s := range u.MACs {
		m, err := mac.Parse(s)
		if err != nil {
			return nil, fieldErr("uplinkMACs", "%v", err)
		}
		out = append(out, m)
	}
	return out, nil
}

// validateRouted checks "routed" and "uplinkMACs".
func (c *Conf) validateRouted() error {
	if c.UplinkMACs.Enabled() {
		if c.Uplink == "" {
			return fieldErr("uplinkMACs", "needs \"uplink\" (the interface whose outgoing source MACs are checked)")
		}
		if _, err := c.UplinkMACs.Parsed(); err != nil {
			return err
		}
	}
	if !c.Routed {
		return nil
	}
	switch {
	case c.Uplink == "":
		return fieldErr("routed", "needs \"uplink\", the interface facing the provider")
	case c.VLAN != 0:
		return fieldErr("vlan", "has no meaning in routed mode (no bridge)")
	case len(c.UplinkVLANs) > 0:
		return fieldErr("uplinkVlans", "has no meaning in routed mode (no bridge)")
	}
	return nil
}
