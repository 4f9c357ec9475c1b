package front

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/bridge"
	"github.com/tapbridge/tapbridge/internal/link"
	"github.com/tapbridge/tapbridge/internal/nstest"
	"github.com/tapbridge/tapbridge/internal/tap"
)

func TestNames(t *testing.T) {
	port, peer := Names("vm1-0")
	if port != "tbvec811b1eb2" || peer != "tbwec811b1eb2" {
		t.Errorf("Names(vm1-0) = %s, %s; want tbvec811b1eb2, tbwec811b1eb2", port, peer)
	}
}

func TestCreateCheckDelete(t *testing.T) {
	nstest.Run(t, func() {
		tl, err := tap.Create("tap0", tap.DefaultOptions)
		if err != nil {
			t.Fatal(err)
		}
		port, created, err := Create(tl, 9000)
		if err != nil || !created {
			t.Fatalf("Create = %v, %v", created, err)
		}
		a := port.Attrs()
		if a.Name != "tbv5169db6302" || a.MTU != 9000 || a.HardwareAddr[0] != 0xFE || a.Flags&net.FlagUp != 0 {
			t.Errorf("port %s: MTU %d MAC %s flags %v; want tbv5169db6302, 9000, fe:..., down", a.Name, a.MTU, a.HardwareAddr, a.Flags)
		}
		if tl, _ = link.Get("tap0"); tl.Attrs().MTU != 9000 || tl.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("tap0: MTU %d flags %v; want 9000, up", tl.Attrs().MTU, tl.Attrs().Flags)
		}
		if _, err := Check(tl); err != nil {
			t.Errorf("Check = %v", err)
		}
		// Idempotent: the same TAP's front is reused.
		if again, created, err := Create(tl, 9000); err != nil || created || again.Attrs().Index != a.Index {
			t.Errorf("second Create = %v, %v, %v; want the same port", again.Attrs().Index, created, err)
		}
		// A new TAP of the same name gets the old front, rewired to it and
		// down (so it forwards nothing before its new policy), not a new
		// one: deleting a veth pair is the slow part of a detach.
		if err := netlink.LinkSetUp(port); err != nil {
			t.Fatal(err)
		}
		_ = tap.Delete("tap0")
		tl, _ = tap.Create("tap0", tap.DefaultOptions)
		if _, err := Check(tl); err == nil || !strings.Contains(err.Error(), "stands for an earlier TAP") {
			t.Errorf("Check against a new TAP = %v", err)
		}
		again, created, err := Create(tl, 9000)
		if err != nil || !created || again.Attrs().Index != a.Index || again.Attrs().Flags&net.FlagUp != 0 {
			t.Errorf("Create for a new TAP = %v, %v, ifindex %d (was %d), flags %v; want the old front rewired, down", created, err, again.Attrs().Index, a.Index, again.Attrs().Flags)
		}
		if _, err := Check(tl); err != nil {
			t.Errorf("Check after rewiring = %v", err)
		}
		if i, ok := Of(again); !ok || i.TAPIndex != tl.Attrs().Index {
			t.Errorf("alias of the rewired front = %q, want the new TAP's ifindex %d", again.Attrs().Alias, tl.Attrs().Index)
		}
		if err := Delete("tap0"); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"tbv5169db6302", "tbw5169db6302"} {
			if _, err := link.Get(n); !errors.Is(err, link.ErrNotFound) {
				t.Errorf("%s after Delete: %v", n, err)
			}
		}
		if _, err := link.Get("tap0"); err != nil {
			t.Errorf("the persistent tap0 after Delete: %v; want it left alone", err)
		}
		if err := Delete("tap0"); err != nil {
			t.Errorf("second Delete = %v", err)
		}
	})
}

// The front of a TAP that QEMU made (not persistent: it goes with QEMU's
// descriptor anyway) is deleted with the TAP, in one kernel operation; a
// link of the same device group that is no part of it stays.
func TestDeleteTakesQEMUsTAPAlong(t *testing.T) {
	nstest.Run(t, func() {
		f, name, err := tap.Open("vm0", tap.DefaultOptions)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		tl, err := link.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		port, _, err := Create(tl, 1500)
		if err != nil {
			t.Fatal(err)
		}
		g := Group(port)
		if g < 1<<29 || g >= 1<<30 {
			t.Errorf("Group = %#x, want between 2^29 and 2^30-1", g)
		}
		for _, n := range []string{port.Attrs().Name, "tbw" + port.Attrs().Name[3:], "vm0"} {
			if l, err := link.Get(n); err != nil || l.Attrs().Group != g {
				t.Errorf("%s: group %v, %v; want %#x", n, l, err, g)
			}
		}
		if err := Delete("vm0"); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{port.Attrs().Name, "tbw" + port.Attrs().Name[3:], "vm0"} {
			if _, err := link.Get(n); !errors.Is(err, link.ErrNotFound) {
				t.Errorf("%s after Delete: %v; want it gone", n, err)
			}
		}
	})
}

// A front an older tapbridge made, whose TAP redirects to the peer rather
// than into the port, is still whole: re-running qemu-ifup on a running VM
// after an upgrade keeps it instead of making it anew.
func TestCheckAcceptsTheOlderShape(t *testing.T) {
	nstest.Run(t, func() {
		tl, port := tapWithFront(t, 1500)
		_, peerName := Names("tap0")
		peer, _ := link.Get(peerName)
		q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: tl.Attrs().Index, Handle: ingressParent, Parent: netlink.HANDLE_INGRESS}}
		if err := netlink.QdiscDel(q); err != nil {
			t.Fatal(err)
		}
		if _, err := Check(tl); err == nil {
			t.Fatal("Check passes for a TAP that redirects nowhere")
		}
		if err := Redirect(tl, peer); err != nil {
			t.Fatal(err)
		}
		if _, err := Check(tl); err != nil {
			t.Errorf("Check of the older shape = %v", err)
		}
		if again, created, err := Create(tl, 1500); err != nil || created || again.Attrs().Index != port.Attrs().Index {
			t.Errorf("Create over the older shape = %v, %v, %v; want the same front kept", again.Attrs().Index, created, err)
		}
	})
}

// The guest's frames enter the bridge through the front's port, and only
// once the port is up: a front that is made, or rewired, is down until its
// policy is in place, and must carry nothing to the bridge meanwhile.
func TestGuestFramesWaitForThePortToBeUp(t *testing.T) {
	nstest.Run(t, func() {
		br, _, err := bridge.Ensure(bridge.Spec{Name: "br0"})
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "sink"}, PeerName: "sinkp"}); err != nil {
			t.Fatal(err)
		}
		// Nothing but the guest's frames: no IPv6 of the host's own (DAD,
		// MLD, router solicitations) on the bridge or the sink.
		for _, n := range []string{"br0", "sink", "sinkp"} {
			DisableIPv6(n)
		}
		sink, _ := link.Get("sink")
		sinkp, _ := link.Get("sinkp")
		if err := bridge.Attach(sink, br, true); err != nil {
			t.Fatal(err)
		}
		for _, l := range []netlink.Link{sink, sinkp} {
			if err := netlink.LinkSetUp(l); err != nil {
				t.Fatal(err)
			}
		}
		f, name, err := tap.Open("vm0", tap.DefaultOptions)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		tl, _ := link.Get(name)
		port, _, err := Create(tl, 1500)
		if err != nil {
			t.Fatal(err)
		}
		if err := bridge.Attach(port, br, true); err != nil {
			t.Fatal(err)
		}
		waitCarrier(t, "sinkp")
		// A broadcast the bridge floods to sink, from the guest.
		frame := make([]byte, 64)
		copy(frame, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0, 0, 1, 0x88, 0xb5})
		send := func() {
			for i := 0; i < 10; i++ {
				if _, err := f.Write(frame); err != nil {
					t.Fatal(err)
				}
			}
		}
		arrived := guestFrames(t, "sinkp")
		send()
		time.Sleep(50 * time.Millisecond) // a frame let through lands within microseconds
		if got := arrived(); got != 0 {
			t.Fatalf("%d of 10 frames crossed the bridge while the front's port was down", got)
		}
		if err := netlink.LinkSetUp(port); err != nil {
			t.Fatal(err)
		}
		waitForwarding(t, port.Attrs().Name)
		send()
		got := 0
		for end := time.Now().Add(2 * time.Second); got < 10; time.Sleep(time.Millisecond) {
			if got += arrived(); time.Now().After(end) {
				t.Fatalf("%d of 10 frames crossed the bridge with the port up", got)
			}
		}
	})
}

// guestFrames captures on the link name and returns how many of the test
// guest's frames (EtherType 0x88b5 from 52:54:00:00:00:01) arrived since
// its last call.
func guestFrames(tb testing.TB, name string) func() int {
	l, err := link.Get(name)
	if err != nil {
		tb.Fatal(err)
	}
	proto := uint16(unix.ETH_P_ALL<<8&0xff00 | unix.ETH_P_ALL>>8)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(proto))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: l.Attrs().Index}); err != nil {
		tb.Fatal(err)
	}
	src := []byte{0x52, 0x54, 0, 0, 0, 1}
	buf := make([]byte, 2048)
	return func() int {
		n := 0
		for {
			k, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				return n
			}
			if k >= 14 && string(buf[6:12]) == string(src) && buf[12] == 0x88 && buf[13] == 0xb5 {
				n++
			}
		}
	}
}

// waitForwarding waits until the port name is up with a carrier (STP is
// off: it forwards from then on).
func waitForwarding(tb testing.TB, name string) {
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if l, err := netlink.LinkByName(name); err == nil && l.Attrs().OperState == netlink.OperUp {
			return
		}
	}
	tb.Fatalf("%s is not up after 2s", name)
}

func TestCreateLeavesForeignLinksAlone(t *testing.T) {
	nstest.Run(t, func() {
		tl, _ := tap.Create("tap0", tap.DefaultOptions)
		// A link of the front's name that is not a front (an admin's).
		if err := netlink.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "tbv5169db6302"}}); err != nil {
			t.Skipf("no dummy links here: %v", err)
		}
		if _, _, err := Create(tl, 1500); !errors.Is(err, ErrNotFront) {
			t.Errorf("Create over a foreign link = %v, want ErrNotFront", err)
		}
		if err := Delete("tap0"); !errors.Is(err, ErrNotFront) {
			t.Errorf("Delete of a foreign link = %v, want ErrNotFront", err)
		}
		if _, err := link.Get("tbv5169db6302"); err != nil {
			t.Errorf("the foreign link is gone: %v", err)
		}
	})
}

func TestStale(t *testing.T) {
	nstest.Run(t, func() {
		// gone: its TAP was deleted; persisted: non-persistent when its
		// front was made, then persisted by its tenant and closed; live: a
		// non-persistent TAP someone holds.
		var files []*os.File
		defer func() {
			for _, f := range files {
				f.Close()
			}
		}()
		for _, n := range []string{"gone", "persisted", "live"} {
			f, _, err := tap.Open(n, tap.DefaultOptions)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
			tl, _ := link.Get(n)
			if _, _, err := Create(tl, 1500); err != nil {
				t.Fatal(err)
			}
		}
		files[0].Close() // "gone" vanishes with its descriptor
		if err := unix.IoctlSetInt(int(files[1].Fd()), unix.TUNSETPERSIST, 1); err != nil {
			t.Fatal(err)
		}
		files[1].Close()
		links, err := netlink.LinkList()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range Stale(links) {
			got = append(got, l.Info.TAP+":"+strconv.FormatBool(l.TAP != nil))
			if err := Remove(l); err != nil {
				t.Fatal(err)
			}
		}
		if strings.Join(got, " ") != "gone:false persisted:true" {
			t.Errorf("Stale = %v, want [gone:false persisted:true]", got)
		}
		for _, n := range []string{"persisted", "tbv" + Names2("gone"), "tbv" + Names2("persisted")} {
			if _, err := link.Get(n); !errors.Is(err, link.ErrNotFound) {
				t.Errorf("%s after Remove: %v", n, err)
			}
		}
		if tl, _ := link.Get("live"); tl != nil {
			if _, err := Check(tl); err != nil {
				t.Errorf("the live TAP's front: %v", err)
			}
		}
	})
}

// Names2 is the hash part of a front's names (sha256("tapbridge-front\x00" + tap), computed independently by python3 for TestNames).
func Names2(tap string) string {
	p, _ := Names(tap)
	return strings.TrimPrefix(p, PortPrefix)
}

func TestProblem(t *testing.T) {
	nstest.Run(t, func() {
		tl, port := tapWithFront(t, 1500)
		if p := Problem(port); p != "" {
			t.Errorf("Problem(a fresh front) = %q", p)
		}
		if p := Problem(tl); !strings.HasPrefix(p, `TAP "tap0" is a port of the bridge itself`) {
			t.Errorf("Problem(a TAP) = %q", p)
		}
		_ = netlink.LinkSetHardwareAddr(port, net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x99})
		port, _ = link.Get(port.Attrs().Name)
		if p := Problem(port); !strings.Contains(p, "has MAC 52:54:00:00:00:99, not the") {
			t.Errorf("Problem(a front with another MAC) = %q", p)
		}
	})
}

// BenchmarkDataPath measures frames/s from a TAP, written as QEMU writes
// them, across a bridge to a veth whose far end counts them: with the TAP
// itself as the bridge port ("direct", what tapbridge did before fronts)
// and through its front.
func BenchmarkDataPath(b *testing.B) {
	for _, size := range []int{64, 1400} {
		for _, mode := range []string{"direct", "front"} {
			b.Run(fmt.Sprintf("%s/%dB", mode, size), func(b *testing.B) {
				nstest.Run(b, func() { dataPath(b, mode, size) })
			})
		}
	}
}

func dataPath(b *testing.B, mode string, size int) {
	br, _, err := bridge.Ensure(bridge.Spec{Name: "br0"})
	if err != nil {
		b.Fatal(err)
	}
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "sink"}, PeerName: "sinkp"}); err != nil {
		b.Fatal(err)
	}
	sink, _ := link.Get("sink")
	sinkp, _ := link.Get("sinkp")
	if err := bridge.Attach(sink, br, true); err != nil {
		b.Fatal(err)
	}
	for _, l := range []netlink.Link{sink, sinkp} {
		if err := netlink.LinkSetUp(l); err != nil {
			b.Fatal(err)
		}
	}
	f, name, err := tap.Open("vm0", tap.DefaultOptions)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	tl, _ := link.Get(name)
	port := tl
	if mode == "front" {
		if port, _, err = Create(tl, 1500); err != nil {
			b.Fatal(err)
		}
	}
	if err := bridge.Attach(port, br, true); err != nil {
		b.Fatal(err)
	}
	for _, l := range []netlink.Link{port, tl} {
		_ = netlink.LinkSetUp(l)
	}
	// A frame the bridge floods to sink: broadcast, from a fixed MAC.
	frame := make([]byte, size)
	copy(frame, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0, 0, 1, 0x88, 0xb5})
	waitCarrier(b, "sinkp")
	start := rxPackets(b, "sinkp")
	b.ResetTimer()
	t0 := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := f.Write(frame); err != nil {
			b.Fatal(err)
		}
	}
	// Frames queued in softirq backlogs land within moments; one that a
	// full backlog dropped never does. The rate is what arrived by the time
	// the count last moved, so a drop costs its frame, not a timeout.
	last, got := time.Now(), rxPackets(b, "sinkp")-start
	for still := time.Now(); got < uint64(b.N) && time.Since(still) < 50*time.Millisecond; {
		time.Sleep(time.Millisecond)
		if n := rxPackets(b, "sinkp") - start; n != got {
			got, last, still = n, time.Now(), time.Now()
		}
	}
	elapsed := last.Sub(t0)
	b.StopTimer()
	b.ReportMetric(float64(got)/elapsed.Seconds(), "frames/s")
	b.ReportMetric(float64(got)/float64(b.N), "delivered")
}

func rxPackets(b testing.TB, name string) uint64 {
	l, err := netlink.LinkByName(name)
	if err != nil {
		b.Fatal(err)
	}
	return l.Attrs().Statistics.RxPackets
}

func waitCarrier(b testing.TB, name string) {
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if l, err := netlink.LinkByName(name); err == nil && l.Attrs().RawFlags&iffLowerUp != 0 {
			return
		}
	}
	b.Fatalf("%s has no carrier after 2s", name)
}

// A run killed after join's redirects but before the device group leaves a
// joined front outside its group (TestKillAnywhere found it): the next
// Create puts it back, so that Delete removes the front in one operation.
func TestCreateFinishesAKilledJoin(t *testing.T) {
	nstest.Run(t, func() {
		tl, port := tapWithFront(t, 0)
		portName, peerName := Names("tap0")
		for _, n := range []string{portName, peerName} {
			l, err := link.Get(n)
			if err != nil {
				t.Fatal(err)
			}
			if err := netlink.LinkSetGroup(l, 0); err != nil {
				t.Fatal(err)
			}
		}
		if _, created, err := Create(tl, 0); err != nil || created {
			t.Fatalf("Create again = %v, %v; want the same front", created, err)
		}
		for _, n := range []string{portName, peerName} {
			if l, err := link.Get(n); err != nil {
				t.Error(err)
			} else if l.Attrs().Group != Group(port) {
				t.Errorf("%s after the second Create: group %d, want %d", n, l.Attrs().Group, Group(port))
			}
		}
	})
}

// tapWithFront makes tap0 and its front (Create with mtu) in the test's
// namespace.
func tapWithFront(t *testing.T, mtu int) (tl, port netlink.Link) {
	t.Helper()
	tl, err := tap.Create("tap0", tap.DefaultOptions)
	if err != nil {
		t.Fatal(err)
	}
	port, _, err = Create(tl, mtu)
	if err != nil {
		t.Fatal(err)
	}
	return tl, port
}
