package testbed_test

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/tapbridge/tapbridge/test/testbed"
)

func needLAN(t *testing.T) {
	t.Helper()
	if err := testbed.CheckLAN(); err != nil {
		t.Skip(err)
	}
}

func needGuest(t *testing.T) {
	t.Helper()
	if err := testbed.CheckGuest(); err != nil {
		t.Skip(err)
	}
}

func TestParseLeases(t *testing.T) {
	mac := func(s string) net.HardwareAddr {
		hw, err := net.ParseMAC(s)
		if err != nil {
			t.Fatal(err)
		}
		return hw
	}
	tests := []struct {
		name    string
		in      string
		want    []testbed.Lease
		wantErr bool
	}{
		{name: "empty"},
		{
			name: "full and sparse",
			in: "1700000600 52:54:00:12:34:56 192.0.2.150 tb-123456 01:52:54:00:12:34:56\n" +
				"0 52:54:00:ab:cd:ef 198.51.100.120 * *\n",
			want: []testbed.Lease{
				{Expiry: time.Unix(1700000600, 0), MAC: mac("52:54:00:12:34:56"), IP: netip.MustParseAddr("192.0.2.150"), Hostname: "tb-123456", ClientID: "01:52:54:00:12:34:56"},
				{MAC: mac("52:54:00:ab:cd:ef"), IP: netip.MustParseAddr("198.51.100.120")},
			},
		},
		{
			name: "DHCPv6 lines skipped",
			in: "duid 00:01:00:01:2c:1f:aa:bb:52:54:00:00:00:01\n" +
				"1700000600 1234 2001:db8::100 host 00:01:00:01\n",
		},
		{name: "short line", in: "1700000600 52:54:00:12:34:56\n", wantErr: true},
		{name: "bad MAC", in: "1700000600 nope 192.0.2.150 * *\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := testbed.ParseLeases([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseLeases: err = %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("ParseLeases (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNetNS(t *testing.T) {
	needLAN(t)
	t.Parallel()
	var n *testbed.NetNS
	t.Run("create", func(t *testing.T) {
		n = testbed.NewNetNS(t)
		if !strings.HasPrefix(n.Name, "tb-") {
			t.Errorf("name %q does not start with tb-", n.Name)
		}
		want, err := n.Inode()
		if err != nil {
			t.Fatal(err)
		}
		var got uint64
		err = n.Do(func() error {
			var st syscall.Stat_t
			if err := syscall.Stat("/proc/thread-self/ns/net", &st); err != nil {
				return err
			}
			got = st.Ino
			return nil
		})
		if err != nil || got != want {
			t.Errorf("Do ran in netns inode %d (err %v), want %d", got, err, want)
		}
		if out := n.MustExec(t, "ip", "-o", "link", "show", "lo"); !strings.Contains(out, "UP") {
			t.Errorf("lo is not up: %s", out)
		}
		if _, err := n.Exec("false"); err == nil {
			t.Error("Exec(false) returned no error")
		}
	})
	if _, err := os.Stat(n.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netns %s still exists after its test: %v", n.Path, err)
	}
}

func TestLAN(t *testing.T) {
	needLAN(t)
	t.Parallel()
	l := testbed.NewLAN(t, testbed.UplinkOptions())
	for _, addr := range []string{"192.0.2.1", "2001:db8::1"} {
		if err := l.HV.Ping(addr); err != nil {
			t.Errorf("hv cannot ping the router: %v", err)
		}
	}
	for _, addr := range []string{"192.0.2.10", "192.0.2.11", "2001:db8::10"} {
		if err := l.Router.Ping(addr); err != nil {
			t.Errorf("router cannot ping hv: %v", err)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-4", "route", "show"}, "default via 192.0.2.1 dev eth0"},
		{[]string{"-4", "route", "show"}, "198.51.100.0/24 via 192.0.2.1 dev eth0 metric 50"},
		{[]string{"-4", "route", "show", "table", "100"}, "default via 192.0.2.1 dev eth0"},
		{[]string{"-4", "rule", "show"}, "100:\tfrom all iif eth0 lookup 100"},
	} {
		if out := l.HV.MustExec(t, "ip", c.args...); !strings.Contains(out, c.want) {
			t.Errorf("ip %s: no %q in:\n%s", strings.Join(c.args, " "), c.want, out)
		}
	}
}

// TestDHCP leases an address to busybox udhcpc running in the hypervisor,
// untagged and, where the kernel has 802.1Q, on VLAN 10.
func TestDHCP(t *testing.T) {
	needLAN(t)
	t.Parallel()
	l := testbed.NewLAN(t, testbed.LANOptions{DHCP: true})
	mac := strings.TrimSpace(l.HV.MustExec(t, "cat", "/sys/class/net/eth0/address"))
	lease := func(t *testing.T, iface string, srv *testbed.DHCPServer) {
		// -s /bin/true: lease, but configure nothing.
		l.HV.MustExec(t, "busybox", "udhcpc", "-i", iface, "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", "/bin/true")
		got, err := srv.WaitLease(mac, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got.IP.Less(srv.First) || srv.Last.Less(got.IP) {
			t.Errorf("%s: leased %s, outside %s-%s", iface, got.IP, srv.First, srv.Last)
		}
		if _, err := l.WaitLease(mac, time.Second); err != nil {
			t.Error(err)
		}
	}
	t.Run("untagged", func(t *testing.T) {
		lease(t, "eth0", l.DHCPServers()[0])
	})
	t.Run("vlan", func(t *testing.T) {
		if err := testbed.CheckVLAN(); err != nil {
			t.Skip(err)
		}
		srv := l.AddVLAN(t, 10, netip.MustParsePrefix("198.51.100.1/24"))
		l.HV.MustExec(t, "ip", "link", "add", "link", "eth0", "name", "eth0.10", "type", "vlan", "id", "10")
		l.HV.MustExec(t, "ip", "link", "set", "eth0.10", "up")
		lease(t, "eth0.10", srv)
	})
}

// TestGuest boots a guest on a bridge in the hypervisor, checks that it gets
// a lease from the router's dnsmasq and serves its page to the router, and
// that nothing is left afterwards.
func TestGuest(t *testing.T) {
	needGuest(t)
	t.Parallel()
	var (
		namespaces []string
		pids       []int
	)
	t.Run("boot", func(t *testing.T) {
		start := time.Now()
		l := testbed.NewLAN(t, testbed.LANOptions{})
		namespaces = append(namespaces, l.Router.Path, l.HV.Path)

		// A second veth pair carries the bridge's traffic; eth0 stays as
		// it is. veth-b serves DHCP from 198.51.100.0/24.
		l.AddVeth(t, "veth-b", "up0")
		srv := l.ServeDHCP(t, "veth-b", netip.MustParsePrefix("198.51.100.1/24"))
		pids = append(pids, srv.PID())
		err := l.HV.Do(func() error {
			br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
			if err := netlink.LinkAdd(br); err != nil {
				return err
			}
			// tap1 belongs to nobody, whose QEMU may then attach to it.
			for _, tap := range []*netlink.Tuntap{
				{LinkAttrs: netlink.LinkAttrs{Name: "tap0"}, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_NO_PI},
				{LinkAttrs: netlink.LinkAttrs{Name: "tap1"}, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_NO_PI, Owner: nobody, Group: nobody},
			} {
				if err := netlink.LinkAdd(tap); err != nil {
					return err
				}
			}
			for _, name := range []string{"up0", "tap0", "tap1"} {
				port, err := netlink.LinkByName(name)
				if err != nil {
					return err
				}
				if err := netlink.LinkSetMaster(port, br); err != nil {
					return err
				}
				if err := netlink.LinkSetUp(port); err != nil {
					return err
				}
			}
			return netlink.LinkSetUp(br)
		})
		if err != nil {
			t.Fatal(err)
		}
		// netlink.Bridge has no forward delay; without STP it should not
		// matter, but a test bed should not depend on it.
		l.HV.MustExec(t, "ip", "link", "set", "br0", "type", "bridge", "forward_delay", "0")

		guests := []*testbed.Guest{
			testbed.StartGuest(t, testbed.GuestOpts{
				NetNS:  l.HV,
				Netdev: "tap,ifname=tap0,script=no,downscript=no",
			}),
			testbed.StartGuest(t, testbed.GuestOpts{
				NetNS:      l.HV,
				Netdev:     "tap,ifname=tap1,script=no,downscript=no",
				Credential: &syscall.Credential{Uid: nobody, Gid: nobody},
			}),
		}
		for _, g := range guests {
			pids = append(pids, g.PID())
		}
		for i, g := range guests {
			ip, err := g.WaitLease(60 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("guest %d (%s) leased %s after %v", i, g.MAC, ip, time.Since(start).Round(time.Millisecond))
			lease, err := srv.WaitLease(g.MAC, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if lease.IP != ip || !strings.HasPrefix(lease.Hostname, "tb-") {
				t.Errorf("dnsmasq lease = %+v, want IP %s and a tb- hostname", lease, ip)
			}
			if err := g.WaitReady(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			body, err := l.Router.Fetch("http://" + ip.String() + "/")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(body, "mac="+g.MAC) {
				t.Errorf("page from %s = %q, want the guest's MAC %s", ip, body, g.MAC)
			}
			out, err := g.Run("cat /sys/class/net/eth0/address", 10*time.Second)
			if err != nil || strings.TrimSpace(out) != g.MAC {
				t.Errorf("guest eth0 address = %q (err %v), want %s", out, err, g.MAC)
			}
		}
		if _, err := guests[0].Run("exit 3", 10*time.Second); err == nil || !strings.Contains(err.Error(), "exit status 3") {
			t.Errorf(`Run("exit 3") = %v, want status 3`, err)
		}
		if uid := processUID(t, guests[1].PID()); uid != nobody {
			t.Errorf("second QEMU runs as uid %d, want %d", uid, nobody)
		}
		t.Logf("guest ready and page fetched after %v", time.Since(start).Round(time.Millisecond))
	})
	for _, p := range namespaces {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("netns %s still exists: %v", p, err)
		}
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists: %v", pid, err)
		}
	}
}

// nobody is the UID and GID of user nobody.
const nobody = 65534

// processUID returns the real UID of a process.
func processUID(t *testing.T, pid int) uint32 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/"+strconv.Itoa(pid), &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid
}
