package config

import (
	"strconv"
	"strings"
)

// Environment variables through which a QEMU hook gets per-VM values: QEMU
// passes its own environment on to the scripts, so a VM's launcher sets
// them next to the -netdev option.
const (
	EnvConf     = "TAPBRIDGE_CONF"     // configuration file
	EnvBridge   = "TAPBRIDGE_BRIDGE"   // overrides "bridge"
	EnvMAC      = "TAPBRIDGE_MAC"      // the guest MAC ("mac")
	EnvIPs      = "TAPBRIDGE_IPS"      // the guest's allowed IPs, comma-separated ("ips")
	EnvVLAN     = "TAPBRIDGE_VLAN"     // access VLAN ("vlan")
	EnvIsolated = "TAPBRIDGE_ISOLATED" // "1" or "true" ("isolated")
)

// ApplyEnv overrides file values with the per-VM environment variables
// above, read through getenv (os.Getenv), then validates.
func (c *Conf) ApplyEnv(getenv func(string) string) error {
	if v := getenv(EnvBridge); v != "" {
		c.Bridge = v
	}
	if v := getenv(EnvMAC); v != "" {
		c.MAC = v
	}
	if v := getenv(EnvIPs); v != "" {
		c.IPs = []string{v}
	}
	if v := getenv(EnvVLAN); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fieldErr(EnvVLAN, "must be a number between 1 and 4094, got %q", v)
		}
		c.VLAN = n
	}
	if v := getenv(EnvIsolated); v != "" {
		b, err := strconv.ParseBool(strings.ToLower(v))
		if err != nil {
			return fieldErr(EnvIsolated, "must be true or false, got %q", v)
		}
		c.Isolated = b
	}
	if v := getenv(EnvRouted); v != "" {
		b, err := strconv.ParseBool(strings.ToLower(v))
		if err != nil {
			return fieldErr(EnvRouted, "must be true or false, got %q", v)
		}
		c.Routed = b
	}
	return c.Validate()
}
