package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/testkit"
	"github.com/tapbridge/tapbridge/test/frames"
	"github.com/tapbridge/tapbridge/test/testbed"
)

// The tenant boundary against a tenant who holds a TAP's descriptor: with
// it, and no capability at all, QEMU (or whoever compromised it) can change
// the TAP's MAC (SIOCSIFHWADDR) and make the TAP persistent
// (TUNSETPERSIST). Were the TAP itself a bridge port, the bridge would
// install a permanent local FDB entry for the new MAC: set to the router's,
// the hypervisor's own frames to the router would go to the tenant and the
// router would be cut off. Through every front end the TAP stands behind a
// front, so the tenant gains nothing, and a TAP persisted behind
// tapbridge's back is removed by gc once its VM is gone.

// takeoverCase attaches a TAP through one front end and returns the
// tenant's descriptor of it; gcDeletes says whether the TAP was made by the
// tenant's QEMU (not persistent), so that gc must delete it once persisted
// and closed.
type takeoverCase struct {
	name      string
	attach    func(t *testing.T, p *policyLAN) *frames.TAP
	gcDeletes bool
}

var takeoverCases = []takeoverCase{
	{"tap add", func(t *testing.T, p *policyLAN) *frames.TAP {
		p.tapAdd(t, "vm0")
		return p.openTAP(t, "vm0")
	}, false},
	{"qemu-ifup", func(t *testing.T, p *policyLAN) *frames.TAP {
		vm := p.newTAP(t)
		p.ifup(t, vm.Name())
		return vm
	}, true},
	{"bridge helper", func(t *testing.T, p *policyLAN) *frames.TAP {
		return p.helperTAP(t)
	}, true},
	{"CNI host mode", func(t *testing.T, p *policyLAN) *frames.TAP {
		return p.cniTAP(t, "host")
	}, false},
	{"CNI netns mode", func(t *testing.T, p *policyLAN) *frames.TAP {
		return p.cniTAP(t, "netns")
	}, false},
}

func TestTenantCannotTakeOverAMAC(t *testing.T) {
	t.Parallel()
	for _, tc := range takeoverCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newPolicyLAN(t, testbed.LANOptions{DHCP: true}, "")
			vm := tc.attach(t, p)
			routerMAC := p.routerMAC(t)
			if err := p.lan.HV.Ping(polRouter.String()); err != nil {
				t.Fatalf("the hypervisor does not reach the router before the attack: %v", err)
			}

			// The attack: the router's MAC on the tenant's TAP, made to
			// outlive the VM.
			if err := vm.SetMAC(routerMAC); err != nil {
				t.Fatalf("the tenant could not even try: %v", err)
			}
			if err := vm.Persist(); err != nil {
				t.Fatalf("the tenant could not even try: %v", err)
			}

			for _, l := range strings.Split(p.lan.HV.MustExec(t, "bridge", "fdb", "show", "br", "br0"), "\n") {
				if strings.HasPrefix(l, routerMAC.String()+" ") && strings.Contains(l, "permanent") {
					t.Errorf("the bridge took the router's MAC as its own: %s", l)
				}
			}
			if err := p.lan.HV.Ping(polRouter.String()); err != nil {
				t.Errorf("the hypervisor lost the router after the tenant took its MAC: %v", err)
			}
			if out, err := p.run(nil, nil, "tapbridge", "status", "--bridge", "br0"); err != nil {
				t.Errorf("tapbridge status after the attack: %v\n%s", err, out)
			}

			// QEMU exits without its down script (killed, or -netdev bridge).
			vm.Close()
			p.mustRun(t, nil, "tapbridge", "gc")
			_, err := p.lan.HV.Exec("ip", "link", "show", "dev", vm.Name())
			switch {
			case tc.gcDeletes && err == nil:
				t.Errorf("gc left TAP %s, persisted by its tenant and held by nobody", vm.Name())
			case !tc.gcDeletes && strings.HasPrefix(tc.name, "tap add") && err != nil:
				t.Errorf("gc deleted TAP %s, made persistent by tapbridge tap add: %v", vm.Name(), err)
			}
			if tc.gcDeletes {
				if ports := p.bridgePorts(p.links(t)); len(ports) != 0 {
					t.Errorf("ports left on br0 after gc: %v", ports)
				}
			}
		})
	}
}

// TestStatusFlagsPortsTenantsCouldSteer: a TAP on the bridge itself, and a
// front whose MAC is not the one tapbridge gave it, make `tapbridge status`
// report a problem and exit 1.
func TestStatusFlagsPortsTenantsCouldSteer(t *testing.T) {
	t.Parallel()
	p := newPolicyLAN(t, testbed.LANOptions{DHCP: true}, "")
	p.tapAdd(t, "vm0")
	if out, err := p.run(nil, nil, "tapbridge", "status", "--bridge", "br0"); err != nil || !strings.Contains(out, "consistent") {
		t.Fatalf("status of a bridge tapbridge made: %v\n%s", err, out)
	}
	p.lan.HV.MustExec(t, "ip", "tuntap", "add", "raw0", "mode", "tap")
	p.lan.HV.MustExec(t, "ip", "link", "set", "raw0", "master", "br0")
	p.lan.HV.MustExec(t, "ip", "link", "set", frontPort("vm0"), "address", "52:54:00:00:00:99")
	out, err := p.run(nil, nil, "tapbridge", "status", "--bridge", "br0")
	if err == nil {
		t.Fatalf("status exited 0 with a TAP on the bridge:\n%s", out)
	}
	for _, want := range []string{
		`problem:   TAP "raw0" is a port of the bridge itself`,
		fmt.Sprintf(`problem:   port %q (the front of TAP "vm0") has MAC 52:54:00:00:00:99`, frontPort("vm0")),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status does not say %q:\n%s", want, out)
		}
	}
}

// helperTAP runs the bridge helper as QEMU does for -netdev bridge (as
// root here: the privilege drop has tests of its own) and returns the TAP
// descriptor it passes back.
func (p *policyLAN) helperTAP(t *testing.T) *frames.TAP {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	qemuEnd, helperEnd := os.NewFile(uintptr(fds[0]), "qemu"), os.NewFile(uintptr(fds[1]), "helper")
	defer qemuEnd.Close()
	cmd := p.lan.HV.Command(bin("tapbridge-bridge-helper"), "--fd=3", "--br=br0")
	cmd.ExtraFiles = []*os.File{helperEnd}
	cmd.Env = p.env("TAPBRIDGE_CONF=" + p.conf)
	out, err := cmd.CombinedOutput()
	helperEnd.Close()
	if err != nil {
		t.Fatalf("bridge helper: %v\n%s", err, out)
	}
	fd := testkit.RecvFD(t, int(qemuEnd.Fd()))
	ifr, err := unix.NewIfreq("")
	if err == nil {
		err = unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr)
	}
	if err != nil {
		t.Fatalf("TUNGETIFF: %v", err)
	}
	vm := frames.NewTAP(ifr.Name(), os.NewFile(uintptr(fd), ifr.Name()))
	t.Cleanup(func() { vm.Close() })
	return vm
}

// cniTAP runs CNI ADD in mode and opens the attachment's TAP as the QEMU
// behind it would; DEL runs at cleanup.
func (p *policyLAN) cniTAP(t *testing.T, mode string) *frames.TAP {
	t.Helper()
	conf := polMustRead(t, p.conf)
	var m map[string]any
	if err := json.Unmarshal(conf, &m); err != nil {
		t.Fatal(err)
	}
	m["mode"] = mode
	conf, _ = json.Marshal(m)
	sandbox := testbed.NewNetNS(t)
	env := func(cmd string) []string {
		return []string{"CNI_COMMAND=" + cmd, "CNI_CONTAINERID=takeover", "CNI_NETNS=" + sandbox.Path,
			"CNI_IFNAME=eth0", "CNI_PATH=" + binDir + ":" + toolsDir}
	}
	if out, err := p.run(env("ADD"), conf, "tapbridge"); err != nil {
		t.Fatalf("CNI ADD: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = p.run(env("DEL"), conf, "tapbridge") })
	if mode == "host" {
		return p.openTAP(t, hostTAPName("takeover", "eth0"))
	}
	vm := frames.OpenTAP(t, sandbox.Path, "eth0")
	return vm
}
