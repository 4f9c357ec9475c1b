package testbed_test

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/nldump"
	"github.com/tapbridge/tapbridge/test/testbed"
)

// TestSettle: right after the LAN is made and a TAP nobody holds is set
// up, a dump may still show the state before the kernel's linkwatch ran
// (eth0 "NO-CARRIER" without a link-local address, the TAP "UNKNOWN");
// once Settle returns, the dumps show what a quiet host shows: eth0 up
// with its link-local address, the TAP without a carrier. 300 TAPs made
// first in another namespace hold linkwatch up for about 3 s (it handles
// 100 links a second), as a test of a full bridge does for every test
// running beside it.
func TestSettle(t *testing.T) {
	needLAN(t)
	busy := testbed.NewNetNS(t)
	var b strings.Builder
	for i := range 300 {
		fmt.Fprintf(&b, "tuntap add dev f%d mode tap\n", i)
	}
	cmd := exec.Command("ip", "-n", busy.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("making 300 TAPs: %v\n%s", err, out)
	}
	lan := testbed.NewLAN(t, testbed.LANOptions{})
	hv := lan.HV
	hv.MustExec(t, "ip", "tuntap", "add", "dev", "dum0", "mode", "tap")
	hv.MustExec(t, "ip", "link", "set", "dum0", "up")
	hv.Settle(t)
	links := hv.MustExec(t, "ip", "-o", "link")
	addrs := hv.MustExec(t, "ip", "-o", "-6", "addr")
	for _, l := range strings.Split(links, "\n") {
		switch {
		case strings.Contains(l, " eth0@"):
			if strings.Contains(l, "NO-CARRIER") || !strings.Contains(l, "state UP ") {
				t.Errorf("eth0 after Settle, want it up with its carrier:\n%s", l)
			}
		case strings.Contains(l, " dum0:"):
			if !strings.Contains(l, "NO-CARRIER") || !strings.Contains(l, "state DOWN ") {
				t.Errorf("dum0 after Settle, want it without carrier:\n%s", l)
			}
		}
	}
	if !strings.Contains(addrs, "eth0    inet6 fe80::") || strings.Contains(addrs, "tentative") {
		t.Errorf("IPv6 addresses after Settle, want eth0's link-local address and nothing tentative:\n%s", addrs)
	}
}

// TestSettleWaitsForLocalRoutes: the kernel gives an IPv6 address its
// local route (table local) from its address work queue, after the request
// that added the address has returned, and an address added with nodad
// (as `tapbridge up` moves the uplink's IPv6 addresses to the bridge) is
// never tentative meanwhile. Once Settle returns, a dump shows every
// address of an up link with its local route.
func TestSettleWaitsForLocalRoutes(t *testing.T) {
	needLAN(t)
	lan := testbed.NewLAN(t, testbed.LANOptions{})
	hv := lan.HV
	var b strings.Builder
	const n = 50
	for i := range n {
		fmt.Fprintf(&b, "addr add 2001:db8:1::%x/64 dev eth0 nodad\n", i+1)
	}
	cmd := exec.Command("ip", "-n", hv.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("adding %d addresses: %v\n%s", n, err, out)
	}
	hv.Settle(t)
	var routes []netlink.Route
	err := hv.Do(func() (err error) {
		routes, err = nldump.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Table: unix.RT_TABLE_LOCAL}, netlink.RT_FILTER_TABLE)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, r := range routes {
		if r.Type == unix.RTN_LOCAL && r.Dst != nil {
			have[r.Dst.IP.String()] = true
		}
	}
	var missing []string
	for i := range n {
		if a := fmt.Sprintf("2001:db8:1::%x", i+1); !have[a] {
			missing = append(missing, a)
		}
	}
	if len(missing) > 0 {
		t.Errorf("after Settle, %d of %d addresses have no local route: %v", len(missing), n, missing)
	}
}

// TestPendingIPv6: what counts as the kernel's IPv6 address work still to
// do, on links and addresses made up for the purpose.
func TestPendingIPv6(t *testing.T) {
	link := func(index int, name string, flags uint32) netlink.Link {
		return &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: index, Name: name, RawFlags: flags}}
	}
	links := []netlink.Link{
		link(2, "eth0", unix.IFF_UP|unix.IFF_LOWER_UP),
		link(3, "tap0", unix.IFF_UP), // nobody holds it: no carrier
		link(4, "down0", 0),
	}
	addr := func(index int, ip string, flags int) netlink.Addr {
		return netlink.Addr{LinkIndex: index, IPNet: &net.IPNet{IP: net.ParseIP(ip), Mask: net.CIDRMask(64, 128)}, Flags: flags}
	}
	local := func(index int, ip string) netlink.Route {
		return netlink.Route{LinkIndex: index, Type: unix.RTN_LOCAL, Dst: &net.IPNet{IP: net.ParseIP(ip), Mask: net.CIDRMask(128, 128)}}
	}
	for _, tc := range []struct {
		name   string
		addr   netlink.Addr
		routes []netlink.Route
		want   string // "" when settled
	}{
		{"address with its local route", addr(2, "2001:db8::10", 0), []netlink.Route{local(2, "2001:db8::10")}, ""},
		{"address without its local route", addr(2, "2001:db8::10", 0), nil, "2001:db8::10 on eth0 without its local route"},
		{"local route on another link", addr(2, "2001:db8::10", 0), []netlink.Route{local(3, "2001:db8::10")}, "2001:db8::10 on eth0 without its local route"},
		{"tentative with a carrier", addr(2, "2001:db8::10", unix.IFA_F_TENTATIVE), nil, "2001:db8::10 on eth0 tentative"},
		{"tentative without a carrier", addr(3, "2001:db8::10", unix.IFA_F_TENTATIVE), nil, ""},
		{"duplicate address detection failed", addr(2, "2001:db8::10", unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED), nil, ""},
		{"link down", addr(4, "2001:db8::10", 0), nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.Join(testbed.PendingIPv6(links, []netlink.Addr{tc.addr}, tc.routes), "; ")
			if got != tc.want {
				t.Errorf("pending %q, want %q", got, tc.want)
			}
		})
	}
}
