package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tapbridge/tapbridge/test/testbed"
)

// TestMisspelledGuardIsAnError: a misspelled key in tapbridge.conf or in
// the CNI plugin's configuration, and a misspelled TAPBRIDGE_ variable for
// qemu-ifup, are refused with one line that names the key and the nearest
// known one, and nothing is attached. Before, {"macSpoofChek": true,
// "isolate": true} gave a VM with neither check.
func TestMisspelledGuardIsAnError(t *testing.T) {
	t.Parallel()
	p := newPolicyLAN(t, testbed.LANOptions{}, "")
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(bad, []byte(`{"cniVersion": "1.0.0", "name": "lan", "type": "tapbridge", "bridge": "br0", "macSpoofChek": true, "isolate": true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	vm := p.newTAP(t) // as QEMU makes it before it runs qemu-ifup
	before := p.links(t)
	const want = `"isolate": unknown key; did you mean "isolated"? (also "macSpoofChek": did you mean "macSpoofCheck"?)`

	out, err := p.run(nil, nil, "tapbridge", "tap", "add", "vm0", "--config", bad)
	if err == nil {
		t.Errorf("tap add with a misspelled key succeeded: %s", out)
	}
	polAssertOneLine(t, "tap add", out, want)

	out, err = p.run([]string{"TAPBRIDGE_CONF=" + bad}, nil, "qemu-ifup", vm.Name())
	if err == nil {
		t.Errorf("qemu-ifup with a misspelled key succeeded: %s", out)
	}
	polAssertOneLine(t, "qemu-ifup", out, want)

	out, err = p.run([]string{"TAPBRIDGE_CONF=" + p.conf, "TAPBRIDGE_ISOLATE=1"}, nil, "qemu-ifup", vm.Name())
	if err == nil {
		t.Errorf("qemu-ifup with TAPBRIDGE_ISOLATE succeeded: %s", out)
	}
	polAssertOneLine(t, "qemu-ifup", out, `"TAPBRIDGE_ISOLATE": unknown variable; did you mean "TAPBRIDGE_ISOLATED"?`)

	sandbox := testbed.NewNetNS(t)
	env := []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=strict", "CNI_NETNS=" + sandbox.Path, "CNI_IFNAME=eth0", "CNI_PATH=" + binDir}
	out, err = p.run(env, polMustRead(t, bad), "tapbridge")
	if err == nil {
		t.Errorf("CNI ADD with a misspelled key succeeded: %s", out)
	}
	var cniErr struct {
		Code int
		Msg  string
	}
	if err := json.Unmarshal([]byte(out), &cniErr); err != nil || cniErr.Code != 7 || !strings.Contains(cniErr.Msg, want) {
		t.Errorf("CNI ADD error = %s (%v); want code 7 naming %s", out, err, want)
	}

	out, err = p.run(nil, nil, "tapbridge", "check", "--config", bad)
	if err == nil {
		t.Errorf("check of a misspelled key succeeded: %s", out)
	}
	polAssertOneLine(t, "check", out, want)

	if diff := cmp.Diff(before, p.links(t)); diff != "" {
		t.Errorf("a refused attach changed the links (-before +after):\n%s", diff)
	}
}

// TestCheckPrintsTheEffectivePolicy: `tapbridge check` names each guard
// with the defaults filled in, and the per-VM values from flags or, with
// --env, from qemu-ifup's variables.
func TestCheckPrintsTheEffectivePolicy(t *testing.T) {
	t.Parallel()
	p := newPolicyLAN(t, testbed.LANOptions{}, `"macSpoofCheck": true, "raGuard": false`)
	out, err := p.run([]string{"TAPBRIDGE_MAC=52:54:00:12:34:56", "TAPBRIDGE_ISOLATED=1"}, nil, "tapbridge", "check", "--config", p.conf, "--env", "--ips", "192.0.2.50")
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	want := p.conf + `: valid
bridge br0, uplink eth0, CNI mode netns
port policy of a VM port (guest MAC 52:54:00:12:34:56, addresses 192.0.2.50):
  macSpoofCheck  on
  ipSpoofCheck   off
  dhcpGuard      on (default)
  raGuard        off
  bpduGuard      on (default)
  isolated       on
  vlan           none
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("check (-want +got):\n%s", diff)
	}
	out, _ = p.run(nil, nil, "tapbridge", "check", "--config", p.conf)
	if !strings.Contains(out, `a VM port cannot be attached without more: config: "macSpoofCheck": needs the guest's MAC`) {
		t.Errorf("check without the guest's MAC: %s", out)
	}
}

// TestOwnerIDsAre32Bit: an owner or group beyond 32 bits is refused, not
// truncated: TUNSETOWNER takes the low 32 bits, so 4294967296 would make
// the TAP root's.
func TestOwnerIDsAre32Bit(t *testing.T) {
	t.Parallel()
	p := newPolicyLAN(t, testbed.LANOptions{}, "")
	before := p.links(t)
	for _, tc := range []struct{ flag, want string }{
		{"--owner=4294967296", `"owner": 4294967296 is not a valid id (0 to 4294967294)`},
		{"--group=4294967295", `"group": 4294967295 is not a valid id (0 to 4294967294)`},
	} {
		out, err := p.run(nil, nil, "tapbridge", "tap", "add", "vm0", "--config", p.conf, tc.flag)
		if err == nil {
			t.Errorf("tap add %s succeeded: %s", tc.flag, out)
		}
		polAssertOneLine(t, "tap add "+tc.flag, out, tc.want)
	}
	if diff := cmp.Diff(before, p.links(t)); diff != "" {
		t.Errorf("a refused tap add changed the links (-before +after):\n%s", diff)
	}
}
