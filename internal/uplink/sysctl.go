package uplink

import (
	"os"
	"path/filepath"
	"strings"
)

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func sysctlPath(family, link, key string) string {
	return filepath.Join("/proc/sys/net", family, "conf", link, key)
}

// readSysctl returns a per-interface sysctl of the current namespace, or ""
// when it cannot be read.
func readSysctl(family, link, key string) string {
	b, err := os.ReadFile(sysctlPath(family, link, key))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// writeSysctl is best effort: a read-only /proc/sys must not block the
// migration.
func writeSysctl(family, link, key, value string) {
	_ = os.WriteFile(sysctlPath(family, link, key), []byte(value), 0o644)
}
