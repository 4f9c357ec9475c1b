package vmport

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/link"
	"github.com/tapbridge/tapbridge/internal/nstest"
	"github.com/tapbridge/tapbridge/internal/tap"
	"github.com/tapbridge/tapbridge/internal/testkit"
)

func TestAddDeleteTAP(t *testing.T) {
	nstest.Run(t, func() {
		c := &config.Conf{MTU: 9000, Owner: &config.ID{Name: "nobody", Value: -1}, VnetHdr: true}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		res, err := AddTAP(c, "tap1")
		if err != nil {
			t.Fatal(err)
		}
		if !res.Changed || res.MTU != 9000 || !strings.HasPrefix(res.MAC, "fe:") {
			t.Errorf("AddTAP = %+v", res)
		}
		info, err := tap.Inspect("tap1")
		want := tap.Info{Owner: 65534, Group: tap.NoID, Persistent: true, VnetHdr: true}
		if err != nil || info != want {
			t.Errorf("tap1 = %+v, %v; want %+v", info, err, want)
		}
		if again, err := AddTAP(c, "tap1"); err != nil || again.Changed {
			t.Errorf("second AddTAP = %+v, %v; want no change", again, err)
		}
		// While a QEMU holds it, add is still fine and del refuses.
		f, _, err := tap.Open("tap1", tap.Options{Owner: 65534, Group: tap.NoID, VnetHdr: true})
		if err != nil {
			t.Fatal(err)
		}
		if again, err := AddTAP(c, "tap1"); err != nil || again.Changed {
			t.Errorf("AddTAP while in use = %+v, %v", again, err)
		}
		if _, err := DeleteTAP(c, "tap1"); !errors.Is(err, tap.ErrBusy) {
			t.Errorf("DeleteTAP while in use = %v, want ErrBusy", err)
		}
		f.Close()
		if res, err := DeleteTAP(c, "tap1"); err != nil || !res.Changed {
			t.Fatalf("DeleteTAP = %+v, %v", res, err)
		}
		if _, err := link.Get("tap1"); !errors.Is(err, link.ErrNotFound) {
			t.Errorf("tap1 after delete: %v", err)
		}
		if res, err := DeleteTAP(c, "tap1"); err != nil || res.Changed {
			t.Errorf("second DeleteTAP = %+v, %v", res, err)
		}
	})
}

func TestAddTAPFailureLeavesNothing(t *testing.T) {
	nstest.Run(t, func() {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "br0"}, PeerName: "br0p"}); err != nil {
			t.Fatal(err)
		}
		before := testkit.Links(t)
		c := &config.Conf{}
		_ = c.Validate()
		if _, err := AddTAP(c, "tap1"); err == nil || !strings.Contains(err.Error(), "not a bridge") {
			t.Fatalf("AddTAP = %v", err)
		}
		if diff := cmp.Diff(before, testkit.Links(t)); diff != "" {
			t.Errorf("links changed (-before +after):\n%s", diff)
		}
		// And no link that is not a TAP is ever deleted or detached.
		if _, err := DeleteTAP(c, "br0p"); err == nil || !strings.Contains(err.Error(), "not a TAP") {
			t.Errorf("DeleteTAP(veth) = %v", err)
		}
		if _, err := AddTAP(c, "br0p"); err == nil || !strings.Contains(err.Error(), "not a TAP") {
			t.Errorf("AddTAP(veth) = %v", err)
		}
		if diff := cmp.Diff(before, testkit.Links(t)); diff != "" {
			t.Errorf("links changed (-before +after):\n%s", diff)
		}
	})
}
