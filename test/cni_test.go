package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tapbridge/tapbridge/test/frames"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/cniplugin"
	"github.com/tapbridge/tapbridge/internal/nldump"
	"github.com/tapbridge/tapbridge/internal/tap"
	"github.com/tapbridge/tapbridge/test/testbed"
)

// cniVersions are the CNI specification versions the plugin speaks.
var cniVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// cniBed is where a CNI runtime runs the plugin: a hypervisor namespace
// (the plugin's "host" namespace, which the tests never let be the root
// one) and the runtime's files, all temporary.
type cniBed struct {
	hv       *testbed.NetNS
	runDir   string // TAPBRIDGE_RUN_DIR: the plugin's records and locks
	cacheDir string // libcni's result cache
	confDir  string // NETCONFPATH, for cnitool
	varLib   string // mounted over /var/lib for cnitool, which caches there
	path     []string
}

// newCNIBed returns a bed in hv, or in a new namespace when hv is nil.
func newCNIBed(t testing.TB, hv *testbed.NetNS) *cniBed {
	t.Helper()
	needRoot(t)
	if err := testbed.CheckLAN(); err != nil {
		t.Skip(err)
	}
	if hv == nil {
		hv = testbed.NewNetNS(t)
	}
	return &cniBed{hv: hv, runDir: t.TempDir(), cacheDir: t.TempDir(), confDir: t.TempDir(), varLib: t.TempDir(), path: []string{binDir, toolsDir}}
}

// envExec is libcni's default exec, with TAPBRIDGE_RUN_DIR added to the
// plugin's environment (a runtime passes its own environment on; this lets
// parallel tests each have their own).
type envExec struct {
	*invoke.DefaultExec
	env []string
}

func (e *envExec) ExecPlugin(ctx context.Context, path string, stdin []byte, environ []string) ([]byte, error) {
	return e.DefaultExec.ExecPlugin(ctx, path, stdin, append(environ, e.env...))
}

// cni runs f with a libcni client on a thread inside the hypervisor
// namespace: the plugins libcni execs run there, as under containerd.
func (b *cniBed) cni(f func(c *libcni.CNIConfig) error) error {
	return b.cniCache(b.cacheDir, f)
}

// cniCache is cni with another result cache (a runtime that lost its own).
func (b *cniBed) cniCache(cacheDir string, f func(c *libcni.CNIConfig) error) error {
	exec := &envExec{
		DefaultExec: &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}},
		env:         []string{"TAPBRIDGE_RUN_DIR=" + b.runDir},
	}
	c := libcni.NewCNIConfigWithCacheDir(b.path, cacheDir, exec)
	return b.hv.Do(func() error { return f(c) })
}

func (b *cniBed) add(list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (res types.Result, err error) {
	err = b.cni(func(c *libcni.CNIConfig) error {
		res, err = c.AddNetworkList(context.Background(), list, rt)
		return err
	})
	return res, err
}

func (b *cniBed) check(list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	return b.cni(func(c *libcni.CNIConfig) error { return c.CheckNetworkList(context.Background(), list, rt) })
}

func (b *cniBed) del(list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	return b.cni(func(c *libcni.CNIConfig) error { return c.DelNetworkList(context.Background(), list, rt) })
}

func (b *cniBed) status(list *libcni.NetworkConfigList) error {
	return b.cni(func(c *libcni.CNIConfig) error { return c.GetStatusNetworkList(context.Background(), list) })
}

// mustAdd adds and returns the result as a 1.1.0 result.
func (b *cniBed) mustAdd(t testing.TB, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) *types100.Result {
	t.Helper()
	res, err := b.add(list, rt)
	if err != nil {
		t.Fatalf("ADD %s/%s: %v", rt.ContainerID, rt.IfName, err)
	}
	r, err := types100.GetResult(res)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// plugin runs bin/tapbridge in the hypervisor namespace as a runtime would:
// CNI_* in env (a value of "" leaves the variable out), the configuration
// on stdin. It returns stdout.
func (b *cniBed) plugin(env map[string]string, stdin []byte) (string, error) {
	cmd := b.hv.Command(bin("tapbridge"))
	cmd.Env = testbed.Env("PATH="+os.Getenv("PATH"), "TAPBRIDGE_RUN_DIR="+b.runDir, "CNI_PATH="+strings.Join(b.path, ":"))
	for _, k := range slicesSorted(env) {
		if env[k] != "" {
			cmd.Env = append(cmd.Env, k+"="+env[k])
		}
	}
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%w (stderr: %s)", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), err
}

func slicesSorted(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// cnitool runs cnitool in the hypervisor namespace with the bed's
// NETCONFPATH and CNI_PATH; extra is more environment (CNI_ARGS, CAP_ARGS,
// CNI_IFNAME). cnitool caches results under /var/lib/cni: a temporary
// directory is mounted over /var/lib, in the mount namespace `ip netns
// exec` makes, so nothing is written to the machine's.
func (b *cniBed) cnitool(extra []string, args ...string) (string, error) {
	script := `mount --bind "$TB_VARLIB" /var/lib && exec "$@"`
	cmd := b.hv.Command("sh", append([]string{"-c", script, "sh", tool("cnitool")}, args...)...)
	cmd.Env = append(testbed.Env(
		"PATH="+os.Getenv("PATH"), "TB_VARLIB="+b.varLib, "NETCONFPATH="+b.confDir,
		"CNI_PATH="+strings.Join(b.path, ":"), "TAPBRIDGE_RUN_DIR="+b.runDir,
	), extra...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("cnitool %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// tbPlugin is a tapbridge plugin configuration: bridge br0 plus extra.
func tbPlugin(extra map[string]any) map[string]any {
	c := map[string]any{"type": "tapbridge", "bridge": "br0"}
	maps.Copy(c, extra)
	return c
}

// confListJSON is a network configuration list.
func confListJSON(t testing.TB, version, name string, plugins ...map[string]any) []byte {
	t.Helper()
	data, err := json.Marshal(map[string]any{"cniVersion": version, "name": name, "plugins": plugins})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func confList(t testing.TB, version, name string, plugins ...map[string]any) *libcni.NetworkConfigList {
	t.Helper()
	l, err := libcni.ConfListFromBytes(confListJSON(t, version, name, plugins...))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// staticIPAM is the upstream static IPAM plugin with addresses.
func staticIPAM(addrs ...string) map[string]any {
	var a []map[string]string
	for _, s := range addrs {
		a = append(a, map[string]string{"address": s})
	}
	return map[string]any{"type": "static", "addresses": a}
}

// hostPortName, hostTAPName and peerName are the documented names of an
// attachment's links, computed here independently of the plugin.
func hostPortName(cid, ifn string) string { return "tb" + nameDigest(cid, ifn)[:11] }
func hostTAPName(cid, ifn string) string  { return "tbt" + nameDigest(cid, ifn)[:10] }
func peerName(cid, ifn string) string     { return "tbp" + nameDigest(cid, ifn)[:10] }

// frontPort and frontPeer are the documented names of the front of a TAP
// (the veth pair that stands for it on the bridge).
func frontPort(tap string) string { return "tbv" + frontDigest(tap) }
func frontPeer(tap string) string { return "tbw" + frontDigest(tap) }

func frontDigest(tap string) string {
	sum := sha256.Sum256([]byte("tapbridge-front\x00" + tap))
	return hex.EncodeToString(sum[:5])
}

func nameDigest(cid, ifn string) string {
	sum := sha256.Sum256([]byte(cid + "/" + ifn))
	return hex.EncodeToString(sum[:])
}

// cniLinks lists the links of n as "name kind [master=M]", sorted.
func cniLinks(t testing.TB, n *testbed.NetNS) []string {
	t.Helper()
	var out []string
	err := n.Do(func() error {
		links, err := nldump.LinkList()
		if err != nil {
			return err
		}
		names := map[int]string{}
		for _, l := range links {
			names[l.Attrs().Index] = l.Attrs().Name
		}
		for _, l := range links {
			s := l.Attrs().Name + " " + l.Type()
			if m := l.Attrs().MasterIndex; m != 0 {
				s += " master=" + names[m]
			}
			out = append(out, s)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// state is everything a failed ADD must leave exactly as it was: the links,
// addresses, routes and port policies (nftables) of the hypervisor and the
// sandbox, and the plugin's records.
func (b *cniBed) state(t testing.TB, sandbox *testbed.NetNS) []string {
	t.Helper()
	var out []string
	for _, n := range []*testbed.NetNS{b.hv, sandbox} {
		if n == nil {
			continue
		}
		for _, args := range [][]string{{"ip", "-o", "-d", "link"}, {"ip", "-o", "addr"}, {"ip", "route", "show", "table", "all"}, {"ip", "-6", "route", "show", "table", "all"}, {"nft", "list", "ruleset"}} {
			dump := n.MustExec(t, args[0], args[1:]...)
			for _, l := range strings.Split(dump, "\n") {
				l = strings.TrimSpace(volatile.ReplaceAllString(l, ""))
				// The policy's table, sets and chains are made once, like
				// the lock directory, and stay; a port's policy (its set
				// elements, which name it quoted) must not.
				if args[0] == "nft" && !strings.Contains(l, `"`) {
					continue
				}
				// Drop counters count whatever a port's VM sends meanwhile.
				l = dropCounter.ReplaceAllString(l, "counter")
				if l != "" {
					out = append(out, n.Name+": "+l)
				}
			}
		}
	}
	return append(out, b.records(t)...)
}

// portPolicies lists the ports that have a policy in n: the elements of
// the policies set, the only ones with a comment (their record).
func portPolicies(t testing.TB, n *testbed.NetNS) []string {
	t.Helper()
	var out []string
	for _, m := range policyRecord.FindAllStringSubmatch(n.MustExec(t, "nft", "list", "ruleset", "bridge"), -1) {
		out = append(out, m[1])
	}
	sort.Strings(out)
	return out
}

var (
	policyRecord = regexp.MustCompile(`"([^"]+)" comment "guards=`)
	dropCounter  = regexp.MustCompile(`counter packets \d+ bytes \d+`)
)

// records lists the plugin's attachment records.
func (b *cniBed) records(t testing.TB) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(b.runDir, "cni"), func(p string, d os.DirEntry, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(b.runDir, p)
			out = append(out, "record "+rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// cniError decodes the CNI error a plugin printed.
func cniError(t testing.TB, stdout string) *types.Error {
	t.Helper()
	e := &types.Error{}
	if err := json.Unmarshal([]byte(stdout), e); err != nil {
		t.Fatalf("stdout is not a CNI error: %v\n%s", err, stdout)
	}
	return e
}

// linkMAC returns the MAC of name in n.
func linkMAC(t testing.TB, n *testbed.NetNS, name string) string {
	t.Helper()
	var m string
	if err := n.Do(func() error {
		l, err := netlink.LinkByName(name)
		if err == nil {
			m = l.Attrs().HardwareAddr.String()
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return m
}

// tapInfo inspects the TAP name in n.
func tapInfo(t testing.TB, n *testbed.NetNS, name string) tap.Info {
	t.Helper()
	var info tap.Info
	if err := n.Do(func() (err error) { info, err = tap.Inspect(name); return err }); err != nil {
		t.Fatal(err)
	}
	return info
}

// guestNIC plays the guest's side of a TAP, as QEMU does: it opens the TAP
// by name in n (TUNSETIFF on /dev/net/tun) and reads and writes frames.
type guestNIC struct {
	f   *os.File
	mac net.HardwareAddr
	ip  netip.Addr
}

func openGuestNIC(t testing.TB, n *testbed.NetNS, name, mac string, ip netip.Addr) *guestNIC {
	t.Helper()
	f, err := frames.AttachTAP(n.Path, name, true) // non-blocking: reads take deadlines
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	return &guestNIC{f: f, mac: hw, ip: ip}
}

// arp asks, as the guest, who has target, and returns the MAC that
// answered: the frames go through the TAP, the redirects and the bridge
// and back, as a guest's would.
func (g *guestNIC) arp(target netip.Addr, timeout time.Duration) (net.HardwareAddr, error) {
	req := frames.Ether(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, g.mac, unix.ETH_P_ARP, frames.ARP(1, g.mac, g.ip, nil, target))
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 65536)
	for time.Now().Before(deadline) {
		if _, err := g.f.Write(req); err != nil {
			return nil, fmt.Errorf("writing an ARP request to the TAP: %w", err)
		}
		_ = g.f.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			n, err := g.f.Read(buf)
			if err != nil {
				break // timeout: ask again
			}
			if a, ok := frames.ParseARP(buf[:n]); ok && a.Op == 2 && bytes.Equal(buf[0:6], g.mac) && a.SPA == target {
				return a.SHA, nil
			}
		}
	}
	return nil, fmt.Errorf("no ARP reply for %s through the TAP within %v", target, timeout)
}

// TestCNILibcni drives the plugin through libcni, as containerd, CRI-O and
// Multus do, for every supported CNI version and both modes: ADD reports
// the host port, the TAP and the guest NIC; the guest's frames cross the
// TAP, the redirects and the bridge; CHECK, STATUS pass; DEL leaves nothing
// and may be repeated.
func TestCNILibcni(t *testing.T) {
	macSources := []string{"capability", "CNI_ARGS", "derived"}
	for i, v := range cniVersions {
		for _, mode := range []string{"netns", "host"} {
			macSource := macSources[i%len(macSources)]
			t.Run(v+"/"+mode, func(t *testing.T) {
				t.Parallel()
				b := newCNIBed(t, nil)
				sb := testbed.NewNetNS(t)
				list := confList(t, v, "lan", tbPlugin(map[string]any{
					"mode": mode, "owner": 65534, "group": 65534,
					"capabilities": map[string]bool{"mac": true},
					"ipam":         staticIPAM("198.51.100.50/24"),
				}))
				cid := "vm-" + strings.ReplaceAll(v, ".", "") + "-" + mode
				rt := &libcni.RuntimeConf{ContainerID: cid, NetNS: sb.Path, IfName: "eth0"}
				guestMAC := "52:54:00:00:00:50"
				switch macSource {
				case "capability":
					rt.CapabilityArgs = map[string]any{"mac": guestMAC}
				case "CNI_ARGS":
					rt.Args = [][2]string{{"IgnoreUnknown", "1"}, {"MAC", guestMAC}}
				default:
					guestMAC = cniplugin.DerivedMAC(cid, "eth0").String()
				}

				res, err := b.add(list, rt)
				if err != nil {
					t.Fatalf("ADD: %v", err)
				}
				if res.Version() != v {
					t.Errorf("result version %s, want %s", res.Version(), v)
				}
				got, err := types100.GetResult(res)
				if err != nil {
					t.Fatal(err)
				}
				mtu := 1500
				if v < "1.0.0" {
					mtu = 0 // results before 1.0.0 carry no MTU
				}
				var want []*types100.Interface
				var tapNS *testbed.NetNS
				var tapName string
				if mode == "netns" {
					port := hostPortName(cid, "eth0")
					want = []*types100.Interface{
						{Name: port, Mac: linkMAC(t, b.hv, port), Mtu: mtu},
						{Name: "eth0", Mac: linkMAC(t, sb, "eth0"), Mtu: mtu, Sandbox: sb.Path},
						{Name: "eth0", Mac: guestMAC, Mtu: mtu, Sandbox: sb.Path},
					}
					tapNS, tapName = sb, "eth0"
				} else {
					tapName = hostTAPName(cid, "eth0")
					port := frontPort(tapName)
					want = []*types100.Interface{
						{Name: port, Mac: linkMAC(t, b.hv, port), Mtu: mtu},
						{Name: tapName, Mac: linkMAC(t, b.hv, tapName), Mtu: mtu},
						{Name: "eth0", Mac: guestMAC, Mtu: mtu},
					}
					tapNS = b.hv
				}
				if diff := cmp.Diff(want, got.Interfaces); diff != "" {
					t.Errorf("result interfaces (-want +got):\n%s", diff)
				}
				if !strings.HasPrefix(want[0].Mac, "fe:") {
					t.Errorf("host port MAC %s does not start with fe: (the bridge MAC could change)", want[0].Mac)
				}
				wantIPs := []string{fmt.Sprintf("198.51.100.50/24 on interface %d", len(want)-1)}
				var gotIPs []string
				for _, ip := range got.IPs {
					gotIPs = append(gotIPs, fmt.Sprintf("%s on interface %d", ip.Address.String(), *ip.Interface))
				}
				if diff := cmp.Diff(wantIPs, gotIPs); diff != "" {
					t.Errorf("result IPs (-want +got):\n%s", diff)
				}

				wantLinks := map[*testbed.NetNS][]string{
					b.hv: {"br0 bridge", "lo device", want[0].Name + " veth master=br0"},
					sb:   {"eth0 tuntap", "lo device", peerName(cid, "eth0") + " veth"},
				}
				if mode == "host" {
					wantLinks[b.hv] = append(wantLinks[b.hv], frontPeer(want[1].Name)+" veth", want[1].Name+" tuntap")
					sort.Strings(wantLinks[b.hv])
					wantLinks[sb] = []string{"lo device"}
				}
				for n, w := range wantLinks {
					if diff := cmp.Diff(w, cniLinks(t, n)); diff != "" {
						t.Errorf("links in %s (-want +got):\n%s", n, diff)
					}
				}
				if diff := cmp.Diff([]string{want[0].Name}, portPolicies(t, b.hv)); diff != "" {
					t.Errorf("port policies (-want +got):\n%s", diff)
				}
				if info := tapInfo(t, tapNS, tapName); info.Owner != 65534 || info.Group != 65534 {
					t.Errorf("TAP %q: owner %d group %d, want 65534 65534", tapName, info.Owner, info.Group)
				}

				// The guest's frames reach the bridge and its answers come back.
				b.hv.MustExec(t, "ip", "addr", "add", "198.51.100.1/24", "dev", "br0")
				g := openGuestNIC(t, tapNS, tapName, guestMAC, netip.MustParseAddr("198.51.100.50"))
				hw, err := g.arp(netip.MustParseAddr("198.51.100.1"), 3*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if brMAC := linkMAC(t, b.hv, "br0"); hw.String() != brMAC {
					t.Errorf("ARP reply from %s, want br0's %s", hw, brMAC)
				}
				g.f.Close()

				if v >= "0.4.0" {
					if err := b.check(list, rt); err != nil {
						t.Errorf("CHECK: %v", err)
					}
				}
				if err := b.status(list); err != nil {
					t.Errorf("STATUS: %v", err)
				}
				for i := range 2 {
					if err := b.del(list, rt); err != nil {
						t.Fatalf("DEL #%d: %v", i+1, err)
					}
					wantLinks = map[*testbed.NetNS][]string{b.hv: {"br0 bridge", "lo device"}, sb: {"lo device"}}
					for n, w := range wantLinks {
						if diff := cmp.Diff(w, cniLinks(t, n)); diff != "" {
							t.Errorf("links in %s after DEL #%d (-want +got):\n%s", n, i+1, diff)
						}
					}
					if r := b.records(t); len(r) != 0 {
						t.Errorf("records left after DEL: %v", r)
					}
					if p := portPolicies(t, b.hv); len(p) != 0 {
						t.Errorf("port policies left after DEL: %v", p)
					}
				}
			})
		}
	}
}
