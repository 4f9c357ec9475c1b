package e2e

import (
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/google/go-cmp/cmp"

	"github.com/tapbridge/tapbridge/test/testbed"
)

// TestGCVanishedSandboxes: a runtime that never sends DEL (`ctr run --cni`)
// leaves attachments whose sandbox is gone. `tapbridge gc` removes them,
// host links, port policy, IPAM lease and record, in both modes, and
// leaves the attachments whose sandbox lives; a namespace that has since
// taken a dead sandbox's path keeps its own links.
func TestGCVanishedSandboxes(t *testing.T) {
	b := newCNIBed(t, nil)
	leases := filepath.Join(b.runDir, "leases")
	lan := confList(t, "1.0.0", "lan", tbPlugin(map[string]any{"ipam": map[string]any{"type": "host-local", "subnet": "198.51.100.0/24", "dataDir": leases}}))
	host := confList(t, "1.0.0", "hostnet", tbPlugin(map[string]any{"mode": "host"}))
	gone, reused, alive := testbed.NewNetNS(t), testbed.NewNetNS(t), testbed.NewNetNS(t)
	rts := []*libcni.RuntimeConf{
		{ContainerID: "gone", NetNS: gone.Path, IfName: "eth0"},
		{ContainerID: "reused", NetNS: reused.Path, IfName: "eth0"},
		{ContainerID: "alive", NetNS: alive.Path, IfName: "eth0"},
	}
	for _, rt := range rts {
		b.mustAdd(t, lan, rt)
	}
	hostGone := &libcni.RuntimeConf{ContainerID: "hgone", NetNS: gone.Path, IfName: "eth0"}
	hostAlive := &libcni.RuntimeConf{ContainerID: "halive", NetNS: alive.Path, IfName: "eth0"}
	b.mustAdd(t, host, hostGone)
	b.mustAdd(t, host, hostAlive)
	t.Cleanup(func() {
		_ = b.del(lan, rts[2])
		_ = b.del(host, hostAlive)
	})
	mustRun(t, "ip", "netns", "del", gone.Name)
	mustRun(t, "ip", "netns", "del", reused.Name)
	mustRun(t, "ip", "netns", "add", reused.Name)
	reused.MustExec(t, "ip", "tuntap", "add", "eth0", "mode", "tap")

	cmd := b.hv.Command(bin("tapbridge"), "gc")
	cmd.Env = testbed.Env("PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TAPBRIDGE_RUN_DIR="+b.runDir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tapbridge gc: %v\n%s", err, out)
	}
	if want := "removed 3 CNI attachments whose sandbox is gone: hostnet/hgone:eth0 lan/gone:eth0 lan/reused:eth0\n"; string(out) != want {
		t.Errorf("tapbridge gc printed %q; want %q", out, want)
	}

	aliveTAP := hostTAPName("halive", "eth0")
	wantHV := []string{"br0 bridge", "lo device", hostPortName("alive", "eth0") + " veth master=br0", aliveTAP + " tuntap", frontPort(aliveTAP) + " veth master=br0", frontPeer(aliveTAP) + " veth"}
	sort.Strings(wantHV)
	if diff := cmp.Diff(wantHV, cniLinks(t, b.hv)); diff != "" {
		t.Errorf("links after gc (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"eth0 tuntap", "lo device"}, cniLinks(t, reused)); diff != "" {
		t.Errorf("links of the namespace that took a dead sandbox's path (-want +got):\n%s", diff)
	}
	wantPolicies := []string{hostPortName("alive", "eth0"), frontPort(aliveTAP)}
	sort.Strings(wantPolicies)
	if diff := cmp.Diff(wantPolicies, portPolicies(t, b.hv)); diff != "" {
		t.Errorf("port policies after gc (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"record cni/hostnet/halive:eth0", "record cni/lan/alive:eth0"}, b.records(t)); diff != "" {
		t.Errorf("records after gc (-want +got):\n%s", diff)
	}
	if got := leaseFiles(t, leases); len(got) != 1 || !strings.HasSuffix(got[0], " alive") {
		t.Errorf("host-local leases after gc: %v; want alive's only", got)
	}

	// Nothing more to do: a second run says so.
	cmd = b.hv.Command(bin("tapbridge"), "gc")
	cmd.Env = testbed.Env("PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TAPBRIDGE_RUN_DIR="+b.runDir)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "nothing changed") {
		t.Errorf("second tapbridge gc: %v: %s", err, out)
	}
}
