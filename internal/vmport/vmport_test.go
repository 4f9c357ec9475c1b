package vmport

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/tapbridge/tapbridge/internal/nstest"
	"github.com/tapbridge/tapbridge/internal/policy"

	"github.com/vishvananda/netlink"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/link"
	"github.com/tapbridge/tapbridge/internal/tap"
)

func TestAttachDetach(t *testing.T) {
	nstest.Run(t, func() {
		c := &config.Conf{MTU: 9000}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		if _, err := tap.Create("tap0", tap.DefaultOptions); err != nil {
			t.Fatal(err)
		}
		if err := Attach(c, Port{Name: "tap0"}); err != nil {
			t.Fatal(err)
		}
		if err := Check(c, "tap0"); err != nil {
			t.Fatalf("Check after Attach: %v", err)
		}
		l, _ := link.Get(BridgePort("tap0"))
		if l.Attrs().Name != "tbv5169db6302" || l.Attrs().MTU != 9000 || l.Attrs().HardwareAddr[0] != 0xFE {
			t.Errorf("port of tap0: %s MTU %d MAC %s; want tbv5169db6302, 9000, fe:...", l.Attrs().Name, l.Attrs().MTU, l.Attrs().HardwareAddr)
		}
		if err := Detach(c, "tap0"); err != nil {
			t.Fatal(err)
		}
		if err := Check(c, "tap0"); err == nil || !errors.Is(err, link.ErrNotFound) {
			t.Fatalf("Check after Detach = %v; want its front gone", err)
		}
		_ = tap.Delete("tap0")
		if err := Detach(c, "tap0"); err != nil {
			t.Fatalf("Detach(gone) = %v", err)
		}
	})
}

func TestAttachToNonBridgeChangesNothing(t *testing.T) {
	nstest.Run(t, func() {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "br0"}, PeerName: "br0p"}); err != nil {
			t.Fatal(err)
		}
		if _, err := tap.Create("tap0", tap.DefaultOptions); err != nil {
			t.Fatal(err)
		}
		before, _ := link.Get("tap0")
		c := &config.Conf{}
		_ = c.Validate()
		err := Attach(c, Port{Name: "tap0"})
		if err == nil || !strings.Contains(err.Error(), `bridge "br0" exists and is not a bridge`) {
			t.Fatalf("Attach = %v", err)
		}
		after, _ := link.Get("tap0")
		if after.Attrs().MasterIndex != 0 || after.Attrs().MTU != before.Attrs().MTU || after.Attrs().HardwareAddr.String() != before.Attrs().HardwareAddr.String() {
			t.Errorf("tap0 changed by a failed Attach")
		}
	})
}

// BenchmarkAttach measures attaching one more TAP to a bridge that already
// has 0 or 1000 ports: the cost must not grow with the number of VMs. (A
// Linux bridge takes at most 1024 ports, so each new port is detached again,
// untimed, before the next.)
func BenchmarkAttach(b *testing.B) {
	for _, existing := range []int{0, 1000} {
		b.Run(fmt.Sprintf("ports=%d", existing), func(b *testing.B) {
			nstest.Run(b, func() {
				c := &config.Conf{}
				_ = c.Validate()
				for i := 0; i < existing; i++ {
					name := fmt.Sprintf("old%d", i)
					if _, err := tap.Create(name, tap.DefaultOptions); err != nil {
						b.Fatal(err)
					}
					if err := Attach(c, Port{Name: name}); err != nil {
						b.Fatal(err)
					}
				}
				for i := 0; i < b.N; i++ {
					if _, err := tap.Create(fmt.Sprintf("new%d", i), tap.DefaultOptions); err != nil {
						b.Fatal(err)
					}
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					name := fmt.Sprintf("new%d", i)
					if err := Attach(c, Port{Name: name}); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					if err := Detach(c, name); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
			})
		})
	}
}

func TestPruneRemovesPoliciesOfVanishedPorts(t *testing.T) {
	nstest.Run(t, func() {
		c := &config.Conf{}
		_ = c.Validate() // dhcpGuard and raGuard are on: every port has a chain
		for _, n := range []string{"tap0", "tap1"} {
			if _, err := tap.Create(n, tap.DefaultOptions); err != nil {
				t.Fatal(err)
			}
			if err := Attach(c, Port{Name: n}); err != nil {
				t.Fatal(err)
			}
		}
		_ = tap.Delete("tap0") // gone without a Detach, like a helper's TAP
		pruned, err := Prune()
		if err != nil || len(pruned) != 1 || pruned[0] != "tap0" {
			t.Fatalf("Prune = %v, %v; want [tap0]", pruned, err)
		}
		left, _ := policy.Ports()
		if len(left) != 1 || left[0] != BridgePort("tap1") {
			t.Fatalf("policies left: %v, want [%s] (tap1's front)", left, BridgePort("tap1"))
		}
		if _, err := link.Get("tbv5169db6302"); !errors.Is(err, link.ErrNotFound) {
			t.Errorf("the front of the vanished tap0 is still there: %v", err)
		}
		if pruned, err := Prune(); err != nil || len(pruned) != 0 {
			t.Fatalf("second Prune = %v, %v", pruned, err)
		}
	})
}

// A TAP that gets the name of one that vanished without a Detach (the
// helper's tap%d, a QEMU killed with SIGKILL) takes over its front: the
// same port, rewired to the new TAP, with the new VM's policy, up, and
// nothing else left of the old one.
func TestAttachTakesOverTheFrontOfAVanishedTAP(t *testing.T) {
	nstest.Run(t, func() {
		c := &config.Conf{MACSpoofCheck: true}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		if _, err := tap.Create("tap0", tap.DefaultOptions); err != nil {
			t.Fatal(err)
		}
		if err := Attach(c, Port{Name: "tap0", GuestMAC: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		old, err := link.Get("tbv5169db6302")
		if err != nil {
			t.Fatal(err)
		}
		_ = tap.Delete("tap0") // gone without a Detach
		if _, err := tap.Create("tap0", tap.DefaultOptions); err != nil {
			t.Fatal(err)
		}
		if err := Attach(c, Port{Name: "tap0", GuestMAC: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 2}}); err != nil {
			t.Fatal(err)
		}
		if err := Check(c, "tap0"); err != nil {
			t.Errorf("Check after the takeover: %v", err)
		}
		now, err := link.Get("tbv5169db6302")
		if err != nil || now.Attrs().Index != old.Attrs().Index {
			t.Errorf("front after the takeover: %v, ifindex %v; want the old one, %d", err, now, old.Attrs().Index)
		}
		if ports, err := policy.Ports(); err != nil || len(ports) != 1 || ports[0] != "tbv5169db6302" {
			t.Errorf("policies = %v, %v; want [tbv5169db6302]", ports, err)
		}
		if err := Detach(c, "tap0"); err != nil {
			t.Fatal(err)
		}
		if pruned, err := Prune(); err != nil || len(pruned) != 0 {
			t.Errorf("Prune after Detach = %v, %v; want nothing", pruned, err)
		}
	})
}

func TestFailedAttachLeavesNoNewBridge(t *testing.T) {
	nstest.Run(t, func() {
		c := &config.Conf{}
		_ = c.Validate()
		if err := Attach(c, Port{Name: "gone0"}); err == nil {
			t.Fatal("Attach of a missing port succeeded")
		}
		if _, err := link.Get("br0"); err == nil {
			t.Fatal("a failed Attach left the bridge it created")
		}
	})
}
