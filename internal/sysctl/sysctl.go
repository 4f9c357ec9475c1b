// Package sysctl reads and writes kernel parameters under /proc/sys. What
// /proc/sys/net shows is the network namespace of the thread that opens it,
// so callers working in another namespace do so from a thread inside it
// (pkg/ns). It never decides what to set: uplink, routed and front do.
package sysctl

import (
	"fmt"
	"os"
	"path"
	"strings"
)

// root is where the parameters live; a variable for tests.
var root = "/proc/sys/"

// Iface is the key of a per-interface parameter, e.g. Iface("ipv4", "eth0",
// "rp_filter") is "net/ipv4/conf/eth0/rp_filter".
func Iface(family, link, name string) string {
	return path.Join("net", family, "conf", link, name)
}

// Read returns the value of key (a path under /proc/sys), trimmed.
func Read(key string) (string, error) {
	b, err := os.ReadFile(root + key)
	if err != nil {
		return "", fmt.Errorf("reading sysctl %s: %w", dotted(key), err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Write sets key (a path under /proc/sys) to v.
func Write(key, v string) error {
	if err := os.WriteFile(root+key, []byte(v), 0o644); err != nil {
		return fmt.Errorf("setting sysctl %s=%s: %w", dotted(key), v, err)
	}
	return nil
}

// dotted is key as sysctl(8) names it.
func dotted(key string) string { return strings.ReplaceAll(key, "/", ".") }
