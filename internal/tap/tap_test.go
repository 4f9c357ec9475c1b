package tap

import (
	"errors"
	"testing"

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
