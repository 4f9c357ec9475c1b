package qemuhook

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/tapbridge/tapbridge/internal/libvirt"
	"github.com/tapbridge/tapbridge/internal/link"
	"github.com/tapbridge/tapbridge/internal/nstest"
	"github.com/tapbridge/tapbridge/internal/testkit"
	"github.com/tapbridge/tapbridge/internal/vmport"
)

// libvirtTAP makes a TAP the way libvirt does for <interface
// type='ethernet'>: named by libvirt, with the guest's MAC behind 0xFE.
func libvirtTAP(t *testing.T, name, mac string) {
	t.Helper()
	qemuTAP(t, name)
	l, err := link.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	hw, _ := net.ParseMAC(mac)
	if err := netlink.LinkSetHardwareAddr(l, hw); err != nil {
		t.Fatal(err)
	}
}

// savedXML points the libvirt lookup at a directory holding what the
// libvirt hook saved at "prepare" (the recorded XML of libvirt 9.0.0,
// whose metadata asks for mac-spoof-check and ips="192.0.2.50"), with
// replace applied.
func savedXML(t *testing.T, replace ...string) {
	t.Helper()
	data, err := os.ReadFile("../libvirt/testdata/prepare.xml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	xml := strings.NewReplacer(replace...).Replace(string(data))
	if err := os.WriteFile(filepath.Join(dir, "vm1.xml"), []byte(xml), 0o600); err != nil {
		t.Fatal(err)
	}
	old := libvirtDirs
	libvirtDirs = func() []libvirt.Dir { return []libvirt.Dir{{Path: dir}} }
	t.Cleanup(func() { libvirtDirs = old })
}

// libvirt runs qemu-ifup with a cleared environment: the guest MAC and the
// domain's tapbridge keys come from its domain XML.
func TestIfupFromLibvirt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		conf    string
		replace []string
		tapMAC  string
		err     string // "" for success
	}{
		{
			name: "MAC and keys from the domain", conf: `{"bridge": "br0"}`,
			replace: []string{`ips="192.0.2.50"`, `ips="192.0.2.50" isolated="yes"`},
			tapMAC:  "fe:54:00:aa:bb:01",
		},
		{
			name: "no domain has the TAP: the policy cannot be enforced", conf: `{"bridge": "br0", "macSpoofCheck": true}`,
			tapMAC: "fe:54:00:aa:bb:77", err: `"macSpoofCheck": needs the guest's MAC`,
		},
		{
			name: "misspelled metadata stops the attach", conf: `{"bridge": "br0"}`,
			replace: []string{`ips="192.0.2.50"`, `ips="192.0.2.50" isolate="yes"`},
			tapMAC:  "fe:54:00:aa:bb:01", err: `libvirt: domain "vm1": <metadata> in https://tapbridge.dev/libvirt/1: <port isolate>: unknown attribute; did you mean "isolated"?`,
		},
		{
			name: "metadata bridge", conf: `{"bridge": "br0"}`,
			replace: []string{`ips="192.0.2.50"`, `ips="192.0.2.50" bridge="br7"`},
			tapMAC:  "fe:54:00:aa:bb:01",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nstest.Run(t, func() {
				e := writeConf(t, tc.conf)
				savedXML(t, tc.replace...)
				libvirtTAP(t, "vnet1", tc.tapMAC)
				before := testkit.Links(t)
				err := Ifup("vnet1", e.get)
				if tc.err != "" {
					if err == nil || !strings.Contains(err.Error(), tc.err) {
						t.Fatalf("Ifup = %v; want an error containing %q", err, tc.err)
					}
					if after := testkit.Links(t); strings.Join(after, "\n") != strings.Join(before, "\n") {
						t.Errorf("links after a failed ifup:\n%s\nwant:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				want := "br0"
				if strings.Contains(strings.Join(tc.replace, " "), "br7") {
					want = "br7"
				}
				if got := vmport.BridgeOf("vnet1"); got != want {
					t.Errorf("vnet1 is on bridge %q; want %q", got, want)
				}
				port, _ := link.Get(vmport.BridgePort("vnet1"))
				pi, err := netlink.LinkGetProtinfo(port)
				if err != nil {
					t.Fatal(err)
				}
				if wantIso := strings.Contains(strings.Join(tc.replace, " "), `isolated="yes"`); pi.Isolated != wantIso {
					t.Errorf("port of vnet1 isolated = %v; want %v (the domain's metadata)", pi.Isolated, wantIso)
				}
				if err := Ifdown("vnet1", e.get); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}
