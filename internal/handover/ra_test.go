package handover

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/nstest"
)

// TestMoveRAWithoutRouter: an uplink with an RA-learned default route and
// accept_ra=2 (a forwarding host), moved to a bridge that hears no router:
// the bridge gets accept_ra=2, the uplink keeps its route, and the result
// is a warning, not an error.
func TestMoveRAWithoutRouter(t *testing.T) {
	nstest.Run(t, func() {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "up0"}, PeerName: "up0p"}); err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br9"}}); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"up0", "up0p", "br9"} {
			l, _ := netlink.LinkByName(n)
			if err := netlink.LinkSetUp(l); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/up0/accept_ra", []byte("2"), 0o644); err != nil {
			t.Fatal(err)
		}
		up, _ := netlink.LinkByName("up0")
		_, dflt, _ := net.ParseCIDR("::/0")
		ra := &netlink.Route{LinkIndex: up.Attrs().Index, Dst: dflt, Gw: net.ParseIP("fe80::1"), Protocol: unix.RTPROT_RA, Flags: int(netlink.FLAG_ONLINK)}
		if err := netlink.RouteAdd(ra); err != nil {
			t.Fatal(err)
		}
		msg, err := moveRA("up0", "br9", 300*time.Millisecond, true)
		if err != nil {
			t.Fatal(err)
		}
		if want := `warning: no router advertisement on "br9" within 300ms`; !strings.HasPrefix(msg, want) {
			t.Errorf("moveRA: %q, want %q...", msg, want)
		}
		if got, _ := os.ReadFile("/proc/sys/net/ipv6/conf/br9/accept_ra"); strings.TrimSpace(string(got)) != "2" {
			t.Errorf("br9 accept_ra = %q, want 2", got)
		}
		if rs, err := raDefaultRoutes(up); err != nil || len(rs) != 1 {
			t.Errorf("up0's RA routes: %v, %v; want the one kept", rs, err)
		}
		// Without an RA-learned route there is nothing to wait for.
		if msg, err := moveRA("up0p", "br9", time.Minute, true); msg != "" || err != nil {
			t.Errorf("moveRA without RA routes: %q, %v", msg, err)
		}
	})
}
