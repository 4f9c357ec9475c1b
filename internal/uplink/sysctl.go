package uplink

import "github.com/tapbridge/tapbridge/internal/sysctl"

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// readSysctl returns a per-interface sysctl of the current namespace, or ""
// when it cannot be read.
func readSysctl(family, link, key string) string {
	v, _ := sysctl.Read(sysctl.Iface(family, link, key))
	return v
}

// writeSysctl is best effort: a read-only /proc/sys must not block the
// migration.
func writeSysctl(family, link, key, value string) {
	_ = sysctl.Write(sysctl.Iface(family, link, key), value)
}
