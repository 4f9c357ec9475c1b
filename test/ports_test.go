package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/tapbridge/tapbridge/test/frames"
	"github.com/tapbridge/tapbridge/test/testbed"
)

// TestPortsShowsOwnersGuardsAndDrops: `tapbridge ports` tells an operator
// which port belongs to whom and what guards it: a `tap add` TAP with its
// owner, guest MAC, addresses and guards, whose rogue DHCP offers show up
// in its dhcp drop counter; a CNI attachment by its container; and a TAP
// someone put on the bridge by hand, with no policy, is a warning and exit
// status 1.
func TestPortsShowsOwnersGuardsAndDrops(t *testing.T) {
	t.Parallel()
	p := newPolicyLAN(t, testbed.LANOptions{DHCP: true}, "")
	p.tapAdd(t, "vm0", "--owner", "nobody", "--mac", polMAC1.String(), "--mac-spoof-check", "--ips", polIP1.String(), "--ip-spoof-check", "--isolated")
	vm := p.openTAP(t, "vm0")
	cniTAP := p.cniTAP(t, "netns")
	_ = cniTAP
	for i := range 3 {
		vm.Send(t, frames.DHCPOfferProbe(fmt.Sprintf("rogue offer %d", i), polMAC1, polIP1, polOtherIP, polOther, uint32(0x7b0c0000+i)).Frame)
	}

	type port struct {
		Name, Kind, TAP, GuestMAC, VM string
		Owner                         *int
		IPs                           []string
		Guards                        []string
		Isolated                      bool
		Drops                         map[string]uint64
		Warnings                      []string
	}
	var got struct {
		SchemaVersion int
		Ports         []port
	}
	out := p.mustRun(t, nil, "tapbridge", "ports", "--config", p.conf, "--json")
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("ports --json: %v\n%s", err, out)
	}
	if got.SchemaVersion != 1 {
		t.Errorf("schemaVersion %d, want 1", got.SchemaVersion)
	}
	byName := map[string]port{}
	for _, q := range got.Ports {
		byName[q.Name] = q
	}
	v := byName[frontPort("vm0")]
	if v.Kind != "vm-tap" || v.TAP != "vm0" || v.Owner == nil || *v.Owner != 65534 || v.GuestMAC != polMAC1.String() ||
		strings.Join(v.IPs, ",") != polIP1.String() || strings.Join(v.Guards, ",") != "mac,ip,dhcp,ra,bpdu" || !v.Isolated || len(v.Warnings) != 0 {
		t.Errorf("vm0's port = %+v", v)
	}
	if v.Drops["dhcp"] != 3 {
		t.Errorf("vm0's dhcp drops = %d, want 3 (three rogue offers): %v", v.Drops["dhcp"], v.Drops)
	}
	c := byName[hostPortName("takeover", "eth0")]
	if c.Kind != "cni-veth" || c.VM != "lan/takeover:eth0" || strings.Join(c.Guards, ",") != "dhcp,ra,bpdu" {
		t.Errorf("the CNI attachment's port = %+v", c)
	}
	if u := byName["eth0"]; u.Kind != "uplink" {
		t.Errorf("eth0 = %+v, want the uplink", u)
	}

	p.lan.HV.MustExec(t, "ip", "tuntap", "add", "raw0", "mode", "tap")
	p.lan.HV.MustExec(t, "ip", "link", "set", "raw0", "master", "br0")
	out, err := p.run(nil, nil, "tapbridge", "ports", "--config", p.conf)
	if err == nil {
		t.Errorf("ports exited 0 with a TAP on the bridge and no policy:\n%s", out)
	}
	for _, want := range []string{
		`warning: raw0: TAP "raw0" is a port of the bridge itself`,
		"warning: raw0: no port policy: nothing guards what this VM sends",
		`tapbridge: bridge "br0": 1 port(s) with a warning`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ports does not say %q:\n%s", want, out)
		}
	}
}
