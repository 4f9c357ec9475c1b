package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tapbridge/tapbridge/internal/tap"
	"github.com/tapbridge/tapbridge/test/frames"
	"github.com/tapbridge/tapbridge/test/testbed"
)

// The port policy (tenant safety) end to end, through the real front ends
// (`tapbridge tap add|del`, qemu-ifup/qemu-ifdown, the CNI plugin) and with
// real frames: the test plays the VM, writing hand-built frames to its TAP,
// and an AF_PACKET capture on the router's veth-r (and other VMs' TAPs)
// shows which arrive. The hypervisor's configuration names "uplink": "eth0",
// so br0 holds eth0 and what leaves a VM port reaches the router. No QEMU
// guest is booted.

// Addresses of the VMs and of what they impersonate.
var (
	polMAC1    = polMustMAC("52:54:00:00:00:51")
	polMAC2    = polMustMAC("52:54:00:00:00:52")
	polOther   = polMustMAC("52:54:00:00:00:99") // someone else's MAC
	polIP1     = netip.MustParseAddr("192.0.2.51")
	polIP2     = netip.MustParseAddr("192.0.2.52")
	polIP1v6   = netip.MustParseAddr("2001:db8::51")
	polOtherIP = netip.MustParseAddr("192.0.2.99") // someone else's address
	polRouter  = testbed.RouterIPv4.Addr()
	polBcast   = netip.MustParseAddr("192.0.2.255")
	polLL1     = netip.MustParseAddr("fe80::5054:ff:fe00:51")
)

func polMustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// policyLAN is the test bed's LAN with a tapbridge configuration for the
// hypervisor and a capture on the router's end of the LAN.
type policyLAN struct {
	lan    *testbed.LAN
	conf   string // the configuration file
	runDir string // TAPBRIDGE_RUN_DIR
	router *frames.Socket
}

// newPolicyLAN builds the LAN; keys are extra configuration keys (JSON
// object members, e.g. `"macSpoofCheck": true`), "" for none.
func newPolicyLAN(t *testing.T, opts testbed.LANOptions, keys string) *policyLAN {
	t.Helper()
	needRoot(t)
	if err := testbed.CheckLAN(); err != nil {
		t.Skip(err)
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft not found (install nftables): the tests list the ruleset with it")
	}
	dir := t.TempDir()
	p := &policyLAN{
		lan:    testbed.NewLAN(t, opts),
		conf:   filepath.Join(dir, "tapbridge.conf"),
		runDir: filepath.Join(dir, "run"),
	}
	// An ACL of our own, so that a host's /etc/tapbridge/bridge.conf does
	// not decide for qemu-ifup.
	acl := filepath.Join(dir, "bridge.conf")
	if err := os.WriteFile(acl, []byte("allow br0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if keys != "" {
		keys = ", " + keys
	}
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "lan", "type": "tapbridge", "bridge": "br0", "uplink": "eth0", "acl": %q%s}`, acl, keys)
	if err := os.WriteFile(p.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p.router = frames.OpenPacket(t, p.lan.Router.Path, testbed.RouterIf)
	return p
}

// env is the environment of the binaries: the test's own without
// tapbridge's and CNI's variables, TAPBRIDGE_RUN_DIR, then extra.
func (p *policyLAN) env(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TAPBRIDGE_") && !strings.HasPrefix(kv, "CNI_") {
			env = append(env, kv)
		}
	}
	return append(append(env, "TAPBRIDGE_RUN_DIR="+p.runDir), extra...)
}

// run runs one of tapbridge's binaries in the hypervisor and returns its
// combined output.
func (p *policyLAN) run(env []string, stdin []byte, name string, args ...string) (string, error) {
	cmd := p.lan.HV.Command(bin(name), args...)
	cmd.Env = p.env(env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (p *policyLAN) mustRun(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, err := p.run(env, nil, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// tapAdd runs `tapbridge tap add name --config conf flags...`.
func (p *policyLAN) tapAdd(t *testing.T, name string, flags ...string) {
	t.Helper()
	p.mustRun(t, nil, "tapbridge", append([]string{"tap", "add", name, "--config", p.conf}, flags...)...)
}

// openTAP opens the persistent TAP name in the hypervisor, as a QEMU with
// ifname=name,script=no would.
func (p *policyLAN) openTAP(t *testing.T, name string) *frames.TAP {
	t.Helper()
	return frames.OpenTAP(t, p.lan.HV.Path, name)
}

// newTAP creates a non-persistent TAP in the hypervisor, as QEMU does
// before it runs qemu-ifup; it goes away when the test closes it.
func (p *policyLAN) newTAP(t *testing.T) *frames.TAP {
	t.Helper()
	var f *os.File
	var name string
	err := p.lan.HV.Do(func() (err error) {
		f, name, err = tap.Open("tbvm%d", tap.DefaultOptions)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return frames.NewTAP(name, f)
}

// ifup runs bin/qemu-ifup name as QEMU does, with the VM's variables.
func (p *policyLAN) ifup(t *testing.T, name string, vmEnv ...string) {
	t.Helper()
	p.mustRun(t, append([]string{"TAPBRIDGE_CONF=" + p.conf}, vmEnv...), "qemu-ifup", name)
}

// ruleset is `nft list ruleset` in the hypervisor.
func (p *policyLAN) ruleset(t *testing.T) string {
	t.Helper()
	return p.lan.HV.MustExec(t, "nft", "list", "ruleset")
}

// policyOf returns the lines of the ruleset that name port: its elements
// in the policy's sets (port names appear quoted, nowhere else).
func (p *policyLAN) policyOf(t *testing.T, port string) []string {
	t.Helper()
	re := regexp.MustCompile(`"` + regexp.QuoteMeta(port) + `"`)
	var lines []string
	for _, l := range strings.Split(p.ruleset(t), "\n") {
		if re.MatchString(l) {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	return lines
}

// assertPolicy checks that port has its record (a commented element of
// the policies set).
func (p *policyLAN) assertPolicy(t *testing.T, port string) {
	t.Helper()
	port = p.policyPort(t, port)
	rs := p.ruleset(t)
	if !regexp.MustCompile(`"` + regexp.QuoteMeta(port) + `" comment "guards=`).MatchString(rs) {
		t.Errorf("no policy record for %s in the ruleset:\n%s", port, rs)
	}
}

// assertNoPolicy checks that nothing of port is left in the ruleset.
func (p *policyLAN) assertNoPolicy(t *testing.T, port string) {
	t.Helper()
	for _, name := range []string{port, frontPort(port)} {
		if left := p.policyOf(t, name); len(left) > 0 {
			t.Errorf("the ruleset still names %s: %q\n%s", name, left, p.ruleset(t))
		}
	}
}

// policyPort is the bridge port, and so the policy's key, of a VM's TAP
// (its front) or of a CNI veth's host end (itself).
func (p *policyLAN) policyPort(t *testing.T, name string) string {
	t.Helper()
	if strings.Contains(p.lan.HV.MustExec(t, "ip", "-d", "-o", "link", "show", "dev", name), " tun type tap ") {
		return frontPort(name)
	}
	return name
}

// links returns "name master" (or "name") for every link in the
// hypervisor, sorted.
func (p *policyLAN) links(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(p.lan.HV.MustExec(t, "ip", "-o", "link", "show")), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		s := strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0]
		for i := range f {
			if f[i] == "master" && i+1 < len(f) {
				s += " master " + f[i+1]
			}
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// assertHostOnLAN checks that the hypervisor itself still reaches the
// router.
func (p *policyLAN) assertHostOnLAN(t *testing.T) {
	t.Helper()
	if err := p.lan.HV.Ping(polRouter.String()); err != nil {
		t.Errorf("the hypervisor no longer reaches the router: %v", err)
	}
}

// polProbe is a frame a VM sends and whether it must get through.
type polProbe struct {
	frames.Probe
	pass bool
}

// polDeliver sends the probes from src and checks, for every capture in
// caps (named by where), that exactly the probes that must pass arrived.
// The marker, which must reach caps[0], is a frame from the VM's own MAC
// and address.
func polDeliver(t *testing.T, src frames.Port, marker frames.Probe, probes []polProbe, where []string, caps ...frames.Port) {
	t.Helper()
	ps := make([]frames.Probe, len(probes))
	for i, p := range probes {
		ps[i] = p.Probe
	}
	got := frames.Deliver(t, src, marker, ps, caps...)
	for _, p := range probes {
		for i := range caps {
			if got[i][p.Name] != p.pass {
				t.Errorf("from %s: %s: reached %s = %t, want %t", src.Name(), p.Name, where[i], got[i][p.Name], p.pass)
			}
		}
	}
}

// polVMProbes are the frames of the list, sent by a VM with mac, ip
// and link-local address ll; with spoof checks on, the want column.
func polVMProbes(mac net.HardwareAddr, ip, ll netip.Addr, xid uint32) []polProbe {
	return []polProbe{
		{frames.UDP4Probe("own MAC and IPv4", mac, ip, polBcast, 1000, 2000), true},
		{frames.UDP4Probe("spoofed source MAC", polOther, ip, polBcast, 1000, 2000), false},
		{frames.UDP4Probe("spoofed source IPv4", mac, polOtherIP, polBcast, 1000, 2000), false},
		{frames.ARPProbe("ARP request from own IPv4", mac, mac, ip, polRouter), true},
		{frames.ARPProbe("ARP claiming another IPv4", mac, mac, polOtherIP, polRouter), false},
		{frames.ARPProbe("gratuitous ARP for the router's IPv4", mac, mac, polRouter, polRouter), false},
		{frames.DHCPDiscoverProbe("DHCP discover from 0.0.0.0", mac, xid), true},
		{frames.DHCPOfferProbe("rogue DHCP offer", mac, ip, polOtherIP, polOther, xid+1), false},
		{frames.UDP6Probe("link-local IPv6", mac, ll, frames.AllNodes, 1000, 2000), true},
		{frames.RAProbe("router advertisement", mac, ll), false},
	}
}

// polAttackProbes are what a hostile tenant with mac, ip and link-local
// address ll tried and got through before the guards held (issue 8), and
// none may pass any guard.
func polAttackProbes(mac net.HardwareAddr, ip, ll netip.Addr, xid uint32) []polProbe {
	offer := frames.DHCPOfferProbe("double-tagged DHCP offer", mac, ip, polOtherIP, polOther, xid+2)
	raFrag, _ := frames.RAFragmentProbes("RA, ICMPv6 header in the second fragment", mac, ll, xid)
	return []polProbe{
		{frames.DHCPOfferProbeFrom("DHCP offer from port 6767", mac, ip, 6767, polOtherIP, polOther, xid+3), false},
		{offer.Tagged(frames.Ether8021Q, 6).Tagged(frames.Ether8021AD, 5), false},
		{frames.UDPProbeWith("DHCPv6 advertise from port 5000", mac, ll, frames.AllNodes, 5000, 546, []byte{2}), false},
		{raFrag, false},
		{frames.BPDUProbe("config BPDU, root priority 0", mac, 0), false},
	}
}

// polSpoofProbes are the attacks a port with both spoof checks must stop
// on top of polAttackProbes: another host's addresses in ND, and DHCP
// discovers for made-up clients.
func polSpoofProbes(mac net.HardwareAddr, ll, routerLL netip.Addr, xid uint32) []polProbe {
	return []polProbe{
		{frames.NAProbe("NA (override) for the router's link-local", mac, ll, routerLL), false},
		{frames.NSProbeLL("NS with another's SLLA", mac, ll, routerLL, polOther), false},
		{frames.NAProbe("NA from another link-local", mac, netip.MustParseAddr("fe80::99"), netip.MustParseAddr("fe80::99")), false},
		{frames.DHCPDiscoverProbeFor("DHCP discover for another chaddr", mac, polOther, xid+4), false},
		{frames.DHCPDiscoverProbeFor("DHCP discover for a third chaddr", mac, polMustMAC("52:54:00:00:00:98"), xid+5), false},
		{frames.NSProbe("NS for the router from own link-local", mac, ll, routerLL), true},
	}
}

// routerLL is the link-local address of the router's veth-r.
func (p *policyLAN) routerLL(t *testing.T) netip.Addr {
	t.Helper()
	out := p.lan.Router.MustExec(t, "ip", "-6", "-o", "addr", "show", "dev", testbed.RouterIf, "scope", "link")
	f := strings.Fields(out)
	for i := range f {
		if f[i] == "inet6" && i+1 < len(f) {
			if pfx, err := netip.ParsePrefix(f[i+1]); err == nil {
				return pfx.Addr()
			}
		}
	}
	t.Fatalf("no link-local address on the router's %s: %q", testbed.RouterIf, out)
	return netip.Addr{}
}

// assertNoGatewayTakeover: the hypervisor knows the router's link-local
// address by the router's MAC (a stale entry, which a neighbour
// advertisement with the override flag would rewrite); the VM behind vm
// advertises that address as its own; the entry must still name the
// router's MAC.
func (p *policyLAN) assertNoGatewayTakeover(t *testing.T, vm frames.Port, mac net.HardwareAddr, ll netip.Addr) {
	t.Helper()
	routerLL, routerMAC := p.routerLL(t), p.routerMAC(t)
	p.lan.HV.MustExec(t, "ip", "-6", "neigh", "replace", routerLL.String(), "lladdr", routerMAC.String(), "dev", "br0", "nud", "stale")
	na := polProbe{frames.NAProbe("NA (override) for the router's link-local", mac, ll, routerLL), false}
	polDeliver(t, vm, frames.UDP4Probe("marker", mac, polIP1, polBcast, 1, 2), []polProbe{na}, []string{"the router"}, p.router)
	// The bridge hands a frame to the host (br0) in the same pass as it
	// forwards it, so the NA, if it got through, was processed before the
	// marker reached the router.
	out := p.lan.HV.MustExec(t, "ip", "-6", "neigh", "show", routerLL.String(), "dev", "br0")
	if !strings.Contains(out, routerMAC.String()) {
		t.Errorf("the hypervisor's neighbour entry for the router's %s after the VM's NA: %q, want lladdr %s", routerLL, strings.TrimSpace(out), routerMAC)
	}
}

// polWaitOffer waits for the router's DHCP offer for xid at the VM's TAP.
func polWaitOffer(t *testing.T, vm *frames.TAP, xid uint32) (frames.DHCPReply, bool) {
	t.Helper()
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		for _, f := range vm.Read(50 * time.Millisecond) {
			if r, ok := frames.ParseDHCPReply(f); ok && r.XID == xid {
				return r, true
			}
		}
	}
	return frames.DHCPReply{}, false
}

// TestPolicyTapAdd: `tapbridge tap add` with --mac-spoof-check and
// --ip-spoof-check; the test is the VM behind the persistent TAP. Its own
// frames, ARP and DHCP discover reach the router and another VM, and the
// router's DHCP offer comes back; spoofed MACs and addresses, ARP claiming
// another address, a rogue DHCP offer and an RA reach neither. `tap del`
// leaves nothing of the port in the ruleset.
func TestPolicyTapAdd(t *testing.T) {
	t.Parallel()
	p := newPolicyLAN(t, testbed.LANOptions{DHCP: true}, "")
	p.tapAdd(t, "tap0", "--mac", polMAC1.String(), "--ips", polIP1.String(), "--mac-spoof-check", "--ip-spoof-check")
	p.tapAdd(t, "tap1") // another tenant's VM, default policy
	p.assertPolicy(t, "tap0")
	vm, other := p.openTAP(t, "tap0"), p.openTAP(t, "tap1")

	const xid = 0x7b0a0001
	routerLL := p.routerLL(t)
	probes := append(polVMProbes(polMAC1, polIP1, polLL1, xid), polAttackProbes(polMAC1, polIP1, polLL1, xid)...)
	probes = append(probes, polSpoofProbes(polMAC1, polLL1, routerLL, xid)...)
	p.deliverFromVM(t, vm, other, probes, xid)
	p.assertNoGatewayTakeover(t, vm, polMAC1, polLL1)

	// QEMU exits; the operator deletes the TAP.
	vm.Close()
	other.Close()
	out := p.mustRun(t, nil, "tapbridge", "tap", "del", "tap0", "--config", p.conf)
	if !strings.Contains(out, "deleted") {
		t.Errorf("tap del tap0 said %q", out)
	}
	p.assertNoPolicy(t, "tap0")
	p.assertPolicy(t, "tap1") // another port's policy is left alone
	p.mustRun(t, nil, "tapbridge", "tap", "del", "tap1", "--config", p.conf)
	p.assertNoPolicy(t, "tap1")
	if diff := cmp.Diff([]string{"br0", "eth0 master br0", "lo"}, p.links(t)); diff != "" {
		t.Errorf("links after tap del (-want +got):\n%s", diff)
	}
	p.assertHostOnLAN(t)
}

// TestPolicyQEMUIfup: qemu-ifup as QEMU runs it, for a TAP QEMU made and
// holds, with the VM's MAC and addresses in TAPBRIDGE_MAC and
// TAPBRIDGE_IPS and the checks in the configuration file. qemu-ifdown
// leaves nothing of the port in the ruleset.
func TestPolicyQEMUIfup(t *testing.T) {
	t.Parallel()
	p := newPolicyLAN(t, testbed.LANOptions{DHCP: true}, `"macSpoofCheck": true, "ipSpoofCheck": true`)
	vm, other := p.newTAP(t), p.newTAP(t)
	p.ifup(t, vm.Name(), "TAPBRIDGE_MAC="+polMAC1.String(), "TAPBRIDGE_IPS="+polIP1.String()+","+polIP1v6.String())
	p.ifup(t, other.Name(), "TAPBRIDGE_MAC="+polMAC2.String(), "TAPBRIDGE_IPS="+polIP2.String())
	p.assertPolicy(t, vm.Name())

	const xid = 0x7b0a0002
	routerLL := p.routerLL(t)
	probes := append(polVMProbes(polMAC1, polIP1, polLL1, xid), polAttackProbes(polMAC1, polIP1, polLL1, xid)...)
	probes = append(probes, polSpoofProbes(polMAC1, polLL1, routerLL, xid)...)
	probes = append(probes,
		polProbe{frames.UDP6Probe("own IPv6", polMAC1, polIP1v6, frames.AllNodes, 1000, 2000), true},
		polProbe{frames.UDP6Probe("spoofed source IPv6", polMAC1, netip.MustParseAddr("2001:db8::99"), frames.AllNodes, 1000, 2000), false},
		polProbe{frames.NAProbe("NA for another IPv6", polMAC1, polLL1, netip.MustParseAddr("2001:db8::1")), false},
	)
	p.deliverFromVM(t, vm, other, probes, xid)
	p.assertNoGatewayTakeover(t, vm, polMAC1, polLL1)

	// QEMU runs the downscript while it still holds the TAP; the TAP,
	// which QEMU made and would delete by closing it right after, goes
	// with its front in one kernel operation.
	p.mustRun(t, nil, "qemu-ifdown", vm.Name())
	p.assertNoPolicy(t, vm.Name())
	p.assertPolicy(t, other.Name())
	want := []string{"br0", "eth0 master br0", "lo", other.Name(), frontPort(other.Name()) + " master br0", frontPeer(other.Name())}
	sort.Strings(want)
	if diff := cmp.Diff(want, p.links(t)); diff != "" {
		t.Errorf("links after qemu-ifdown %s (-want +got):\n%s", vm.Name(), diff)
	}
	p.mustRun(t, nil, "qemu-ifdown", vm.Name()) // idempotent
	p.mustRun(t, nil, "qemu-ifdown", other.Name())
	p.assertNoPolicy(t, other.Name())
}

// TestPolicyIsolation: two isolated VMs, one attached by `tap add
// --isolated`, the other by qemu-ifup with TAPBRIDGE_ISOLATED=1, cannot
// exchange frames, broadcast or unicast to each other's MAC; both reach the
// router, and the router reaches both.
func TestPolicyIsolation(t *testing.T) {
	t.Parallel()
	p := newPolicyLAN(t, testbed.LANOptions{}, "")
	p.tapAdd(t, "tap0", "--isolated")
	a := p.openTAP(t, "tap0")
	b := p.newTAP(t)
	p.ifup(t, b.Name(), "TAPBRIDGE_ISOLATED=1")

	// Each VM sends a broadcast first, so the bridge has learned both MACs
	// before the unicast probes.
	for _, v := range []struct {
		src, dst    frames.Port
		mac, dstMAC net.HardwareAddr
		ip          netip.Addr
	}{
		{a, b, polMAC1, polMAC2, polIP1},
		{b, a, polMAC2, polMAC1, polIP2},
		{a, b, polMAC1, polMAC2, polIP1},
	} {
		bc := frames.UDP4Probe("broadcast", v.mac, v.ip, polBcast, 1000, 2000)
		uc := frames.UDP4ProbeTo("unicast to the other VM", v.dstMAC, v.mac, v.ip, polBcast, 1000, 2000)
		got := frames.Deliver(t, v.src, frames.UDP4Probe("marker", v.mac, v.ip, polBcast, 1, 2), []frames.Probe{bc, uc}, p.router, v.dst)
		if !got[0][bc.Name] {
			t.Errorf("a broadcast from %s did not reach the router", v.src.Name())
		}
		for _, n := range []string{bc.Name, uc.Name} {
			if got[1][n] {
				t.Errorf("%s from %s reached the other isolated VM %s", n, v.src.Name(), v.dst.Name())
			}
		}
	}

	// The router reaches both, by broadcast and by unicast.
	routerMAC := p.routerMAC(t)
	var probes []frames.Probe
	for _, m := range []net.HardwareAddr{polMAC1, polMAC2} {
		probes = append(probes, frames.UDP4ProbeTo("router to "+m.String(), m, routerMAC, polRouter, polBcast, 1000, 2000))
	}
	bc := frames.UDP4Probe("router broadcast", routerMAC, polRouter, polBcast, 1000, 2000)
	probes = append(probes, bc)
	got := frames.Deliver(t, p.router, frames.UDP4Probe("marker", routerMAC, polRouter, polBcast, 1, 2), probes, a, b)
	for i, v := range []struct {
		vm  frames.Port
		mac net.HardwareAddr
	}{{a, polMAC1}, {b, polMAC2}} {
		for _, n := range []string{bc.Name, "router to " + v.mac.String()} {
			if !got[i][n] {
				t.Errorf("%s did not reach %s", n, v.vm.Name())
			}
		}
	}
}

// routerMAC is the MAC of the router's veth-r.
func (p *policyLAN) routerMAC(t *testing.T) net.HardwareAddr {
	t.Helper()
	out := p.lan.Router.MustExec(t, "cat", "/sys/class/net/"+testbed.RouterIf+"/address")
	m, err := net.ParseMAC(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestPolicyVLAN: a VM on access VLAN 10 (`tap add --vlan 10`; the uplink
// carries VLAN 10 tagged, "uplinkVlans": [10]) reaches the router's VLAN 10
// subinterface and not the untagged LAN: it leases from VLAN 10's DHCP
// server only, its ARP for the VLAN 10 address is answered and the one for
// the untagged address is not, and its broadcasts reach no untagged VM. The
// host keeps its connectivity.
func TestPolicyVLAN(t *testing.T) {
	t.Parallel()
	if err := testbed.CheckVLAN(); err != nil {
		t.Skipf("no VLANs on this kernel: %v", err)
	}
	p := newPolicyLAN(t, testbed.LANOptions{DHCP: true}, `"uplinkVlans": [10]`)
	vlanNet := netip.MustParsePrefix("198.51.100.1/24")
	p.lan.AddVLAN(t, 10, vlanNet)
	// Like a real router, answer ARP only for the addresses of the
	// interface asked on (Linux answers for any of its addresses by
	// default, which would hide a VM leaking onto the untagged LAN).
	err := p.lan.Router.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv4/conf/all/arp_ignore", []byte("1"), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.run(nil, nil, "tapbridge", "tap", "add", "tap0", "--config", p.conf, "--vlan", "10")
	if err != nil && strings.Contains(out, "CONFIG_BRIDGE_VLAN_FILTERING") {
		t.Skipf("kernel without bridge VLAN filtering: %s", strings.TrimSpace(out))
	}
	if err != nil {
		t.Fatalf("tap add tap0 --vlan 10: %v\n%s", err, out)
	}
	p.tapAdd(t, "tap1") // an untagged VM
	vm, untagged := p.openTAP(t, "tap0"), p.openTAP(t, "tap1")
	vlanRouter := frames.OpenPacket(t, p.lan.Router.Path, testbed.RouterIf+".10")
	vlanIP := netip.MustParseAddr("198.51.100.51")
	vlanBcast := netip.MustParseAddr("198.51.100.255")

	// DHCP: the offer comes from VLAN 10's server, for a VLAN 10 address;
	// the untagged VM's from the LAN's.
	for _, c := range []struct {
		vm     *frames.TAP
		mac    net.HardwareAddr
		xid    uint32
		server netip.Prefix
	}{
		{vm, polMAC1, 0x7b0a0010, vlanNet},
		{untagged, polMAC2, 0x7b0a0011, testbed.RouterIPv4},
	} {
		frames.Drain(c.vm)
		c.vm.Send(t, frames.DHCPDiscoverProbe("discover", c.mac, c.xid).Frame)
		r, ok := polWaitOffer(t, c.vm, c.xid)
		switch {
		case !ok:
			t.Errorf("%s: no DHCP offer", c.vm.Name())
		case r.Server != c.server.Addr() || !c.server.Masked().Contains(r.YIAddr):
			t.Errorf("%s: offer of %s from %s, want an address of %s from %s", c.vm.Name(), r.YIAddr, r.Server, c.server.Masked(), c.server.Addr())
		}
	}

	// answered reports whether the VM's ARP request for target from spa
	// is answered.
	answered := func(spa, target netip.Addr) bool {
		frames.Drain(vm)
		vm.Send(t, frames.ARPProbe("who-has", polMAC1, polMAC1, spa, target).Frame)
		for end := time.Now().Add(time.Second); time.Now().Before(end); {
			for _, f := range vm.Read(50 * time.Millisecond) {
				if frames.IsARPReply(f, target) {
					return true
				}
			}
		}
		return false
	}
	if !answered(vlanIP, vlanNet.Addr()) {
		t.Errorf("VLAN 10 VM: no ARP answer from the router's VLAN 10 address %s", vlanNet.Addr())
	}
	if answered(polIP1, polRouter) {
		t.Errorf("VLAN 10 VM: the router's untagged address %s answered", polRouter)
	}

	bc := frames.UDP4Probe("broadcast on VLAN 10", polMAC1, vlanIP, vlanBcast, 1000, 2000)
	got := frames.Deliver(t, vm, frames.UDP4Probe("marker", polMAC1, vlanIP, vlanBcast, 1, 2), []frames.Probe{bc}, vlanRouter, untagged)
	if got[1][bc.Name] {
		t.Errorf("a broadcast from the VLAN 10 VM reached the untagged VM")
	}
	p.assertHostOnLAN(t)

	// Detach: the VM's port goes with its VLAN; what is left is the
	// uplink's trunk ("uplinkVlans": 10 tagged, untagged LAN as PVID 1),
	// the bridge's own untagged VLAN 1 and the untagged VM's. A VM's
	// bridge port is its TAP's front (frontPort), not the TAP.
	want := []string{"br0 1 PVID Egress Untagged", "eth0 1 PVID Egress Untagged", "eth0 10",
		frontPort("tap0") + " 10 PVID Egress Untagged", frontPort("tap1") + " 1 PVID Egress Untagged"}
	sort.Strings(want)
	if d := cmp.Diff(want, p.bridgeVLANs(t)); d != "" {
		t.Errorf("bridge VLANs before tap del tap0 (-want +got):\n%s", d)
	}
	vm.Close()
	p.mustRun(t, nil, "tapbridge", "tap", "del", "tap0", "--config", p.conf)
	want = []string{"br0 1 PVID Egress Untagged", "eth0 1 PVID Egress Untagged", "eth0 10", frontPort("tap1") + " 1 PVID Egress Untagged"}
	sort.Strings(want)
	if d := cmp.Diff(want, p.bridgeVLANs(t)); d != "" {
		t.Errorf("bridge VLANs after tap del tap0 (-want +got):\n%s", d)
	}
	p.assertNoPolicy(t, "tap0")
	p.assertHostOnLAN(t)
}

// bridgeVLANs returns `bridge vlan show` of the hypervisor as sorted
// "port VID flags..." lines.
func (p *policyLAN) bridgeVLANs(t *testing.T) []string {
	t.Helper()
	var ports []struct {
		Ifname string `json:"ifname"`
		VLANs  []struct {
			VLAN  int      `json:"vlan"`
			Flags []string `json:"flags"`
		} `json:"vlans"`
	}
	out := p.lan.HV.MustExec(t, "bridge", "-json", "vlan", "show")
	if err := json.Unmarshal([]byte(out), &ports); err != nil {
		t.Fatalf("bridge -json vlan show: %v\n%s", err, out)
	}
	var lines []string
	for _, port := range ports {
		for _, v := range port.VLANs {
			lines = append(lines, strings.Join(append([]string{port.Ifname, strconv.Itoa(v.VLAN)}, v.Flags...), " "))
		}
	}
	sort.Strings(lines)
	return lines
}

// TestPolicyVLANUnsupported: on a kernel without bridge VLAN filtering, a
// port asking for "vlan": 10 (configuration file for tap add,
// TAPBRIDGE_VLAN for qemu-ifup) is refused with one line naming "vlan",
// and no TAP is left attached and no chain behind.
func TestPolicyVLANUnsupported(t *testing.T) {
	t.Parallel()
	p := newPolicyLAN(t, testbed.LANOptions{}, `"vlan": 10`)
	before := p.links(t)
	out, err := p.run(nil, nil, "tapbridge", "tap", "add", "tap0", "--config", p.conf)
	if err == nil {
		p.mustRun(t, nil, "tapbridge", "tap", "del", "tap0", "--config", p.conf)
		t.Skip("this kernel has bridge VLAN filtering: TestPolicyVLAN covers \"vlan\"")
	}
	polAssertOneLine(t, "tap add with \"vlan\": 10", out, `"vlan"`)
	// Nothing half-done: no TAP, and no bridge holding the uplink either.
	if after := p.links(t); strings.Join(before, ",") != strings.Join(after, ",") {
		t.Errorf("a refused tap add changed the links: before %q, after %q", before, after)
	}
	p.assertNoPolicy(t, "tap0")
	p.assertHostOnLAN(t)

	// qemu-ifup, with the VLAN from QEMU's environment and a configuration
	// without one.
	if err := os.WriteFile(p.conf, bytes.Replace(polMustRead(t, p.conf), []byte(`, "vlan": 10`), nil, 1), 0o644); err != nil {
		t.Fatal(err)
	}
	vm := p.newTAP(t)
	out, err = p.run([]string{"TAPBRIDGE_CONF=" + p.conf, "TAPBRIDGE_VLAN=10"}, nil, "qemu-ifup", vm.Name())
	if err == nil {
		t.Fatalf("qemu-ifup with TAPBRIDGE_VLAN=10 succeeded on a kernel without bridge VLAN filtering: %s", out)
	}
	polAssertOneLine(t, "qemu-ifup with TAPBRIDGE_VLAN=10", out, `"vlan"`)
	if ports := p.bridgePorts(p.links(t)); polContains(ports, vm.Name()) || polContains(ports, frontPort(vm.Name())) {
		t.Errorf("a refused qemu-ifup left %s on the bridge: %q", vm.Name(), ports)
	}
	p.assertNoPolicy(t, vm.Name())
	p.assertHostOnLAN(t)
}

func polMustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func polContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// bridgePorts returns the VM ports among links (see links): those on br0
// other than the uplink.
func (p *policyLAN) bridgePorts(links []string) []string {
	var ports []string
	for _, l := range links {
		if name, ok := strings.CutSuffix(l, " master br0"); ok && name != "eth0" {
			ports = append(ports, name)
		}
	}
	return ports
}

// polAssertOneLine checks that out, a failed command's output, is one line
// that names what.
func polAssertOneLine(t *testing.T, cmd, out, what string) {
	t.Helper()
	out = strings.TrimSpace(out)
	if strings.Contains(out, "\n") || !strings.Contains(out, what) {
		t.Errorf("%s: error %q, want one line naming %s", cmd, out, what)
	}
}

// TestPolicyMissingValue: a check that needs a value nobody gave is
// refused with one line naming its key, and the hypervisor is left exactly
// as it was: no TAP, no bridge port, no bridge, no chain.
func TestPolicyMissingValue(t *testing.T) {
	t.Parallel()
	p := newPolicyLAN(t, testbed.LANOptions{}, "")
	before := p.links(t)
	ruleset := p.ruleset(t)
	tests := []struct {
		name string
		args []string
		key  string
	}{
		{"MAC check without --mac", []string{"--mac-spoof-check", "--ips", polIP1.String()}, `"macSpoofCheck"`},
		{"IP check without --ips", []string{"--ip-spoof-check", "--mac", polMAC1.String()}, `"ipSpoofCheck"`},
		{"both without values", []string{"--mac-spoof-check", "--ip-spoof-check"}, `"macSpoofCheck"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := p.run(nil, nil, "tapbridge", append([]string{"tap", "add", "tap0", "--config", p.conf}, tt.args...)...)
			if err == nil {
				t.Fatalf("tap add tap0 %s succeeded: %s", strings.Join(tt.args, " "), out)
			}
			polAssertOneLine(t, "tap add "+strings.Join(tt.args, " "), out, tt.key)
			if diff := cmp.Diff(before, p.links(t)); diff != "" {
				t.Errorf("links (-before +after):\n%s", diff)
			}
			if got := p.ruleset(t); got != ruleset {
				t.Errorf("ruleset before:\n%s\nafter:\n%s", ruleset, got)
			}
		})
	}
	t.Run("qemu-ifup without TAPBRIDGE_MAC", func(t *testing.T) {
		if err := os.WriteFile(p.conf, bytes.Replace(polMustRead(t, p.conf), []byte(`"uplink"`), []byte(`"macSpoofCheck": true, "uplink"`), 1), 0o644); err != nil {
			t.Fatal(err)
		}
		vm := p.newTAP(t)
		out, err := p.run([]string{"TAPBRIDGE_CONF=" + p.conf}, nil, "qemu-ifup", vm.Name())
		if err == nil {
			t.Fatalf("qemu-ifup without TAPBRIDGE_MAC succeeded: %s", out)
		}
		polAssertOneLine(t, "qemu-ifup without TAPBRIDGE_MAC", out, `"macSpoofCheck"`)
		if diff := cmp.Diff(append(append([]string{}, before...), vm.Name()), p.links(t), cmp.Transformer("sort", func(s []string) []string {
			s = append([]string(nil), s...)
			sort.Strings(s)
			return s
		})); diff != "" {
			t.Errorf("links (-want +got):\n%s", diff)
		}
		if got := p.ruleset(t); got != ruleset {
			t.Errorf("ruleset before:\n%s\nafter:\n%s", ruleset, got)
		}
	})
}

// TestPolicyCNI: the CNI plugin in netns mode, run as a runtime runs it,
// with "macSpoofCheck" and the guest MAC in runtimeConfig.mac. The test is
// the QEMU in the sandbox: it opens the TAP CNI_IFNAME there and injects.
// DEL leaves nothing of the port in the ruleset.
func TestPolicyCNI(t *testing.T) {
	t.Parallel()
	p := newPolicyLAN(t, testbed.LANOptions{DHCP: true}, "")
	sandbox := testbed.NewNetNS(t)
	conf := []byte(fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "lan", "type": "tapbridge", "bridge": "br0", "uplink": "eth0",
		"macSpoofCheck": true, "runtimeConfig": {"mac": %q}}`, polMAC1))
	env := func(cmd string) []string {
		return []string{"CNI_COMMAND=" + cmd, "CNI_CONTAINERID=policy-e2e", "CNI_NETNS=" + sandbox.Path,
			"CNI_IFNAME=tap0", "CNI_PATH=" + binDir + ":" + toolsDir}
	}
	out, err := p.run(env("ADD"), conf, "tapbridge")
	if err != nil {
		t.Fatalf("CNI ADD: %v\n%s", err, out)
	}
	var res struct {
		Interfaces []struct{ Name, Mac, Sandbox string }
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Interfaces) == 0 || res.Interfaces[0].Sandbox != "" {
		t.Fatalf("CNI ADD result %s: %v", out, err)
	}
	hostPort := res.Interfaces[0].Name
	t.Cleanup(func() { _, _ = p.run(env("DEL"), conf, "tapbridge") })
	p.assertPolicy(t, hostPort)
	p.tapAdd(t, "tap1") // another VM, on the host
	vm := frames.OpenTAP(t, sandbox.Path, "tap0")
	other := p.openTAP(t, "tap1")

	const xid = 0x7b0a0003
	ll := netip.MustParseAddr("fe80::5054:ff:fe00:51")
	probes := []polProbe{
		{frames.UDP4Probe("own MAC", polMAC1, polIP1, polBcast, 1000, 2000), true},
		{frames.UDP4Probe("spoofed source MAC", polOther, polIP1, polBcast, 1000, 2000), false},
		{frames.ARPProbe("ARP from another MAC", polOther, polOther, polIP1, polRouter), false},
		{frames.DHCPDiscoverProbe("DHCP discover from 0.0.0.0", polMAC1, xid), true},
		{frames.DHCPOfferProbe("rogue DHCP offer", polMAC1, polIP1, polOtherIP, polOther, xid+1), false},
		{frames.RAProbe("router advertisement", polMAC1, ll), false},
		// The MAC is known (macSpoofCheck): a discover names it.
		{frames.DHCPDiscoverProbeFor("DHCP discover for another chaddr", polMAC1, polOther, xid+4), false},
	}
	probes = append(probes, polAttackProbes(polMAC1, polIP1, ll, xid)...)
	p.deliverFromVM(t, vm, other, probes, xid)

	vm.Close()
	if out, err := p.run(env("DEL"), conf, "tapbridge"); err != nil {
		t.Fatalf("CNI DEL: %v\n%s", err, out)
	}
	p.assertNoPolicy(t, hostPort)
	p.assertPolicy(t, "tap1")
	if polContains(p.links(t), hostPort+" master br0") {
		t.Errorf("host port %s still on br0 after DEL", hostPort)
	}
	if out := sandbox.MustExec(t, "ip", "-o", "link", "show"); strings.Contains(out, "tap0") {
		t.Errorf("the sandbox still has tap0 after DEL:\n%s", out)
	}
}

// deliverFromVM sends probes from vm and checks which reach the router and
// the other VM, and that the router's DHCP offer for the VM's discover
// (transaction xid) comes back to it.
func (p *policyLAN) deliverFromVM(t *testing.T, vm *frames.TAP, other frames.Port, probes []polProbe, xid uint32) {
	t.Helper()
	marker := frames.UDP4Probe("marker", polMAC1, polIP1, polBcast, 1, 2)
	polDeliver(t, vm, marker, probes, []string{"the router", "another VM"}, p.router, other)
	if r, ok := polWaitOffer(t, vm, xid); !ok {
		t.Errorf("no DHCP offer from the router came back to the VM's discover")
	} else if r.Type != frames.DHCPOffer || r.Server != polRouter {
		t.Errorf("the VM got %+v, want an offer from %s", r, polRouter)
	}
	if t.Failed() {
		t.Logf("ruleset:\n%s", p.ruleset(t))
	}
}
