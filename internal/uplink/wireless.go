package uplink

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
)

// isWireless reports whether the link has a wireless (cfg80211) device in
// sysfs. sysfs shows the namespace it was mounted in, so the answer is
// trusted only when sysfs's ifindex for the name matches the link's.
func isWireless(l netlink.Link) bool {
	dir := filepath.Join(sysfs, l.Attrs().Name)
	idx, err := os.ReadFile(filepath.Join(dir, "ifindex"))
	if err != nil || strings.TrimSpace(string(idx)) != strconv.Itoa(l.Attrs().Index) {
		return false
	}
	for _, f := range []string{"wireless", "phy80211"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return true
		}
	}
	return false
}
