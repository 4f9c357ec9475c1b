package uplink

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

// Wi-Fi devices cannot be created in a test namespace (mac80211_hwsim makes
// them in the root namespace), so the check is run against a fake sysfs.
func TestCheckRefusesWiFi(t *testing.T) {
	tests := []struct {
		name    string
		files   []string
		ifindex int
		want    bool
	}{
		{"wireless dir", []string{"wireless"}, 7, true},
		{"phy80211 link", []string{"phy80211"}, 7, true},
		{"ethernet", nil, 7, false},
		{"other namespace's sysfs", []string{"wireless"}, 8, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "wlan0")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "ifindex"), []byte(strconv.Itoa(tt.ifindex)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, f := range tt.files {
				if err := os.Mkdir(filepath.Join(dir, f), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			old := sysfs
			sysfs = root
			t.Cleanup(func() { sysfs = old })

			attrs := netlink.NewLinkAttrs()
			attrs.Name, attrs.Index, attrs.EncapType, attrs.MTU = "wlan0", 7, "ether", 1500
			attrs.HardwareAddr = []byte{0x52, 0x54, 0, 1, 2, 3}
			err := checkBridgeable(Options{Bridge: "br0", Uplink: "wlan0"}, &netlink.Device{LinkAttrs: attrs})
			got := err != nil && strings.Contains(err.Error(), "Wi-Fi")
			if got != tt.want {
				t.Fatalf("checkBridgeable() = %v, want Wi-Fi refusal %v", err, tt.want)
			}
			if got && !errors.Is(err, ErrNotBridgeable) {
				t.Fatalf("checkBridgeable() = %v, want ErrNotBridgeable", err)
			}
		})
	}
}
