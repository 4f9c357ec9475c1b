package e2e

import (
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/go-cmp/cmp"

	"github.com/tapbridge/tapbridge/test/testbed"
)

// TestCNIQEMU boots real guests attached by the plugin, with the example
// conflists, on a hypervisor whose eth0 is its LAN uplink (enslaved by the
// first ADD): in netns mode QEMU runs inside the CNI namespace, in host
// mode in the hypervisor's; both as nobody. Each guest gets a lease from
// the router's dnsmasq for the MAC the runtime asked for, and serves HTTP
// on its own address to the router. Both guests run at once.
func TestCNIQEMU(t *testing.T) {
	if err := testbed.CheckGuest(); err != nil {
		t.Skip(err)
	}
	lan := testbed.NewLAN(t, testbed.LANOptions{DHCP: true})
	b := newCNIBed(t, lan.HV)
	exampleConfs(t, b.confDir)
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	tests := []struct {
		mode, network, mac string
		env                []string
	}{
		{mode: "netns", network: "tapbridge", mac: "52:54:00:c0:00:01", env: []string{`CAP_ARGS={"mac":"52:54:00:c0:00:01"}`}},
		{mode: "host", network: "tapbridge-host", mac: "52:54:00:c0:00:02", env: []string{"CNI_ARGS=IgnoreUnknown=1;MAC=52:54:00:c0:00:02"}},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			sb := testbed.NewNetNS(t)
			out, err := b.cnitool(tt.env, "add", tt.network, sb.Path)
			if err != nil {
				t.Fatal(err)
			}
			deleted := false
			t.Cleanup(func() {
				if !deleted {
					_, _ = b.cnitool(tt.env, "del", tt.network, sb.Path)
				}
			})
			r := &types100.Result{}
			if err := json.Unmarshal([]byte(out), r); err != nil {
				t.Fatalf("cnitool add: %v\n%s", err, out)
			}
			opts := testbed.GuestOpts{NetNS: sb, Netdev: "tap,ifname=eth0,script=no,downscript=no", MAC: tt.mac, Credential: nobody}
			if tt.mode == "host" {
				opts.NetNS, opts.Netdev = lan.HV, "tap,ifname="+r.Interfaces[1].Name+",script=no,downscript=no" // [0] is its front
			}
			if guest := r.Interfaces[len(r.Interfaces)-1]; guest.Mac != tt.mac {
				t.Errorf("result: guest MAC %s, want %s", guest.Mac, tt.mac)
			}
			start := time.Now()
			g := testbed.StartGuest(t, opts)
			ip, err := g.WaitLease(60 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			lease, err := lan.WaitLease(tt.mac, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if lease.IP != ip {
				t.Errorf("the guest says it leased %s, dnsmasq says %s", ip, lease.IP)
			}
			if err := g.WaitReady(20 * time.Second); err != nil {
				t.Fatal(err)
			}
			t.Logf("guest %s (QEMU in the %s namespace) leased %s after %v", tt.mac, opts.NetNS, ip, time.Since(start).Round(100*time.Millisecond))
			page, err := lan.Router.Fetch("http://" + ip.String() + "/")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(page, "mac="+tt.mac) {
				t.Errorf("page from %s: %q, want guest %s's", ip, page, tt.mac)
			}
			if _, err := b.cnitool(tt.env, "check", tt.network, sb.Path); err != nil {
				t.Errorf("CHECK with the guest running: %v", err)
			}
			if err := g.Stop(); err != nil {
				t.Fatal(err)
			}
			if _, err := b.cnitool(tt.env, "del", tt.network, sb.Path); err != nil {
				t.Fatal(err)
			}
			deleted = true
			if diff := cmp.Diff([]string{"lo device"}, cniLinks(t, sb)); diff != "" {
				t.Errorf("sandbox links after DEL (-want +got):\n%s", diff)
			}
			for _, l := range cniLinks(t, lan.HV) {
				if strings.Contains(l, r.Interfaces[0].Name) {
					t.Errorf("host port left after DEL: %s", l)
				}
			}
		})
	}
}
