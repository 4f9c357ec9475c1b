package tap

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/nstest"

	"github.com/vishvananda/netlink"
)

func TestCreateInspectDelete(t *testing.T) {
	nstest.Run(t, func() {
		if _, err := Create("tap0", Options{Owner: 65534, Group: 65534, VnetHdr: true}); err != nil {
			t.Fatal(err)
		}
		info, err := Inspect("tap0")
		if err != nil {
			t.Fatal(err)
		}
		if want := (Info{Owner: 65534, Group: 65534, Persistent: true, VnetHdr: true}); info != want {
			t.Errorf("Inspect = %+v, want %+v", info, want)
		}
		// A leftover TAP (a crashed QEMU's) is reused, with the new owner.
		if _, err := Create("tap0", Options{Owner: 1000, Group: NoID, VnetHdr: true}); err != nil {
			t.Fatalf("re-Create: %v", err)
		}
		if info, _ := Inspect("tap0"); info.Owner != 1000 || info.Group != NoID {
			t.Errorf("re-Create kept owner/group %d/%d", info.Owner, info.Group)
		}
		// One held open by a process is busy.
		f, name, err := Open("tap0", Options{Owner: NoID, Group: NoID, VnetHdr: true})
		if err != nil || name != "tap0" {
			t.Fatalf("Open = %q, %v", name, err)
		}
		if _, err := Create("tap0", Options{Owner: NoID, Group: NoID, VnetHdr: true}); !errors.Is(err, ErrBusy) {
			t.Errorf("Create(busy) = %v, want ErrBusy", err)
		}
		f.Close()
		if err := Delete("tap0"); err != nil {
			t.Fatal(err)
		}
		if err := Delete("tap0"); err != nil {
			t.Fatalf("second Delete = %v", err)
		}
	})
}

func TestOpenIsNotPersistent(t *testing.T) {
	nstest.Run(t, func() {
		f, name, err := Open("tap%d", DefaultOptions)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := netlink.LinkByName(name); err != nil {
			t.Fatalf("TAP %q not there while open: %v", name, err)
		}
		f.Close()
		if _, err := netlink.LinkByName(name); err == nil {
			t.Fatalf("TAP %q outlived its descriptor", name)
		}
	})
}

func TestDeleteRefusesNonTAP(t *testing.T) {
	nstest.Run(t, func() {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "v0"}, PeerName: "v0p"}); err != nil {
			t.Fatal(err)
		}
		if err := Delete("v0"); !errors.Is(err, ErrNotTAP) {
			t.Fatalf("Delete(veth) = %v, want ErrNotTAP", err)
		}
		if _, err := Create("v0", DefaultOptions); !errors.Is(err, ErrNotTAP) {
			t.Fatalf("Create over a veth = %v, want ErrNotTAP", err)
		}
	})
}

// TestCreateNeverDeletesAHeldMultiQueueTAP: a QEMU holds a multi-queue TAP
// (here: a descriptor of the test, one queue of it even disabled, as a
// guest using fewer queues makes QEMU do); `tap add` without
// --multi-queue must refuse instead of deleting and recreating it under
// the QEMU, which would be left with a dead descriptor.
func TestCreateNeverDeletesAHeldMultiQueueTAP(t *testing.T) {
	for _, tt := range []struct {
		name   string
		detach bool
	}{{"queue attached", false}, {"queue disabled", true}} {
		t.Run(tt.name, func(t *testing.T) {
			nstest.Run(t, func() {
				mq := Options{Owner: NoID, Group: NoID, MultiQueue: true}
				if _, err := Create("mq0", mq); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = Delete("mq0") })
				before, err := netlink.LinkByName("mq0")
				if err != nil {
					t.Fatal(err)
				}
				held, _, err := Open("mq0", mq)
				if err != nil {
					t.Fatal(err)
				}
				defer held.Close()
				if tt.detach {
					req, _ := unix.NewIfreq("")
					req.SetUint16(unix.IFF_DETACH_QUEUE)
					if err := unix.IoctlIfreq(int(held.Fd()), unix.TUNSETQUEUE, req); err != nil {
						t.Fatalf("TUNSETQUEUE detach: %v", err)
					}
				}
				if busy, err := InUse("mq0"); err != nil || !busy {
					t.Errorf("InUse = %v, %v; want true", busy, err)
				}
				_, err = Create("mq0", DefaultOptions)
				if !errors.Is(err, ErrBusy) {
					t.Errorf("Create(single-queue) over a held multi-queue TAP = %v, want ErrBusy", err)
				}
				after, err := netlink.LinkByName("mq0")
				if err != nil {
					t.Fatalf("the held TAP is gone: %v", err)
				}
				if after.Attrs().Index != before.Attrs().Index {
					t.Errorf("the held TAP was recreated: ifindex %d, was %d", after.Attrs().Index, before.Attrs().Index)
				}
				held.Close()
				if busy, err := InUse("mq0"); err != nil || busy {
					t.Errorf("InUse after close = %v, %v; want false", busy, err)
				}
				if _, err := Create("mq0", DefaultOptions); err != nil {
					t.Errorf("Create once nobody holds it: %v", err)
				}
			})
		})
	}
}
