package bridge

import (
	"errors"
	"net"
	"testing"

	"github.com/tapbridge/tapbridge/internal/link"
	"github.com/tapbridge/tapbridge/internal/nstest"

	"github.com/vishvananda/netlink"
)

func TestEnsureCreatesWithMACAndMTU(t *testing.T) {
	nstest.Run(t, func() {
		hw, _ := net.ParseMAC("52:54:00:12:34:56")
		br, created, err := Ensure(Spec{Name: "br0", MAC: hw, MTU: 9000})
		if err != nil || !created {
			t.Fatalf("Ensure = %v, created %v", err, created)
		}
		if br.Attrs().HardwareAddr.String() != hw.String() || br.Attrs().MTU != 9000 || br.Attrs().Flags&net.FlagUp == 0 {
			t.Fatalf("bridge: MAC %s MTU %d flags %v", br.Attrs().HardwareAddr, br.Attrs().MTU, br.Attrs().Flags)
		}
		if _, created, err := Ensure(Spec{Name: "br0"}); err != nil || created {
			t.Fatalf("second Ensure = %v, created %v", err, created)
		}

		// A 1500-byte port joining a jumbo bridge gets the bridge's MTU
		// instead of lowering it, and a 0xFE MAC so the bridge keeps its own.
		port := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vm0", MTU: 1500}, PeerName: "vm0p"}
		if err := netlink.LinkAdd(port); err != nil {
			t.Fatal(err)
		}
		l, _ := link.Get("vm0")
		if err := Attach(l, br, true); err != nil {
			t.Fatal(err)
		}
		if err := Attach(l, br, true); err != nil {
			t.Fatalf("second Attach: %v", err)
		}
		l, _ = link.Get("vm0")
		br2, _ := Get("br0")
		if l.Attrs().MTU != 9000 || l.Attrs().HardwareAddr[0] != 0xFE || l.Attrs().MasterIndex != br.Attrs().Index {
			t.Errorf("port: MTU %d MAC %s master %d", l.Attrs().MTU, l.Attrs().HardwareAddr, l.Attrs().MasterIndex)
		}
		if br2.Attrs().MTU != 9000 || br2.Attrs().HardwareAddr.String() != hw.String() {
			t.Errorf("bridge changed: MTU %d MAC %s", br2.Attrs().MTU, br2.Attrs().HardwareAddr)
		}
		if err := Detach("vm0"); err != nil {
			t.Fatal(err)
		}
		if err := Detach("gone"); err != nil {
			t.Fatalf("Detach(gone) = %v", err)
		}
		if err := Delete("br0"); err != nil {
			t.Fatal(err)
		}
		if err := Delete("br0"); err != nil {
			t.Fatalf("second Delete = %v", err)
		}
	})
}

func TestEnsureRefusesNonBridge(t *testing.T) {
	nstest.Run(t, func() {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "br0"}, PeerName: "br0p"}); err != nil {
			t.Fatal(err)
		}
		_, _, err := Ensure(Spec{Name: "br0"})
		if !errors.Is(err, ErrNotBridge) {
			t.Fatalf("Ensure(veth) = %v, want ErrNotBridge", err)
		}
		if _, _, err := Ensure(Spec{Name: "br0 x"}); err == nil {
			t.Fatal("Ensure accepted a name with a space")
		}
	})
}
