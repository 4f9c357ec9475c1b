package routed

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/nldump"
	"github.com/tapbridge/tapbridge/internal/nstest"
	"github.com/tapbridge/tapbridge/internal/sysctl"
	"github.com/tapbridge/tapbridge/internal/tap"
	"github.com/tapbridge/tapbridge/test/testbed"
)

// uplinkNS sets up the current (throwaway) namespace like a rented server:
// eth0 with 192.0.2.10/24 and 2001:db8::10/64 learnt by SLAAC (accept_ra
// 1), forwarding off, and the TAPs named.
func uplinkNS(t *testing.T, taps ...string) {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name = "eth0"
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "provider"}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"net/ipv6/conf/eth0/accept_dad", "net/ipv6/conf/provider/accept_dad"} {
		mustWrite(t, k, "0")
	}
	eth0, _ := netlinksafe.LinkByName("eth0")
	for _, a := range []string{"192.0.2.10/24", "2001:db8::10/64"} {
		p := netip.MustParsePrefix(a)
		if err := netlink.AddrAdd(eth0, &netlink.Addr{IPNet: prefixNet(p)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"eth0", "provider"} {
		l, _ := netlinksafe.LinkByName(n)
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	waitLinkLocal(t, "eth0", "provider")
	mustWrite(t, "net/ipv6/conf/eth0/accept_ra", "1")
	mustWrite(t, "net/ipv6/conf/all/forwarding", "0")
	mustWrite(t, "net/ipv4/conf/eth0/forwarding", "0")
	for _, n := range taps {
		if _, err := tap.Create(n, tap.DefaultOptions); err != nil {
			t.Fatal(err)
		}
	}
}

// waitLinkLocal waits until the links have their IPv6 link-local address
// (the kernel adds it, and its routes, once the carrier is up), so that a
// snapshot taken afterwards is stable.
func waitLinkLocal(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		l, err := netlinksafe.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(5 * time.Second); ; {
			as, err := netlinksafe.AddrList(l, netlink.FAMILY_V6)
			if err != nil {
				t.Fatal(err)
			}
			if slices.ContainsFunc(as, func(a netlink.Addr) bool { return a.IP.IsLinkLocalUnicast() && a.Flags&unix.IFA_F_TENTATIVE == 0 }) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s has no IPv6 link-local address after 5s", n)
			}
			time.Sleep(10 * time.Millisecond) // polling the condition, not waiting it out
		}
	}
}

func mustWrite(t *testing.T, key, v string) {
	t.Helper()
	if err := sysctl.Write(key, v); err != nil {
		t.Fatal(err)
	}
}

func readKey(t *testing.T, key string) string {
	t.Helper()
	v, err := sysctl.Read(key)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// watched are the sysctls a routed attach may change.
var watched = []string{
	"net/ipv4/conf/eth0/forwarding", "net/ipv6/conf/all/forwarding",
	"net/ipv6/conf/eth0/accept_ra", "net/ipv6/conf/eth0/proxy_ndp",
	"net/ipv6/conf/eth0/forwarding", "net/ipv4/conf/eth0/proxy_arp",
}

// snapshot is what `ip addr`, `ip route show table all`, `ip neigh show
// proxy` and `ip rule` show, plus the watched sysctls, leaving out the
// TAPs' own links (whose addresses and kernel routes come and go with
// their state, and which the front ends delete). It is taken once the
// kernel has finished its IPv6 address work (settle).
func snapshot(t *testing.T, skip ...string) []string {
	t.Helper()
	settle(t)
	skipIdx := map[int]bool{}
	for _, n := range skip {
		if l, err := netlinksafe.LinkByName(n); err == nil {
			skipIdx[l.Attrs().Index] = true
		}
	}
	var out []string
	addrs, err := nldump.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if !skipIdx[a.LinkIndex] {
			out = append(out, fmt.Sprintf("addr %d %s scope %d", a.LinkIndex, a.IPNet, a.Scope))
		}
	}
	routes, err := nldump.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if !skipIdx[r.LinkIndex] {
			out = append(out, "route "+r.String())
		}
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		ns, err := nldump.Retry("proxy neighbours", func() ([]netlink.Neigh, error) { return netlink.NeighProxyList(0, fam) })
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			out = append(out, fmt.Sprintf("proxy %s dev %d", n.IP, n.LinkIndex))
		}
	}
	rules, err := nldump.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		out = append(out, "rule "+r.String())
	}
	for _, k := range watched {
		out = append(out, k+"="+readKey(t, k))
	}
	sort.Strings(out)
	return out
}

// settle waits until the kernel has finished, in the current namespace,
// the IPv6 work it does after an address is added: the address's local
// route (table local, and with forwarding its subnet-router anycast route,
// added in the same step) comes from the addrconf work queue, not from
// the RTM_NEWADDR request, even when duplicate address detection is off
// or the address is added with IFA_F_NODAD (as Attach adds fe80::1). That
// work needs the RTNL, so while other namespaces are torn down it can run
// well after the request returned, and a snapshot taken at once lacked the
// route (TestAttachRefusesAndChangesNothing and TestRehome failed so under
// load). Pending is:
//
//   - an address on an up link without a local route to it on that link;
//   - a tentative address on an up link with a carrier (duplicate address
//     detection still to run or finish). One on a link without a carrier,
//     such as a TAP nobody holds, stays tentative: that is its settled
//     state.
func settle(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		links, err := nldump.LinkList()
		if err != nil {
			t.Fatal(err)
		}
		addrs, err := nldump.AddrList(nil, netlink.FAMILY_V6)
		if err != nil {
			t.Fatal(err)
		}
		routes, err := nldump.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatal(err)
		}
		pending := testbed.PendingIPv6(links, addrs, routes)
		if len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the namespace did not settle in 10s: %s", strings.Join(pending, "; "))
		}
		time.Sleep(10 * time.Millisecond) // polling the condition, not waiting it out
	}
}

func proxies(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		ns, err := netlink.NeighProxyList(0, fam)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			l, _ := netlink.LinkByIndex(n.LinkIndex)
			out = append(out, n.IP.String()+" dev "+l.Attrs().Name)
		}
	}
	sort.Strings(out)
	return out
}

func routesVia(t *testing.T, dev string) []string {
	t.Helper()
	l, err := netlinksafe.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := netlinksafe.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: l.Attrs().Index, Protocol: unix.RTPROT_STATIC}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		out = append(out, r.Dst.String())
	}
	sort.Strings(out)
	return out
}

func addrsOf(t *testing.T, dev string) string {
	t.Helper()
	l, _ := netlinksafe.LinkByName(dev)
	as, err := netlinksafe.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		out = append(out, a.IPNet.String())
	}
	return strings.Join(out, " ")
}

func ips(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestAttachDetachRestoresEverything(t *testing.T) {
	nstest.Run(t, func() {
		uplinkNS(t, "tap0", "tap1")
		before := snapshot(t, "tap0", "tap1")

		s0 := Spec{Port: "tap0", Uplink: "eth0", IPs: ips("192.0.2.60", "198.51.100.2", "2001:db8::60", "2001:db8:1::2"), DHCPGuard: true, RAGuard: true}
		if err := Attach(s0); err != nil {
			t.Fatal(err)
		}
		if err := Attach(s0); err != nil {
			t.Fatalf("second Attach (idempotent): %v", err)
		}
		// Only the addresses on eth0's link get a proxy entry.
		if diff := cmp.Diff([]string{"192.0.2.60 dev eth0", "2001:db8::60 dev eth0"}, proxies(t)); diff != "" {
			t.Errorf("proxy entries (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"192.0.2.60/32", "198.51.100.2/32", "2001:db8:1::2/128", "2001:db8::60/128"}, routesVia(t, "tap0")); diff != "" {
			t.Errorf("routes via tap0 (-want +got):\n%s", diff)
		}
		if a := addrsOf(t, "tap0"); !strings.Contains(a, "169.254.0.1/32") || !strings.Contains(a, "fe80::1/64") {
			t.Errorf("tap0 addresses %q: want the gateways 169.254.0.1/32 and fe80::1/64", a)
		}
		for k, want := range map[string]string{
			"net/ipv4/conf/eth0/forwarding": "1", "net/ipv4/conf/tap0/forwarding": "1",
			"net/ipv6/conf/all/forwarding": "1", "net/ipv6/conf/eth0/accept_ra": "2",
			"net/ipv6/conf/eth0/proxy_ndp": "1", "net/ipv4/conf/eth0/proxy_arp": "0",
		} {
			if got := readKey(t, k); got != want {
				t.Errorf("%s = %s, want %s", k, got, want)
			}
		}

		// A second, IPv4-only port shares eth0's IPv4 forwarding.
		if err := Attach(Spec{Port: "tap1", Uplink: "eth0", IPs: ips("198.51.100.3")}); err != nil {
			t.Fatal(err)
		}
		if ok, err := Detach("tap0"); !ok || err != nil {
			t.Fatalf("Detach(tap0) = %t, %v", ok, err)
		}
		if got := readKey(t, "net/ipv4/conf/eth0/forwarding"); got != "1" {
			t.Errorf("eth0 IPv4 forwarding = %s while tap1 is routed, want 1", got)
		}
		if got := readKey(t, "net/ipv6/conf/eth0/accept_ra"); got != "1" {
			t.Errorf("eth0 accept_ra = %s after the last IPv6 port left, want 1", got)
		}
		if diff := cmp.Diff([]string(nil), routesVia(t, "tap0")); diff != "" {
			t.Errorf("routes via tap0 after Detach (-want +got):\n%s", diff)
		}
		if a := addrsOf(t, "tap0"); strings.Contains(a, "169.254.0.1") || strings.Contains(a, "fe80::1/") {
			t.Errorf("tap0 keeps a gateway address after Detach: %q", a)
		}
		if ok, err := Detach("tap1"); !ok || err != nil {
			t.Fatalf("Detach(tap1) = %t, %v", ok, err)
		}
		if diff := cmp.Diff(before, snapshot(t, "tap0", "tap1")); diff != "" {
			t.Errorf("host state after detaching both (-before +after):\n%s", diff)
		}
		if ok, err := Detach("tap1"); ok || err != nil {
			t.Errorf("Detach of a detached port = %t, %v; want false, nil", ok, err)
		}
		c, _ := nftables.New()
		if _, err := c.ListTableOfFamily(tableName, nftables.TableFamilyINet); err == nil {
			t.Errorf("table inet %s is left after the last port", tableName)
		}
		if _, err := os.Stat(sysctlPath()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("shared sysctl record left: %v", err)
		}
	})
}

func TestAttachKeepsWhatWasOn(t *testing.T) {
	nstest.Run(t, func() {
		uplinkNS(t, "tap0")
		mustWrite(t, "net/ipv4/conf/eth0/forwarding", "1")
		mustWrite(t, "net/ipv6/conf/eth0/accept_ra", "2")
		mustWrite(t, "net/ipv6/conf/all/forwarding", "1")
		before := snapshot(t, "tap0")
		if err := Attach(Spec{Port: "tap0", Uplink: "eth0", IPs: ips("192.0.2.60", "2001:db8::60")}); err != nil {
			t.Fatal(err)
		}
		if _, err := Detach("tap0"); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(before, snapshot(t, "tap0")); diff != "" {
			t.Errorf("host state (-before +after):\n%s", diff)
		}
	})
}

func TestAttachRefusesAndChangesNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
		want string
	}{
		{"no addresses", Spec{Port: "tap1", Uplink: "eth0"}, "routed mode needs the VM's addresses"},
		{"the host's address", Spec{Port: "tap1", Uplink: "eth0", IPs: ips("192.0.2.10")}, "192.0.2.10: address in use: it is an address of the host"},
		{"another port's address", Spec{Port: "tap1", Uplink: "eth0", IPs: ips("198.51.100.9", "198.51.100.2")}, `198.51.100.2: address in use: it is routed to "tap0" already`},
		{"link-local address", Spec{Port: "tap1", Uplink: "eth0", IPs: ips("169.254.0.5")}, "needs global unicast addresses"},
		{"missing port", Spec{Port: "tap9", Uplink: "eth0", IPs: ips("198.51.100.9")}, `port "tap9": no such port`},
		{"missing uplink", Spec{Port: "tap1", Uplink: "eth9", IPs: ips("198.51.100.9")}, `uplink "eth9"`},
		{"port is the uplink", Spec{Port: "eth0", Uplink: "eth0", IPs: ips("198.51.100.9")}, `port "eth0" is the uplink`},
		{"bridge port", Spec{Port: "tap2", Uplink: "eth0", IPs: ips("198.51.100.9")}, `port "tap2" is a port of a bridge`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nstest.Run(t, func() {
				uplinkNS(t, "tap0", "tap1", "tap2")
				br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "brx"}}
				if err := netlink.LinkAdd(br); err != nil {
					t.Fatal(err)
				}
				t2, _ := netlinksafe.LinkByName("tap2")
				if err := netlink.LinkSetMaster(t2, br); err != nil {
					t.Fatal(err)
				}
				if err := Attach(Spec{Port: "tap0", Uplink: "eth0", IPs: ips("198.51.100.2", "2001:db8::60")}); err != nil {
					t.Fatal(err)
				}
				before := snapshot(t)
				err := Attach(tc.spec)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Attach = %v, want an error containing %q", err, tc.want)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error is not one line: %q", err)
				}
				if diff := cmp.Diff(before, snapshot(t)); diff != "" {
					t.Errorf("a refused Attach changed the host (-before +after):\n%s", diff)
				}
				if Is(tc.spec.Port) && tc.spec.Port != "tap0" {
					t.Errorf("a refused Attach left a record for %q", tc.spec.Port)
				}
			})
		})
	}
}

// TestPruneAfterTheTAPVanished: a QEMU killed without its down script
// takes the TAP (and its routes) with it; Prune removes the rest: the
// proxy entries on the uplink and the shared sysctls.
func TestPruneAfterTheTAPVanished(t *testing.T) {
	nstest.Run(t, func() {
		uplinkNS(t, "tap0", "tap1")
		before := snapshot(t, "tap0", "tap1")
		for _, s := range []Spec{
			{Port: "tap0", Uplink: "eth0", IPs: ips("192.0.2.60", "2001:db8::60")},
			{Port: "tap1", Uplink: "eth0", IPs: ips("192.0.2.61")},
		} {
			if err := Attach(s); err != nil {
				t.Fatal(err)
			}
		}
		if err := tap.Delete("tap0"); err != nil {
			t.Fatal(err)
		}
		pruned, err := Prune()
		if err != nil || !cmp.Equal(pruned, []string{"tap0"}) {
			t.Fatalf("Prune = %v, %v; want [tap0]", pruned, err)
		}
		if diff := cmp.Diff([]string{"192.0.2.61 dev eth0"}, proxies(t)); diff != "" {
			t.Errorf("proxy entries after Prune (-want +got):\n%s", diff)
		}
		if _, err := Detach("tap1"); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(before, snapshot(t, "tap0", "tap1")); diff != "" {
			t.Errorf("host state (-before +after):\n%s", diff)
		}
	})
}

// BenchmarkAttach measures attaching and detaching one routed port beside
// 0 or 300 others: the cost must not grow with the number of VMs. The
// state directory is on tmpfs, as /run is on a real host (on a disk, the
// fsync of each record write dominates).
func BenchmarkAttach(b *testing.B) {
	for _, existing := range []int{0, 300} {
		b.Run(fmt.Sprintf("ports=%d", existing), func(b *testing.B) {
			dir, err := os.MkdirTemp("/dev/shm", "tapbridge-bench-")
			if err != nil {
				b.Skip(err)
			}
			b.Cleanup(func() { os.RemoveAll(dir) })
			nstest.Run(b, func() {
				b.Setenv("TAPBRIDGE_RUN_DIR", dir) // over nstest.Run's, on disk
				la := netlink.NewLinkAttrs()
				la.Name = "eth0"
				if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "provider"}); err != nil {
					b.Fatal(err)
				}
				eth0, _ := netlinksafe.LinkByName("eth0")
				if err := netlink.AddrAdd(eth0, &netlink.Addr{IPNet: prefixNet(netip.MustParsePrefix("192.0.2.10/24"))}); err != nil {
					b.Fatal(err)
				}
				for i := 0; i < existing; i++ {
					name := fmt.Sprintf("old%d", i)
					if _, err := tap.Create(name, tap.DefaultOptions); err != nil {
						b.Fatal(err)
					}
					ip := netip.AddrFrom4([4]byte{198, 51, byte(100 + i/250), byte(1 + i%250)})
					if err := Attach(Spec{Port: name, Uplink: "eth0", IPs: []netip.Addr{ip}, DHCPGuard: true, RAGuard: true}); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := tap.Create("new0", tap.DefaultOptions); err != nil {
					b.Fatal(err)
				}
				s := Spec{Port: "new0", Uplink: "eth0", IPs: ips("192.0.2.60"), DHCPGuard: true, RAGuard: true}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := Attach(s); err != nil {
						b.Fatal(err)
					}
					if _, err := Detach("new0"); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// TestReattachWithOtherValues: attaching a routed port again with other
// addresses or policy replaces the old attachment, leaving nothing of it.
func TestReattachWithOtherValues(t *testing.T) {
	nstest.Run(t, func() {
		uplinkNS(t, "tap0")
		if err := Attach(Spec{Port: "tap0", Uplink: "eth0", IPs: ips("192.0.2.60"), Isolated: true}); err != nil {
			t.Fatal(err)
		}
		if err := Attach(Spec{Port: "tap0", Uplink: "eth0", IPs: ips("192.0.2.61")}); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"192.0.2.61/32"}, routesVia(t, "tap0")); diff != "" {
			t.Errorf("routes via tap0 (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"192.0.2.61 dev eth0"}, proxies(t)); diff != "" {
			t.Errorf("proxy entries (-want +got):\n%s", diff)
		}
		c, _ := nftables.New()
		tbl := &nftables.Table{Name: tableName, Family: nftables.TableFamilyINet}
		set, err := c.GetSetByName(tbl, "isolated")
		if err != nil {
			t.Fatal(err)
		}
		if els, _ := c.GetSetElements(set); len(els) != 0 {
			t.Errorf("tap0 is still in the isolated set after a re-attach without isolation")
		}
		if _, err := Detach("tap0"); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRehome: routed ports attached before the uplink moved into a bridge
// follow it there (proxy entries, forwarding), and back out again.
func TestRehome(t *testing.T) {
	nstest.Run(t, func() {
		uplinkNS(t, "tap0")
		before := snapshot(t, "tap0", "br0")
		if err := Attach(Spec{Port: "tap0", Uplink: "eth0", IPs: ips("192.0.2.60", "2001:db8::60")}); err != nil {
			t.Fatal(err)
		}
		// What an uplink migration does, by hand: br0 holds eth0 and its addresses.
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
		if err := netlink.LinkAdd(br); err != nil {
			t.Fatal(err)
		}
		eth0, _ := netlinksafe.LinkByName("eth0")
		move := func(from, to netlink.Link) {
			as, err := netlinksafe.AddrList(from, netlink.FAMILY_ALL)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range as {
				if a.IP.IsLinkLocalUnicast() {
					continue
				}
				if err := netlink.AddrDel(from, &a); err != nil {
					t.Fatal(err)
				}
				a.LinkIndex = to.Attrs().Index
				if err := netlink.AddrAdd(to, &netlink.Addr{IPNet: a.IPNet}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := netlink.LinkSetMaster(eth0, br); err != nil {
			t.Fatal(err)
		}
		brl, _ := netlinksafe.LinkByName("br0")
		if err := netlink.LinkSetUp(brl); err != nil {
			t.Fatal(err)
		}
		move(eth0, brl)
		moved, err := Rehome()
		if err != nil || !cmp.Equal(moved, []string{"tap0"}) {
			t.Fatalf("Rehome = %v, %v; want [tap0]", moved, err)
		}
		if diff := cmp.Diff([]string{"192.0.2.60 dev br0", "2001:db8::60 dev br0"}, proxies(t)); diff != "" {
			t.Errorf("proxy entries after moving into br0 (-want +got):\n%s", diff)
		}
		if got := readKey(t, "net/ipv4/conf/br0/forwarding"); got != "1" {
			t.Errorf("br0 IPv4 forwarding = %s, want 1", got)
		}
		if got := readKey(t, "net/ipv4/conf/eth0/forwarding"); got != "0" {
			t.Errorf("eth0 IPv4 forwarding = %s after the move, want 0 (put back)", got)
		}
		if moved, err := Rehome(); err != nil || len(moved) != 0 {
			t.Errorf("second Rehome = %v, %v; want nothing to do", moved, err)
		}
		// And back out (tapbridge down).
		move(brl, eth0)
		if err := netlink.LinkSetNoMaster(eth0); err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkDel(brl); err != nil {
			t.Fatal(err)
		}
		if moved, err := Rehome(); err != nil || len(moved) != 1 {
			t.Fatalf("Rehome after the way back = %v, %v", moved, err)
		}
		if diff := cmp.Diff([]string{"192.0.2.60 dev eth0", "2001:db8::60 dev eth0"}, proxies(t)); diff != "" {
			t.Errorf("proxy entries after moving back (-want +got):\n%s", diff)
		}
		if _, err := Detach("tap0"); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(before, snapshot(t, "tap0", "br0")); diff != "" {
			t.Errorf("host state (-before +after):\n%s", diff)
		}
	})
}
