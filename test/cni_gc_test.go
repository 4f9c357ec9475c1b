package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"

	"github.com/tapbridge/tapbridge/test/testbed"
)

// leaseFiles lists host-local's leases (one file per address) under dir.
func leaseFiles(t testing.TB, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*", "198.*"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		data, _ := os.ReadFile(f)
		out = append(out, filepath.Base(f)+" "+strings.Fields(string(data) + " ?")[0])
	}
	sort.Strings(out)
	return out
}

// TestCNIGC: GC removes the links, records and leases of the attachments
// that are not valid, and nothing else: not the valid ones, not another
// network's, not links that merely look like the plugin's, not a TAP in a
// namespace that replaced a deleted sandbox at the same path. Without valid
// attachments (`cnitool gc`) every attachment of the network goes.
func TestCNIGC(t *testing.T) {
	b := newCNIBed(t, nil)
	leases := filepath.Join(b.runDir, "leases")
	lanPlugin := tbPlugin(map[string]any{"ipam": map[string]any{"type": "host-local", "subnet": "198.51.100.0/24", "dataDir": leases}})
	lan := confList(t, "1.1.0", "lan", lanPlugin)
	other := confList(t, "1.1.0", "other", tbPlugin(map[string]any{"mode": "host"}))
	for name, data := range map[string][]byte{"10-lan.conflist": lan.Bytes, "20-other.conflist": other.Bytes} {
		if err := os.WriteFile(filepath.Join(b.confDir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sb1, sb2, sb3 := testbed.NewNetNS(t), testbed.NewNetNS(t), testbed.NewNetNS(t)
	rts := map[string]*libcni.RuntimeConf{
		"c1/eth0": {ContainerID: "c1", NetNS: sb1.Path, IfName: "eth0"},
		"c2/eth0": {ContainerID: "c2", NetNS: sb2.Path, IfName: "eth0"},
		"c3/eth0": {ContainerID: "c3", NetNS: sb3.Path, IfName: "eth0"},
		"c3/net1": {ContainerID: "c3", NetNS: sb3.Path, IfName: "net1"},
	}
	for _, k := range []string{"c1/eth0", "c2/eth0", "c3/eth0", "c3/net1"} {
		b.mustAdd(t, lan, rts[k])
	}
	c4 := &libcni.RuntimeConf{ContainerID: "c4", NetNS: sb1.Path, IfName: "eth0"}
	b.mustAdd(t, other, c4)
	t.Cleanup(func() { _ = b.del(other, c4) })
	// Links that look like the plugin's but are not: no record names them.
	b.hv.MustExec(t, "ip", "link", "add", "tb0123456789a", "type", "veth", "peer", "name", "foreign-peer")
	b.hv.MustExec(t, "ip", "tuntap", "add", "tbt0123456789", "mode", "tap")
	// c3's sandbox is gone, and another namespace now has its path, with
	// an eth0 of its own.
	// The kernel gives a new namespace the inode number of one already
	// freed, so the new one is made until it has the old one's inode: the
	// record's inode alone cannot tell them apart.
	oldIno, ierr := sb3.Inode()
	if ierr != nil {
		t.Fatal(ierr)
	}
	mustRun(t, "ip", "netns", "del", sb3.Name)
	sb3 = reuseInodeAt(t, sb3.Name, oldIno)
	sb3.MustExec(t, "ip", "tuntap", "add", "eth0", "mode", "tap")

	// A runtime that lost its cache: libcni has nothing to DEL, so only the
	// plugin's GC removes c2 and c3.
	err := b.cniCache(t.TempDir(), func(c *libcni.CNIConfig) error {
		return c.GCNetworkList(t.Context(), lan, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "c1", IfName: "eth0"}}})
	})
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	c1Port, c4TAP := hostPortName("c1", "eth0"), hostTAPName("c4", "eth0")
	wantHV := []string{
		"br0 bridge", "foreign-peer veth", "lo device",
		"tb0123456789a veth", c1Port + " veth master=br0", c4TAP + " tuntap", "tbt0123456789 tuntap",
		frontPort(c4TAP) + " veth master=br0", frontPeer(c4TAP) + " veth",
	}
	sort.Strings(wantHV)
	for _, c := range []struct {
		n    *testbed.NetNS
		want []string
	}{
		{b.hv, wantHV},
		{sb1, []string{"eth0 tuntap", "lo device", peerName("c1", "eth0") + " veth"}},
		{sb2, []string{"lo device"}},
		{sb3, []string{"eth0 tuntap", "lo device"}},
	} {
		if diff := cmp.Diff(c.want, cniLinks(t, c.n)); diff != "" {
			t.Errorf("links in %s after GC (-want +got):\n%s", c.n, diff)
		}
	}
	if diff := cmp.Diff([]string{c1Port, frontPort(c4TAP)}, portPolicies(t, b.hv)); diff != "" {
		t.Errorf("port policies after GC (-want +got):\n%s", diff)
	}
	wantRecords := []string{"record cni/lan/c1:eth0", "record cni/other/c4:eth0"}
	if diff := cmp.Diff(wantRecords, b.records(t)); diff != "" {
		t.Errorf("records after GC (-want +got):\n%s", diff)
	}
	if got := leaseFiles(t, leases); len(got) != 1 || !strings.HasSuffix(got[0], " c1") {
		t.Errorf("leases after GC: %v, want c1's only", got)
	}
	if err := b.check(lan, rts["c1/eth0"]); err != nil {
		t.Errorf("CHECK of the valid attachment after GC: %v", err)
	}

	// cnitool gc passes no valid attachments: the spec says everything of
	// the network goes; still nothing that is not the plugin's.
	if _, err := b.cnitool(nil, "gc", "lan", sb1.Path); err != nil {
		t.Fatal(err)
	}
	wantHV = []string{"br0 bridge", "foreign-peer veth", "lo device", "tb0123456789a veth", c4TAP + " tuntap", "tbt0123456789 tuntap", frontPort(c4TAP) + " veth master=br0", frontPeer(c4TAP) + " veth"}
	sort.Strings(wantHV)
	if diff := cmp.Diff(wantHV, cniLinks(t, b.hv)); diff != "" {
		t.Errorf("links after cnitool gc (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"record cni/other/c4:eth0"}, b.records(t)); diff != "" {
		t.Errorf("records after cnitool gc (-want +got):\n%s", diff)
	}
	if got := leaseFiles(t, leases); len(got) != 0 {
		t.Errorf("leases after cnitool gc: %v", got)
	}
}

// TestCNICrashDuringAdd kills the plugin at each step of ADD, as an OOM
// kill or a power cut would; DEL, or GC, then removes everything the
// crashed ADD made.
func TestCNICrashDuringAdd(t *testing.T) {
	for _, step := range []string{"cni-add:record", "cni-add:port", "cni-add:attached"} {
		for _, mode := range []string{"netns", "host"} {
			for _, cleanup := range []string{"DEL", "GC"} {
				t.Run(fmt.Sprintf("%s/%s/%s", step, mode, cleanup), func(t *testing.T) {
					t.Parallel()
					b := newCNIBed(t, nil)
					sb := testbed.NewNetNS(t)
					b.hv.MustExec(t, "ip", "link", "add", "br0", "type", "bridge")
					b.hv.MustExec(t, "ip", "link", "set", "br0", "up")
					before := append(append(cniLinks(t, b.hv), cniLinks(t, sb)...), b.records(t)...)
					conf := pluginConf(t, "1.1.0", map[string]any{"mode": mode})
					env := map[string]string{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": sb.Path, "CNI_IFNAME": "eth0", "TAPBRIDGE_FAILPOINT": step}
					if out, err := b.plugin(env, conf); err == nil || !strings.Contains(err.Error(), "killed") {
						t.Fatalf("ADD with failpoint %s: %v\n%s", step, err, out)
					}
					if len(b.records(t)) != 1 {
						t.Fatalf("no record after a crash at %s", step)
					}
					env["CNI_COMMAND"], env["TAPBRIDGE_FAILPOINT"] = cleanup, ""
					if cleanup == "GC" {
						env["CNI_CONTAINERID"], env["CNI_NETNS"], env["CNI_IFNAME"] = "", "", ""
					}
					if out, err := b.plugin(env, conf); err != nil {
						t.Fatalf("%s after the crash: %v\n%s", cleanup, err, out)
					}
					after := append(append(cniLinks(t, b.hv), cniLinks(t, sb)...), b.records(t)...)
					if diff := cmp.Diff(before, after); diff != "" {
						t.Errorf("%s left the crashed ADD's state (-before +after):\n%s", cleanup, diff)
					}
				})
			}
		}
	}
}

// TestCNIParallel runs 64 ADDs at once against a bridge that does not exist
// yet, with the hypervisor's eth0 as the uplink: all succeed, there is one
// bridge holding eth0 (and the hypervisor's address, still reachable) and
// the 64 ports. 64 DELs at once then leave nothing behind.
func TestCNIParallel(t *testing.T) {
	const n = 64
	b := newCNIBed(t, nil)
	lan := testbed.NewLAN(t, testbed.LANOptions{})
	b.hv = lan.HV
	list := confList(t, "1.1.0", "lan", tbPlugin(map[string]any{"uplink": "eth0", "owner": 65534}))

	sandboxes := make([]*testbed.NetNS, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { sandboxes[i], errs[i] = testbed.CreateNetNS() })
	}
	wg.Wait()
	for i, sb := range sandboxes {
		if sb != nil {
			t.Cleanup(func() { _ = sb.Delete() })
		}
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
	}
	rts := make([]*libcni.RuntimeConf, n)
	for i := range n {
		rts[i] = &libcni.RuntimeConf{ContainerID: fmt.Sprintf("vm%02d", i), NetNS: sandboxes[i].Path, IfName: "eth0"}
	}
	run := func(verb string, f func(*libcni.RuntimeConf) error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { errs[i] = f(rts[i]) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("%s %s: %v", verb, rts[i].ContainerID, err)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	run("ADD", func(rt *libcni.RuntimeConf) error { _, err := b.add(list, rt); return err })

	var bridges, ports []string
	for _, l := range cniLinks(t, b.hv) {
		f := strings.Fields(l)
		switch {
		case f[1] == "bridge":
			bridges = append(bridges, f[0])
		case len(f) == 3 && f[2] == "master=br0":
			ports = append(ports, f[0])
		}
	}
	if diff := cmp.Diff([]string{"br0"}, bridges); diff != "" {
		t.Errorf("bridges (-want +got):\n%s", diff)
	}
	if len(ports) != n+1 || !contains(ports, "eth0") {
		t.Errorf("br0 has %d ports (eth0 among them: %t), want %d and eth0", len(ports), contains(ports, "eth0"), n+1)
	}
	if out := b.hv.MustExec(t, "ip", "-4", "-o", "addr", "show", "dev", "br0"); !strings.Contains(out, "192.0.2.10/24") {
		t.Errorf("br0 does not hold the hypervisor's address:\n%s", out)
	}
	if err := lan.Router.Ping("192.0.2.10"); err != nil {
		t.Errorf("the hypervisor is unreachable after the ADDs: %v", err)
	}

	run("DEL", func(rt *libcni.RuntimeConf) error { return b.del(list, rt) })
	if diff := cmp.Diff([]string{"br0 bridge", "eth0 veth master=br0", "lo device"}, cniLinks(t, b.hv)); diff != "" {
		t.Errorf("hypervisor links after the DELs (-want +got):\n%s", diff)
	}
	for _, sb := range sandboxes {
		if diff := cmp.Diff([]string{"lo device"}, cniLinks(t, sb)); diff != "" {
			t.Errorf("links in %s after DEL (-want +got):\n%s", sb, diff)
		}
	}
	if r := b.records(t); len(r) != 0 {
		t.Errorf("records left: %v", r)
	}
	if p := portPolicies(t, b.hv); len(p) != 0 {
		t.Errorf("port policies left: %v", p)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
