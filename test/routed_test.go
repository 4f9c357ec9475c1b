package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/google/go-cmp/cmp"

	"github.com/tapbridge/tapbridge/internal/testkit"
	"github.com/tapbridge/tapbridge/test/frames"
	"github.com/tapbridge/tapbridge/test/testbed"
)

// Routed mode end to end, on a LAN whose router plays a provider that
// accepts frames only from the hypervisor's MAC and one virtual MAC it
// assigned (a counted drop rule on its side of the link), routes
// 198.51.100.0/29 to the hypervisor's main address, and resolves
// 192.0.2.60 on the link. Beside a bridged VM (the provider's virtual MAC,
// DHCP), two routed QEMU guests serve HTTP: one attached by qemu-ifup with
// 192.0.2.60, one by `tap add --routed` with 198.51.100.2, both configured
// statically. Frames written into TAPs check what needs no guest.

const (
	virtualMAC = "02:00:00:00:0a:01" // the provider's virtual MAC for the bridged VM
	routedIPA  = "192.0.2.60"        // on the link: proxy ARP on br0
	routedIPA6 = "2001:db8::60"      // on the link: proxy NDP on br0
	routedIPB  = "198.51.100.2"      // in the routed /29: no proxy entry
	routedIPB6 = "2001:db8:1::2"     // in the routed 2001:db8:1::/64: no proxy entry
)

// providerRules is the router's side of the link: frames from any MAC
// but the hypervisor's and the virtual one are counted and dropped.
func providerRules(t *testing.T, lan *testbed.LAN, hvMAC string) {
	t.Helper()
	script := fmt.Sprintf(`table netdev provider {
	chain in {
		type filter hook ingress device %s priority 0; policy accept;
		ether saddr != { %s, %s } counter drop
	}
}
`, testbed.RouterIf, hvMAC, virtualMAC)
	cmd := lan.Router.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("router nft: %v: %s", err, out)
	}
	lan.Router.MustExec(t, "ip", "route", "add", "198.51.100.0/29", "via", testbed.HVIPv4.Addr().String())
	lan.Router.MustExec(t, "ip", "-6", "route", "add", "2001:db8:1::/64", "via", testbed.HVIPv6.Addr().String())
}

// providerDrops is the router's drop counter.
func providerDrops(t *testing.T, lan *testbed.LAN) string {
	t.Helper()
	out := lan.Router.MustExec(t, "nft", "list", "chain", "netdev", "provider", "in")
	m := regexp.MustCompile(`counter packets (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no counter in %q", out)
	}
	return m[1]
}

// hostDumps is what the hypervisor's addresses, routes, proxy neighbour
// entries, rules and forwarding sysctls look like on its own interfaces
// (lo, eth0, br0); VM ports come and go with their VMs.
func hostDumps(t *testing.T, hv *testbed.NetNS) []string {
	t.Helper()
	var out []string
	keep := func(line string) bool {
		m := regexp.MustCompile(` dev (\S+)`).FindStringSubmatch(line)
		return m == nil || m[1] == "lo" || m[1] == "eth0" || m[1] == "br0"
	}
	for _, args := range [][]string{
		{"-o", "addr", "show", "dev", "lo"}, {"-o", "addr", "show", "dev", "eth0"}, {"-o", "addr", "show", "dev", "br0"},
		{"route", "show", "table", "all"}, {"-6", "route", "show", "table", "all"},
		{"neigh", "show", "proxy"}, {"-6", "neigh", "show", "proxy"},
		{"rule"}, {"-6", "rule"},
	} {
		for _, line := range strings.Split(strings.TrimSpace(hv.MustExec(t, "ip", args...)), "\n") {
			if strings.Contains(args[len(args)-1], "all") && !keep(line) {
				continue
			}
			out = append(out, strings.Join(args, " ")+": "+strings.Join(strings.Fields(line), " "))
		}
	}
	for _, k := range []string{"ipv4/conf/br0/forwarding", "ipv4/conf/eth0/forwarding", "ipv6/conf/all/forwarding", "ipv6/conf/br0/accept_ra", "ipv6/conf/br0/proxy_ndp", "ipv4/conf/br0/proxy_arp"} {
		out = append(out, k+"="+strings.TrimSpace(hv.MustExec(t, "cat", "/proc/sys/net/"+k)))
	}
	sort.Strings(out)
	return out
}

func TestRouted(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: boots three QEMU guests")
	}
	if err := testbed.CheckGuest(); err != nil {
		t.Skip(err)
	}
	p := newPolicyLAN(t, testbed.LANOptions{DHCP: true, IPv6: true}, `"uplinkMACs": "strict"`)
	lan := p.lan
	hvMAC := linkMAC(t, lan.HV, "eth0")
	providerRules(t, lan, hvMAC)
	// The uplink into br0 first (at boot, tapbridge.service does this).
	p.mustRun(t, nil, "tapbridge", "up", "--config", p.conf)
	confEnv := []string{"TAPBRIDGE_CONF=" + p.conf, "TAPBRIDGE_RUN_DIR=" + p.runDir}

	// The bridged VM with the provider's virtual MAC, through qemu-ifup.
	bridged := testbed.StartGuest(t, testbed.GuestOpts{
		NetNS: lan.HV, MAC: virtualMAC, Env: append(confEnv, "TAPBRIDGE_MAC="+virtualMAC),
		Netdev: fmt.Sprintf("tap,ifname=vmb,script=%s,downscript=%s", bin("qemu-ifup"), bin("qemu-ifdown")),
	})
	if _, err := lan.WaitLease(virtualMAC, 90*time.Second); err != nil {
		t.Fatalf("the bridged VM with the registered virtual MAC: %v", err)
	}
	if err := bridged.WaitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	before := hostDumps(t, lan.HV)

	// The routed guests: qemu-ifup with TAPBRIDGE_ROUTED, and tap add --routed.
	ga := testbed.StartGuest(t, testbed.GuestOpts{
		NetNS: lan.HV, Static: []netip.Addr{netip.MustParseAddr(routedIPA), netip.MustParseAddr(routedIPA6)},
		Env:    append(confEnv, "TAPBRIDGE_ROUTED=1", "TAPBRIDGE_IPS="+routedIPA+","+routedIPA6),
		Netdev: fmt.Sprintf("tap,ifname=vmr1,script=%s,downscript=%s", bin("qemu-ifup"), bin("qemu-ifdown")),
	})
	p.tapAdd(t, "vmr2", "--routed", "--ips", routedIPB+","+routedIPB6)
	gb := testbed.StartGuest(t, testbed.GuestOpts{NetNS: lan.HV, Static: []netip.Addr{netip.MustParseAddr(routedIPB), netip.MustParseAddr(routedIPB6)}, Netdev: "tap,ifname=vmr2,script=no,downscript=no"})

	t.Run("guests serve HTTP to the router", func(t *testing.T) {
		for _, g := range []struct {
			g  *testbed.Guest
			ip string
		}{{ga, routedIPA}, {ga, "[" + routedIPA6 + "]"}, {gb, routedIPB}, {gb, "[" + routedIPB6 + "]"}} {
			if err := g.g.WaitReady(90 * time.Second); err != nil {
				t.Fatal(err)
			}
			body, err := lan.Router.Fetch("http://" + g.ip + "/")
			if err != nil {
				t.Fatal(err)
			}
			if want := "mac=" + g.g.MAC; !strings.Contains(body, want) {
				t.Errorf("page from %s = %q, want it to name %s", g.ip, body, want)
			}
		}
		out := lan.Router.MustExec(t, "ip", "neigh", "show", routedIPA, "dev", testbed.RouterIf)
		if !strings.Contains(out, "lladdr "+hvMAC) {
			t.Errorf("router's neighbour entry for %s = %q, want the hypervisor's MAC %s", routedIPA, out, hvMAC)
		}
		out = lan.Router.MustExec(t, "ip", "-6", "neigh", "show", routedIPA6, "dev", testbed.RouterIf)
		if !strings.Contains(out, "lladdr "+hvMAC) {
			t.Errorf("router's neighbour entry for %s = %q, want the hypervisor's MAC %s", routedIPA6, out, hvMAC)
		}
		out = lan.HV.MustExec(t, "ip", "neigh", "show", "proxy") + lan.HV.MustExec(t, "ip", "-6", "neigh", "show", "proxy")
		for _, want := range []string{routedIPA + " dev br0", routedIPA6 + " dev br0"} {
			if !strings.Contains(out, want) {
				t.Errorf("proxy entries = %q, want %s", out, want)
			}
		}
		if strings.Contains(out, routedIPB) || strings.Contains(out, routedIPB6) {
			t.Errorf("proxy entries = %q, want none for the routed subnets' %s and %s", out, routedIPB, routedIPB6)
		}
		if got := strings.TrimSpace(lan.HV.MustExec(t, "cat", "/proc/sys/net/ipv6/conf/br0/accept_ra")); got != "2" {
			t.Errorf("br0 accept_ra = %s with IPv6 forwarding on, want 2 (SLAAC kept)", got)
		}
		if err := lan.HV.Ping(lan.RouterIPv4.Addr().String()); err != nil {
			t.Errorf("the hypervisor lost its own connectivity: %v", err)
		}
		if body, err := lan.Router.Fetch("http://" + mustLeaseIP(t, lan, virtualMAC) + "/"); err != nil || !strings.Contains(body, virtualMAC) {
			t.Errorf("the bridged VM beside them: %q, %v", body, err)
		}
	})

	t.Run("a routed VM sending from an address not its own reaches nothing", func(t *testing.T) {
		p.tapAdd(t, "vmr3", "--routed", "--ips", "198.51.100.3,2001:db8:1::3")
		vm := p.openTAP(t, "vmr3")
		gw := mustMAC(t, linkMAC(t, lan.HV, "vmr3"))
		src := mustMAC(t, "02:00:00:00:0a:03")
		router := lan.RouterIPv4.Addr()
		own := frames.UDP4ProbeTo("own address", gw, src, netip.MustParseAddr("198.51.100.3"), router, 4000, 9)
		probes := []polProbe{
			{frames.UDP4ProbeTo("foreign address", gw, src, netip.MustParseAddr("198.51.100.4"), router, 4000, 9), false},
			{frames.UDP4ProbeTo("another VM's address", gw, src, netip.MustParseAddr(routedIPB), router, 4000, 9), false},
			{frames.UDP4ProbeTo("the bridged VM's subnet", gw, src, netip.MustParseAddr("192.0.2.150"), router, 4000, 9), false},
		}
		polDeliver(t, vm, own, probes, []string{"the router"}, p.router)
		udp6 := func(name, from string) frames.Probe {
			n := frames.NewNonce()
			a := netip.MustParseAddr(from)
			return frames.Probe{Name: name, Nonce: n, Frame: frames.Ether(gw, src, frames.EtherIPv6, frames.UDP(a, lan.RouterIPv6.Addr(), 4000, 9, n))}
		}
		polDeliver(t, vm, udp6("own IPv6 address", "2001:db8:1::3"),
			[]polProbe{{udp6("foreign IPv6 address", "2001:db8:1::4"), false}, {udp6("another VM's IPv6 address", routedIPB6), false}},
			[]string{"the router"}, p.router)
		vm.Close()
		p.mustRun(t, nil, "tapbridge", "tap", "del", "vmr3", "--config", p.conf)
	})

	t.Run("isolated routed VMs reach no other VM", func(t *testing.T) {
		ports := []struct{ name, ip, mac string }{
			{"vmr3", "198.51.100.3", "02:00:00:00:0b:03"}, // isolated
			{"vmr4", "198.51.100.4", "02:00:00:00:0b:04"},
			{"vmr5", "198.51.100.5", "02:00:00:00:0b:05"},
		}
		taps := map[string]*frames.TAP{}
		gws := map[string]net.HardwareAddr{}
		for i, pt := range ports {
			flags := []string{"--routed", "--ips", pt.ip}
			if i == 0 {
				flags = append(flags, "--isolated")
			}
			p.tapAdd(t, pt.name, flags...)
			taps[pt.name] = p.openTAP(t, pt.name)
			gws[pt.name] = mustMAC(t, linkMAC(t, lan.HV, pt.name))
			// The frame TAPs answer no ARP: the host learns the guests' MACs here.
			lan.HV.MustExec(t, "ip", "neigh", "replace", pt.ip, "lladdr", pt.mac, "dev", pt.name)
		}
		router := lan.RouterIPv4.Addr()
		probe := func(name, from string, dst netip.Addr) frames.Probe {
			var src netip.Addr
			var mac string
			for _, pt := range ports {
				if pt.name == from {
					src, mac = netip.MustParseAddr(pt.ip), pt.mac
				}
			}
			return frames.UDP4ProbeTo(name, gws[from], mustMAC(t, mac), src, dst, 4000, 9)
		}
		ip := func(s string) netip.Addr { return netip.MustParseAddr(s) }
		// vmr4 -> vmr5: routed VM to routed VM works (the control); vmr4 ->
		// vmr3 (isolated) does not.
		polDeliver(t, taps["vmr4"], probe("marker", "vmr4", ip("198.51.100.5")),
			[]polProbe{{probe("to the isolated VM", "vmr4", ip("198.51.100.3")), false}},
			[]string{"vmr5", "vmr3"}, taps["vmr5"], taps["vmr3"])
		// vmr3 (isolated) reaches the router, not vmr4.
		polDeliver(t, taps["vmr3"], probe("marker", "vmr3", router),
			[]polProbe{{probe("from the isolated VM", "vmr3", ip("198.51.100.4")), false}},
			[]string{"the router", "vmr4"}, p.router, taps["vmr4"])
		for _, pt := range ports {
			taps[pt.name].Close()
			p.mustRun(t, nil, "tapbridge", "tap", "del", pt.name, "--config", p.conf)
		}
	})

	t.Run("an unregistered MAC gets nothing out of the uplink", func(t *testing.T) {
		p.tapAdd(t, "vmu")
		vm := p.openTAP(t, "vmu")
		host := frames.OpenPacket(t, lan.HV.Path, "br0")
		mac := mustMAC(t, "02:00:00:00:0a:99")
		marker := frames.DHCPDiscoverProbe("marker", mac, 0x1001)
		probes := []polProbe{{frames.DHCPDiscoverProbe("DHCP discover", mac, 0x1002), false}}
		// The marker reaches the host through the bridge; nothing reaches the router.
		got := frames.Deliver(t, vm, marker, []frames.Probe{probes[0].Probe}, host, p.router)
		if got[1]["DHCP discover"] || got[1]["marker"] {
			t.Errorf("a frame from the unregistered MAC %s reached the router", mac)
		}
		vm.Close()
		p.mustRun(t, nil, "tapbridge", "tap", "del", "vmu", "--config", p.conf)
	})

	t.Run("CNI routed, host and netns modes, static IPAM", func(t *testing.T) {
		b := newCNIBed(t, lan.HV)
		b.runDir = p.runDir
		for i, mode := range []string{"host", "netns"} {
			ip := fmt.Sprintf("198.51.100.%d", 5+i)
			list := confList(t, "1.0.0", "routed-"+mode, tbPlugin(map[string]any{"routed": true, "uplink": "eth0", "mode": mode, "ipam": staticIPAM(ip + "/24")}))
			sandbox := testbed.NewNetNS(t)
			rt := &libcni.RuntimeConf{ContainerID: "routed-" + mode, NetNS: sandbox.Path, IfName: "eth0"}
			res := b.mustAdd(t, list, rt)
			if len(res.IPs) != 1 || res.IPs[0].Address.String() != ip+"/32" || res.IPs[0].Gateway.String() != "169.254.0.1" {
				t.Fatalf("%s mode: result IPs = %v, want %s/32 gateway 169.254.0.1", mode, res.IPs, ip)
			}
			var routes []string
			for _, r := range res.Routes {
				routes = append(routes, fmt.Sprintf("%s via %v", r.Dst.String(), r.GW))
			}
			if diff := cmp.Diff([]string{"169.254.0.1/32 via <nil>", "0.0.0.0/0 via 169.254.0.1"}, routes); diff != "" {
				t.Errorf("%s mode: result routes (-want +got):\n%s", mode, diff)
			}
			if err := b.check(list, rt); err != nil {
				t.Errorf("%s mode: CHECK: %v", mode, err)
			}
			// The guest's NIC: the TAP, in the host or the sandbox.
			port, where := hostTAPName(rt.ContainerID, "eth0"), lan.HV
			if mode == "netns" {
				port, where = hostPortName(rt.ContainerID, "eth0"), sandbox
			}
			tapName := port
			if mode == "netns" {
				tapName = "eth0"
			}
			vm := frames.OpenTAP(t, where.Path, tapName)
			gw := mustMAC(t, linkMAC(t, lan.HV, port))
			src := mustMAC(t, "02:00:00:00:0a:05")
			own := frames.UDP4ProbeTo("own address", gw, src, netip.MustParseAddr(ip), lan.RouterIPv4.Addr(), 4000, 9)
			polDeliver(t, vm, own, []polProbe{{frames.UDP4ProbeTo("foreign address", gw, src, netip.MustParseAddr("198.51.100.4"), lan.RouterIPv4.Addr(), 4000, 9), false}}, []string{"the router"}, p.router)
			vm.Close()
			if err := b.del(list, rt); err != nil {
				t.Fatalf("%s mode: DEL: %v", mode, err)
			}
			if out := lan.HV.MustExec(t, "ip", "route", "show", ip); strings.TrimSpace(out) != "" {
				t.Errorf("%s mode: route left after DEL: %q", mode, out)
			}
		}
	})

	if err := ga.Stop(); err != nil { // QEMU runs qemu-ifdown
		t.Error(err)
	}
	if err := gb.Stop(); err != nil {
		t.Error(err)
	}
	p.mustRun(t, nil, "tapbridge", "tap", "del", "vmr2", "--config", p.conf)
	if diff := cmp.Diff(before, hostDumps(t, lan.HV)); diff != "" {
		t.Errorf("the hypervisor after detaching the routed VMs (-before +after):\n%s", diff)
	}
	if err := lan.HV.Ping(lan.RouterIPv4.Addr().String()); err != nil {
		t.Errorf("the hypervisor lost its own connectivity: %v", err)
	}
	if n := providerDrops(t, lan); n != "0" {
		t.Errorf("the provider dropped %s frames from unknown MACs; want 0", n)
	}
}

func mustMAC(t *testing.T, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustLeaseIP(t *testing.T, lan *testbed.LAN, mac string) string {
	t.Helper()
	l, err := lan.WaitLease(mac, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return l.IP.String()
}

// TestRoutedRefusals: a routed attach without the VM's addresses, or with
// an address of the host, is refused by every front end with one line,
// and the hypervisor is left exactly as it was.
func TestRoutedRefusals(t *testing.T) {
	p := newPolicyLAN(t, testbed.LANOptions{}, "")
	hv := p.lan.HV
	dumps := func() string {
		var b strings.Builder
		hv.Settle(t) // what a user sees once the kernel has caught up
		for _, args := range [][]string{
			{"ip", "-o", "link"}, {"ip", "-o", "addr"}, {"ip", "route", "show", "table", "all"}, {"ip", "-6", "route", "show", "table", "all"},
			{"ip", "neigh", "show", "proxy"}, {"ip", "-6", "neigh", "show", "proxy"}, {"ip", "rule"}, {"nft", "list", "ruleset"},
			{"cat", "/proc/sys/net/ipv4/conf/eth0/forwarding", "/proc/sys/net/ipv6/conf/all/forwarding"},
		} {
			b.WriteString(hv.MustExec(t, args[0], args[1:]...))
		}
		return b.String()
	}
	vm := p.newTAP(t) // as QEMU makes it before it runs qemu-ifup
	before := dumps()
	for _, tc := range []struct {
		name string
		run  func() (string, error)
		want string
	}{
		{"qemu-ifup without TAPBRIDGE_IPS", func() (string, error) {
			return p.run([]string{"TAPBRIDGE_CONF=" + p.conf, "TAPBRIDGE_ROUTED=1"}, nil, "qemu-ifup", vm.Name())
		}, `qemu-ifup: cannot attach TAP "` + vm.Name() + `" routed: port "` + vm.Name() + `": config: "ips": routed mode needs the VM's addresses`},
		{"tap add --routed without --ips", func() (string, error) {
			return p.run(nil, nil, "tapbridge", "tap", "add", "vmx", "--config", p.conf, "--routed")
		}, `config: "ips": routed mode needs the VM's addresses`},
		{"tap add --routed with the host's address", func() (string, error) {
			return p.run(nil, nil, "tapbridge", "tap", "add", "vmx", "--config", p.conf, "--routed", "--ips", "192.0.2.10")
		}, `address 192.0.2.10: address in use: it is an address of the host`},
		{"CNI routed without IPAM", func() (string, error) {
			b := newCNIBed(t, hv)
			b.runDir = p.runDir
			conf := confListJSON(t, "1.0.0", "routed", tbPlugin(map[string]any{"routed": true, "uplink": "eth0", "mode": "host"}))
			l, err := libcni.ConfListFromBytes(conf)
			if err != nil {
				t.Fatal(err)
			}
			_, err = b.add(l, &libcni.RuntimeConf{ContainerID: "noaddr", NetNS: testbed.NewNetNS(t).Path, IfName: "eth0"})
			if err == nil {
				return "", nil
			}
			if code := testkit.CNICode(err); code != 7 {
				t.Errorf("CNI error code %d, want 7 (invalid configuration): %v", code, err)
			}
			return err.Error(), err
		}, `config: "ips": routed mode needs the VM's addresses`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := tc.run()
			if err == nil {
				t.Fatalf("succeeded: %s", out)
			}
			if out = strings.TrimSpace(out); !strings.Contains(out, tc.want) || strings.Contains(out, "\n") {
				t.Errorf("output %q, want one line containing %q", out, tc.want)
			}
			if diff := cmp.Diff(before, dumps()); diff != "" {
				t.Errorf("the hypervisor changed (-before +after):\n%s", diff)
			}
		})
	}
}

// TestRoutedFollowsTheUplink: a routed VM attached while the uplink is
// still a plain NIC keeps being answered for when `tapbridge up` moves the
// uplink into a bridge, and again after `tapbridge down`; detached, the
// hypervisor is as before.
func TestRoutedFollowsTheUplink(t *testing.T) {
	p := newPolicyLAN(t, testbed.LANOptions{}, "")
	lan := p.lan
	hvMAC := linkMAC(t, lan.HV, "eth0")
	dumps := func() string {
		var b strings.Builder
		lan.HV.Settle(t) // what a user sees once the kernel has caught up
		for _, args := range [][]string{
			{"ip", "-o", "addr"}, {"ip", "route", "show", "table", "all"}, {"ip", "-6", "route", "show", "table", "all"},
			{"ip", "neigh", "show", "proxy"}, {"ip", "-6", "neigh", "show", "proxy"}, {"ip", "rule"},
			{"cat", "/proc/sys/net/ipv4/conf/eth0/forwarding", "/proc/sys/net/ipv6/conf/all/forwarding"},
		} {
			b.WriteString(lan.HV.MustExec(t, args[0], args[1:]...))
		}
		return b.String()
	}
	before := dumps()
	answered := func(where string) {
		t.Helper()
		out, err := lan.Router.Exec("busybox", "arping", "-c", "1", "-w", "3", "-I", testbed.RouterIf, routedIPA)
		if err != nil || !strings.Contains(strings.ToLower(out), strings.ToLower(hvMAC)) {
			t.Errorf("%s: the router's ARP for %s: %v\n%s\nwant an answer from the hypervisor's MAC %s", where, routedIPA, err, out, hvMAC)
		}
		proxies := lan.HV.MustExec(t, "ip", "neigh", "show", "proxy")
		if !strings.Contains(proxies, routedIPA+" dev "+where) {
			t.Errorf("proxy entries %q, want %s on %s", proxies, routedIPA, where)
		}
	}
	p.tapAdd(t, "vmr", "--routed", "--ips", routedIPA)
	answered("eth0")
	if out := p.mustRun(t, nil, "tapbridge", "up", "--config", p.conf); !strings.Contains(out, "routed ports moved with the uplink's addresses: vmr") {
		t.Errorf("up says %q, want it to name the routed port it moved", out)
	}
	answered("br0")
	p.mustRun(t, nil, "tapbridge", "down", "--config", p.conf)
	answered("eth0")
	p.mustRun(t, nil, "tapbridge", "tap", "del", "vmr", "--config", p.conf)
	if diff := cmp.Diff(before, dumps()); diff != "" {
		t.Errorf("the hypervisor after the routed port left (-before +after):\n%s", diff)
	}
}
