package vmport

import (
	"net"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/macguard"
	"github.com/tapbridge/tapbridge/internal/nstest"
	"github.com/tapbridge/tapbridge/internal/routed"
	"github.com/tapbridge/tapbridge/internal/tap"
)

// providerUplink adds eth0 (a veth) with 192.0.2.10/24, up.
func providerUplink(t *testing.T) {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name = "eth0"
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "provider"}); err != nil {
		t.Fatal(err)
	}
	l, _ := netlinksafe.LinkByName("eth0")
	a, _ := netlink.ParseAddr("192.0.2.10/24")
	if err := netlink.AddrAdd(l, a); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
}

// TestAttachRouted: "routed" takes the routed path, makes no bridge, and a
// Detach with nothing but the bridge name (as qemu-ifdown has) undoes it.
func TestAttachRouted(t *testing.T) {
	nstest.Run(t, func() {
		providerUplink(t)
		if _, err := tap.Create("tap0", tap.DefaultOptions); err != nil {
			t.Fatal(err)
		}
		c := &config.Conf{Routed: true, Uplink: "eth0", IPs: []string{"192.0.2.60"}}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		if err := Attach(c, Port{Name: "tap0"}); err != nil {
			t.Fatal(err)
		}
		if err := Check(c, "tap0"); err != nil {
			t.Errorf("Check = %v", err)
		}
		if _, err := netlinksafe.LinkByName("br0"); err == nil {
			t.Error("a routed attach made a bridge")
		}
		if err := Detach(&config.Conf{Bridge: "br0"}, "tap0"); err != nil {
			t.Fatal(err)
		}
		if routed.Is("tap0") {
			t.Error("the routed record is left after Detach")
		}
		if err := Check(c, "tap0"); err == nil || !strings.Contains(err.Error(), "not a routed port") {
			t.Errorf("Check after Detach = %v", err)
		}
	})
}

// TestKnownMACWithdrawnWhenAttachFails: with "uplinkMACs", a failed attach
// leaves no guest MAC allowed out of the uplink.
func TestKnownMACWithdrawnWhenAttachFails(t *testing.T) {
	nstest.Run(t, func() {
		providerUplink(t)
		c := &config.Conf{Bridge: "brx", UplinkMACs: &config.UplinkMACs{Strict: true}, Uplink: "eth0", MAC: "52:54:00:00:00:07"}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		if err := Attach(c, Port{Name: "gone0"}); err == nil {
			t.Fatal("Attach of a missing port succeeded")
		}
		ms, err := macguard.Known("eth0")
		if err != nil {
			t.Fatal(err)
		}
		guest, _ := net.ParseMAC(c.MAC)
		for _, m := range ms {
			if m.String() == guest.String() {
				t.Errorf("guest MAC %s still allowed out after a failed attach", guest)
			}
		}
	})
}
