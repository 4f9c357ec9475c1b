package config

import (
	"strconv"
	"strings"

	"github.com/tapbridge/tapbridge/internal/failpoint"
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

// Other variables tapbridge reads: the state directory and the bound on
// lock waits (package state), the journal socket (package event, for
// tests), fault injection for the crash tests (package failpoint), and what
// the test suites pass on to the binaries they run.
const (
	EnvRunDir         = "TAPBRIDGE_RUN_DIR"
	EnvLockTimeout    = "TAPBRIDGE_LOCK_TIMEOUT"
	EnvJournalSocket  = "TAPBRIDGE_JOURNAL_SOCKET"
	EnvFailpoint      = failpoint.EnvKill
	EnvFailpointTrace = failpoint.EnvTrace
	EnvBinDir         = "TAPBRIDGE_BIN_DIR"
	// EnvKernelGuest is set by the distribution-kernel test suite in its
	// guest, whose test binaries pass it on to tapbridge's.
	EnvKernelGuest = "TAPBRIDGE_KERNEL_GUEST"
)

// knownEnv is every TAPBRIDGE_ variable that means something.
var knownEnv = []string{EnvConf, EnvBridge, EnvMAC, EnvIPs, EnvVLAN, EnvIsolated, EnvRouted, EnvRunDir, EnvLockTimeout, EnvJournalSocket, EnvFailpoint, EnvFailpointTrace, EnvBinDir, EnvKernelGuest}

// CheckEnv refuses a TAPBRIDGE_ variable in environ ("KEY=VALUE" strings,
// os.Environ) that tapbridge does not know, naming the nearest one it does:
// a misspelled TAPBRIDGE_ISOLATE would otherwise leave a VM unisolated.
func CheckEnv(environ []string) error {
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		// TAPBRIDGE_TEST_* belong to the test suites (test/kernel) and are
		// never read by tapbridge itself.
		if !strings.HasPrefix(k, "TAPBRIDGE_") || strings.HasPrefix(k, "TAPBRIDGE_TEST_") {
			continue
		}
		known := false
		for _, n := range knownEnv {
			known = known || k == n
		}
		if !known {
			return fieldErr(k, "unknown variable; did you mean %q?", Nearest(k, knownEnv))
		}
	}
	return nil
}

// HookUsage is the --help of the QEMU front end (package qemuhook), whose
// man pages tapbridge man makes from it too: here, beside the variables
// it names, so that neither front end imports the other.
const HookUsage = `Usage:
  qemu-ifup IFNAME                                   (QEMU -netdev tap,script=...)
  qemu-ifdown IFNAME                                 (QEMU -netdev tap,downscript=...)
  tapbridge-bridge-helper [--use-vnet] --br=BRIDGE --fd=N (QEMU -netdev bridge,helper=...)

Environment: TAPBRIDGE_CONF (default /etc/tapbridge/tapbridge.conf),
TAPBRIDGE_BRIDGE, TAPBRIDGE_MAC, TAPBRIDGE_IPS, TAPBRIDGE_VLAN,
TAPBRIDGE_ISOLATED, TAPBRIDGE_ROUTED, TAPBRIDGE_RUN_DIR. See docs/qemu.md
and docs/routed.md.
`
