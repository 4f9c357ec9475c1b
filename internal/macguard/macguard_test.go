package macguard

import (
	"net"
	"sort"
	"testing"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/tapbridge/tapbridge/internal/nstest"
)

func known(t *testing.T) []string {
	t.Helper()
	ms, err := Known("eth0")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.String())
	}
	sort.Strings(out)
	return out
}

// TestAllowForget: the host's MAC and the listed ones stay; a guest MAC
// stays while any port that has it is attached.
func TestAllowForget(t *testing.T) {
	nstest.Run(t, func() {
		host, _ := net.ParseMAC("02:00:00:00:00:10")
		la := netlink.NewLinkAttrs()
		la.Name, la.HardwareAddr = "eth0", host
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "peer"}); err != nil {
			t.Fatal(err)
		}
		if _, err := netlinksafe.LinkByName("eth0"); err != nil {
			t.Fatal(err)
		}
		guest, _ := net.ParseMAC("52:54:00:00:00:01")
		listed, _ := net.ParseMAC("02:00:00:00:0a:01")
		for _, port := range []string{"tap0", "tap1"} {
			if err := Allow("eth0", port, guest, []net.HardwareAddr{listed}); err != nil {
				t.Fatal(err)
			}
		}
		if err := Allow("eth0", "tap2", nil, nil); err != nil {
			t.Fatal(err)
		}
		all := []string{"02:00:00:00:00:10", "02:00:00:00:0a:01", "52:54:00:00:00:01"}
		if diff := cmp.Diff(all, known(t)); diff != "" {
			t.Errorf("known MACs (-want +got):\n%s", diff)
		}
		if err := Forget("tap0"); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(all, known(t)); diff != "" {
			t.Errorf("known MACs while tap1 has the guest MAC (-want +got):\n%s", diff)
		}
		for _, port := range []string{"tap1", "tap2", "tap1"} {
			if err := Forget(port); err != nil {
				t.Fatalf("Forget(%s) = %v", port, err)
			}
		}
		if diff := cmp.Diff([]string{"02:00:00:00:00:10", "02:00:00:00:0a:01"}, known(t)); diff != "" {
			t.Errorf("known MACs after the last port (-want +got):\n%s", diff)
		}
	})
}
