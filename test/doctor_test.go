package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDoctor runs 'tapbridge doctor' the way a user does, in the
// hypervisor namespace after 'tapbridge up', with a fake root for the files
// it reads: a healthy host passes (exit 0, --json parses); STP, a port
// without a policy, ifupdown owning eth0 and a route gone from the bridge
// (the journal no longer matches) each fail with their line, the ifupdown
// configuration is printed and the exit status is 1.
func TestDoctor(t *testing.T) {
	l := newUplinkLAN(t)
	l.mustTapbridge(t, "up", "--bridge", "br0", "--uplink", "eth0")
	root := t.TempDir()
	for _, d := range []struct {
		path         string
		major, minor uint32
	}{{"dev/net/tun", 10, 200}, {"dev/vhost-net", 10, 238}} {
		p := filepath.Join(root, d.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o666); err != nil {
			t.Fatal(err)
		}
	}

	out := l.mustTapbridge(t, "doctor", "--bridge", "br0", "--root", root, "--json")
	var rep struct {
		SchemaVersion int    `json:"schemaVersion"`
		Uplink        string `json:"uplink"`
		Manager       struct {
			Name   string `json:"name"`
			Config string `json:"config"`
		} `json:"manager"`
		Checks []struct {
			Name, Status, Message, Fix string
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, out)
	}
	if rep.SchemaVersion != 1 || rep.Uplink != "eth0" || rep.Manager.Name != "" || !strings.Contains(rep.Manager.Config, "systemctl enable --now tapbridge.service") {
		t.Errorf("doctor --json: schema %d, uplink %q (from the journal), manager %+v; want 1, eth0 and none", rep.SchemaVersion, rep.Uplink, rep.Manager)
	}
	for _, c := range rep.Checks {
		if c.Status == "fail" {
			t.Errorf("healthy host: %s fails: %s", c.Name, c.Message)
		}
	}

	l.ip(t, "link", "set", "br0", "type", "bridge", "stp_state", "1")
	l.ip(t, "route", "del", "198.51.100.0/24", "dev", "br0")
	l.ip(t, "link", "add", "vm1", "type", "veth", "peer", "name", "vm1p")
	l.ip(t, "link", "set", "vm1", "master", "br0")
	iface := filepath.Join(root, "etc/network/interfaces")
	if err := os.MkdirAll(filepath.Dir(iface), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(iface, []byte("auto eth0\niface eth0 inet dhcp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := l.tapbridge(nil, "doctor", "--bridge", "br0", "--root", root)
	if err == nil {
		t.Fatalf("doctor on a broken host exited 0:\n%s", out)
	}
	for _, want := range []string{
		`FAIL  manager      ifupdown owns "eth0" (` + iface + `)`,
		`FAIL  stp          bridge "br0" runs STP`,
		`FAIL  policy       ports of bridge "br0" without a policy (a VM there may spoof and serve DHCP): vm1; fix: `,
		"iface br0 inet dhcp\n    hwaddress ether ",
		`FAIL  journal      journal ` + l.runDir + `/uplink/br0.json (phase up) does not match the live state: route 198.51.100.0/24 via 192.0.2.1 is not through "br0"`,
		"tapbridge: doctor: 4 check(s) failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor's output lacks %q:\n%s", want, out)
		}
	}
}
