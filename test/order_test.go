package e2e

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tapbridge/tapbridge/test/frames"
	"github.com/tapbridge/tapbridge/test/testbed"
)

// TestPortForwardsOnlyWithItsPolicy: a port is enslaved while it is down
// and comes up only once its policy is in place, and leaves the bridge
// before its policy goes. qemu-ifup killed between enslaving the port and
// programming its policy leaves a port that forwards nothing (a rogue DHCP
// offer written into the TAP reaches no one); the next qemu-ifup finishes
// the attach with the policy. qemu-ifdown killed between taking the port
// off the bridge and removing the policy leaves only a stale policy, which
// gc removes.
func TestPortForwardsOnlyWithItsPolicy(t *testing.T) {
	t.Parallel()
	p := newPolicyLAN(t, testbed.LANOptions{DHCP: true}, `"macSpoofCheck": true, "ipSpoofCheck": true`)
	vmEnv := []string{"TAPBRIDGE_MAC=" + polMAC1.String(), "TAPBRIDGE_IPS=" + polIP1.String()}
	vm := p.newTAP(t)
	if out, err := p.run(append([]string{"TAPBRIDGE_CONF=" + p.conf, "TAPBRIDGE_FAILPOINT=attach:enslaved"}, vmEnv...), nil, "qemu-ifup", vm.Name()); err == nil {
		t.Fatalf("qemu-ifup was not killed at attach:enslaved: %s", out)
	}
	port := frontPort(vm.Name())
	if !polContains(p.links(t), port+" master br0") {
		t.Fatalf("the failpoint did not stop after enslaving: links %v", p.links(t))
	}
	if state := p.lan.HV.MustExec(t, "ip", "-o", "link", "show", "dev", port); !strings.Contains(state, "state DOWN") {
		t.Errorf("a port without its policy is not down: %s", state)
	}
	// The port is down, so not even the VM's own broadcast gets out; once
	// it is up (below) the same frames take milliseconds.
	const xid = 0x7b0a0070
	early := []frames.Probe{
		frames.DHCPOfferProbe("rogue DHCP offer before the policy", polMAC1, polIP1, polOtherIP, polOther, xid),
		frames.UDP4Probe("own broadcast before the policy", polMAC1, polIP1, polBcast, 1000, 2000),
	}
	frames.Drain(p.router)
	for _, pr := range early {
		vm.Send(t, pr.Frame)
	}
	for _, f := range p.router.Read(500 * time.Millisecond) {
		for _, pr := range early {
			if bytes.Contains(f, pr.Nonce) {
				t.Errorf("%q crossed a port that has no policy yet", pr.Name)
			}
		}
	}

	p.ifup(t, vm.Name(), vmEnv...)
	p.assertPolicy(t, vm.Name())
	other := p.newTAP(t)
	p.ifup(t, other.Name(), "TAPBRIDGE_MAC="+polMAC2.String(), "TAPBRIDGE_IPS="+polIP2.String())
	p.deliverFromVM(t, vm, other, polVMProbes(polMAC1, polIP1, polLL1, xid+1), xid+1)

	if out, err := p.run([]string{"TAPBRIDGE_CONF=" + p.conf, "TAPBRIDGE_FAILPOINT=detach:unbridged"}, nil, "qemu-ifdown", vm.Name()); err == nil {
		t.Fatalf("qemu-ifdown was not killed at detach:unbridged: %s", out)
	}
	if polContains(p.links(t), port+" master br0") {
		t.Errorf("the port is still on br0 after detach:unbridged")
	}
	p.mustRun(t, nil, "tapbridge", "gc")
	p.assertNoPolicy(t, vm.Name())
	p.assertPolicy(t, other.Name())
}
