package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/go-cmp/cmp"

	"github.com/tapbridge/tapbridge/test/testbed"
)

// exampleConfs copies the example conflists of conf/cni into dir, as an
// administrator installs them into /etc/cni/net.d.
func exampleConfs(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob("../conf/cni/*.conflist")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example conflists in conf/cni: %v", err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		var c struct{ Name string }
		if err := json.Unmarshal(data, &c); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[c.Name] = data
	}
	return out
}

// TestCNItool runs the commands of docs/cni.md: cnitool, built from the
// module proxy, with the example conflists of conf/cni, on a hypervisor
// whose eth0 is its LAN uplink. The first ADD puts eth0 into br0; the
// hypervisor stays reachable.
func TestCNItool(t *testing.T) {
	lan := testbed.NewLAN(t, testbed.LANOptions{})
	b := newCNIBed(t, lan.HV)
	confs := exampleConfs(t, b.confDir)
	sb := testbed.NewNetNS(t)
	const guestMAC = "52:54:00:12:34:56"
	tests := []struct {
		network string
		env     []string
		tap     string // the TAP QEMU opens, and where
		hostTAP bool
		ips     []string
	}{
		{network: "tapbridge", env: []string{`CAP_ARGS={"mac":"` + guestMAC + `"}`}, tap: "eth0"},
		{network: "tapbridge-host", env: []string{"CNI_ARGS=IgnoreUnknown=1;MAC=" + guestMAC}, hostTAP: true},
		{network: "tapbridge-static", env: []string{`CAP_ARGS={"mac":"` + guestMAC + `","ips":["192.0.2.50/24"]}`}, tap: "eth0", ips: []string{"192.0.2.50/24"}},
	}
	if len(confs) != len(tests) {
		t.Errorf("conf/cni has %d conflists, the test knows %d", len(confs), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.network, func(t *testing.T) {
			if confs[tt.network] == nil {
				t.Fatalf("no example conflist for network %q", tt.network)
			}
			out, err := b.cnitool(tt.env, "add", tt.network, sb.Path)
			if err != nil {
				t.Fatal(err)
			}
			r := &types100.Result{}
			if err := json.Unmarshal([]byte(out), r); err != nil {
				t.Fatalf("cnitool add printed no result: %v\n%s", err, out)
			}
			guest := r.Interfaces[len(r.Interfaces)-1]
			if guest.Name != "eth0" || guest.Mac != guestMAC {
				t.Errorf("guest NIC %+v, want eth0 with MAC %s", *guest, guestMAC)
			}
			var ips []string
			for _, ip := range r.IPs {
				ips = append(ips, ip.Address.String())
			}
			if diff := cmp.Diff(tt.ips, ips); diff != "" {
				t.Errorf("IPs (-want +got):\n%s", diff)
			}
			if tt.hostTAP {
				port, tap := r.Interfaces[0].Name, r.Interfaces[1].Name
				if !strings.HasPrefix(port, "tbv") || !strings.HasPrefix(tap, "tbt") || r.Interfaces[1].Sandbox != "" {
					t.Errorf("host mode: interfaces %+v, %+v; want the TAP's front tbv... and the host TAP tbt...", *r.Interfaces[0], *r.Interfaces[1])
				}
				tapInfo(t, b.hv, tap)
			} else {
				tapInfo(t, sb, tt.tap)
			}
			if _, err := b.cnitool(tt.env, "check", tt.network, sb.Path); err != nil {
				t.Error(err)
			}
			if _, err := b.cnitool(nil, "status", tt.network, sb.Path); err != nil {
				t.Error(err)
			}
			if out := b.hv.MustExec(t, "ip", "-o", "link", "show", "eth0"); !strings.Contains(out, "master br0") {
				t.Errorf("eth0 is not a port of br0:\n%s", out)
			}
			if err := lan.Router.Ping("192.0.2.10"); err != nil {
				t.Errorf("the hypervisor is unreachable: %v", err)
			}
			if _, err := b.cnitool(tt.env, "del", tt.network, sb.Path); err != nil {
				t.Error(err)
			}
			if _, err := b.cnitool(tt.env, "del", tt.network, sb.Path); err != nil {
				t.Errorf("second DEL: %v", err)
			}
			if diff := cmp.Diff([]string{"br0 bridge", "eth0 veth master=br0", "lo device"}, cniLinks(t, b.hv)); diff != "" {
				t.Errorf("hypervisor links after DEL (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"lo device"}, cniLinks(t, sb)); diff != "" {
				t.Errorf("sandbox links after DEL (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("gc", func(t *testing.T) {
		// libcni runs GC from CNI 1.1.0 on; for the 1.0.0 examples it
		// sends DEL for each cached attachment instead.
		if _, err := b.cnitool(nil, "add", "tapbridge", sb.Path); err != nil {
			t.Fatal(err)
		}
		if _, err := b.cnitool(nil, "gc", "tapbridge", sb.Path); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"lo device"}, cniLinks(t, sb)); diff != "" {
			t.Errorf("sandbox links after gc (-want +got):\n%s", diff)
		}
		if r := b.records(t); len(r) != 0 {
			t.Errorf("records after gc: %v", r)
		}
	})
	// A runtime that drops the sandbox without a DEL (ctr run --cni)
	// leaves the attachment to tapbridge gc.
	t.Run("tapbridge gc", func(t *testing.T) {
		gone := testbed.NewNetNS(t)
		if _, err := b.cnitool(nil, "add", "tapbridge", gone.Path); err != nil {
			t.Fatal(err)
		}
		mustRun(t, "ip", "netns", "del", gone.Name)
		cmd := b.hv.Command(bin("tapbridge"), "gc")
		cmd.Env = testbed.Env("PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TAPBRIDGE_RUN_DIR="+b.runDir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("tapbridge gc: %v\n%s", err, out)
		}
		if diff := cmp.Diff([]string{"br0 bridge", "eth0 veth master=br0", "lo device"}, cniLinks(t, b.hv)); diff != "" {
			t.Errorf("hypervisor links after tapbridge gc (-want +got):\n%s", diff)
		}
		if r := b.records(t); len(r) != 0 {
			t.Errorf("records after tapbridge gc: %v", r)
		}
	})
}

// nadConfig returns spec.config of conf/multus-nad.yaml (a literal block).
func nadConfig(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile("../conf/multus-nad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	in := false
	for _, l := range strings.Split(string(data), "\n") {
		switch {
		case strings.TrimSpace(l) == "config: |":
			in = true
		case in && (strings.HasPrefix(l, "    ") || strings.TrimSpace(l) == ""):
			out = append(out, l)
		case in:
			in = false
		}
	}
	if len(out) == 0 {
		t.Fatal("conf/multus-nad.yaml has no spec.config")
	}
	return []byte(strings.Join(out, "\n"))
}

// TestCNIMultusNAD runs the NetworkAttachmentDefinition of
// conf/multus-nad.yaml the way Multus does: libcni, the pod's CNI_ARGS,
// the annotation's MAC as the "mac" capability, interface net1. Multus
// reports as the attachment's MAC that of the last interface with a
// sandbox: the guest's.
func TestCNIMultusNAD(t *testing.T) {
	lan := testbed.NewLAN(t, testbed.LANOptions{})
	b := newCNIBed(t, lan.HV)
	sb := testbed.NewNetNS(t)
	list, err := libcni.ConfListFromBytes(nadConfig(t))
	if err != nil {
		t.Fatalf("spec.config: %v", err)
	}
	const guestMAC = "52:54:00:12:34:56"
	rt := &libcni.RuntimeConf{
		ContainerID: "3f2a0c1d9e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f",
		NetNS:       sb.Path,
		IfName:      "net1",
		Args: [][2]string{
			{"IgnoreUnknown", "true"}, {"K8S_POD_NAMESPACE", "default"}, {"K8S_POD_NAME", "vm1"},
			{"K8S_POD_INFRA_CONTAINER_ID", "3f2a0c1d9e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f"},
			{"K8S_POD_UID", "0d4c1e7a-3b4f-4d6e-9a1b-2c3d4e5f6a7b"},
		},
		CapabilityArgs: map[string]any{"mac": guestMAC},
	}
	r := b.mustAdd(t, list, rt)
	var statusMAC string
	for _, i := range r.Interfaces {
		if i.Sandbox != "" {
			statusMAC = i.Mac
		}
	}
	if statusMAC != guestMAC {
		t.Errorf("network-status MAC %q, want the guest's %q", statusMAC, guestMAC)
	}
	if info := tapInfo(t, sb, "net1"); info.Owner != 65534 || info.Group != 65534 {
		t.Errorf("TAP net1: owner %d group %d, want nobody:nogroup", info.Owner, info.Group)
	}
	if err := b.check(list, rt); err != nil {
		t.Error(err)
	}
	if err := b.del(list, rt); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"lo device"}, cniLinks(t, sb)); diff != "" {
		t.Errorf("sandbox links after DEL (-want +got):\n%s", diff)
	}
}

// tuningPlugin returns the upstream tuning meta plugin: from CNI_TOOLS_DIR
// if there, else built from the module proxy.
func tuningPlugin(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(tool("tuning")); err == nil {
		return toolsDir
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "install", "github.com/containernetworking/plugins/plugins/meta/tuning@v1.10.0")
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("building the tuning plugin: %v\n%s", err, out)
	}
	return dir
}

// TestCNIChain chains tapbridge with other plugins: the upstream tuning
// plugin after it (tuning reads tapbridge's result as prevResult, changes
// the TAP and passes the result on; CHECK and DEL give tapbridge the
// chain's prevResult), and a plugin before it whose result tapbridge
// extends.
func TestCNIChain(t *testing.T) {
	t.Run("tapbridge then tuning", func(t *testing.T) {
		b := newCNIBed(t, nil)
		b.path = append(b.path, tuningPlugin(t))
		sb := testbed.NewNetNS(t)
		list := confList(t, "1.1.0", "lan",
			tbPlugin(map[string]any{"ipam": staticIPAM("198.51.100.50/24")}),
			map[string]any{"type": "tuning", "promisc": true, "txQLen": 2000, "dataDir": t.TempDir()},
		)
		rt := &libcni.RuntimeConf{ContainerID: "c1", NetNS: sb.Path, IfName: "eth0"}
		r := b.mustAdd(t, list, rt)
		if len(r.Interfaces) != 3 || len(r.IPs) != 1 || *r.IPs[0].Interface != 2 {
			t.Errorf("the chain's result lost tapbridge's interfaces or IPs: %+v", r)
		}
		out := sb.MustExec(t, "ip", "-d", "link", "show", "eth0")
		if !strings.Contains(out, "PROMISC") || !strings.Contains(out, "qlen 2000") || !strings.Contains(out, "tun type tap") {
			t.Errorf("tuning did not apply to the TAP:\n%s", out)
		}
		if err := b.check(list, rt); err != nil {
			t.Errorf("CHECK of the chain: %v", err)
		}
		if err := b.del(list, rt); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"lo device"}, cniLinks(t, sb)); diff != "" {
			t.Errorf("sandbox links after DEL (-want +got):\n%s", diff)
		}
	})
	t.Run("static then tapbridge", func(t *testing.T) {
		b := newCNIBed(t, nil)
		sb := testbed.NewNetNS(t)
		// The static plugin, run as a plugin of the chain, only reports
		// addresses: tapbridge must keep them and add its interfaces.
		list := confList(t, "1.1.0", "lan",
			map[string]any{"type": "static", "ipam": staticIPAM("198.51.100.7/24")},
			tbPlugin(nil),
		)
		list.DisableCheck = true // static's CHECK looks for the address on an interface
		rt := &libcni.RuntimeConf{ContainerID: "c1", NetNS: sb.Path, IfName: "eth0"}
		r := b.mustAdd(t, list, rt)
		var names []string
		for _, i := range r.Interfaces {
			names = append(names, i.Name)
		}
		if diff := cmp.Diff([]string{hostPortName("c1", "eth0"), "eth0", "eth0"}, names); diff != "" {
			t.Errorf("interfaces (-want +got):\n%s", diff)
		}
		if len(r.IPs) != 1 || r.IPs[0].Address.String() != "198.51.100.7/24" {
			t.Errorf("the previous plugin's IPs were not kept: %+v", r.IPs)
		}
		if err := b.del(list, rt); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"lo device"}, cniLinks(t, sb)); diff != "" {
			t.Errorf("sandbox links after DEL (-want +got):\n%s", diff)
		}
	})
}
