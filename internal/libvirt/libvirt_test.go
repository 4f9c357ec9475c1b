package libvirt

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tapbridge/tapbridge/internal/config"
)

func read(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func mustMAC(t *testing.T, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func yes() *bool { b := true; return &b }
func no() *bool  { b := false; return &b }

// The XML libvirt 9.0.0 passes its hook, as recorded.
func TestParseRecorded(t *testing.T) {
	for _, tc := range []struct {
		file          string
		target0, tgt1 string
	}{
		{"prepare.xml", "", ""},
		{"start.xml", "vnet1", "vnet2"},
		{"status.xml", "vnet1", "vnet2"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			d, err := Parse(read(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			want := &Domain{
				Name: "vm1",
				UUID: "65642984-d205-4c17-9cd1-1801d78340bf",
				Interfaces: []Interface{
					{Type: "ethernet", MAC: mustMAC(t, "52:54:00:aa:bb:01"), Target: tc.target0, Script: "/usr/local/libexec/tapbridge/qemu-ifup"},
					{Type: "bridge", MAC: mustMAC(t, "52:54:00:aa:bb:02"), Target: tc.tgt1, Bridge: "br0"},
				},
				Port: &Port{Settings: Settings{MACSpoofCheck: yes(), IPs: []string{"192.0.2.50"}}},
			}
			if diff := cmp.Diff(want, d); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
		})
	}
}

func domainXML(metadata string) []byte {
	return []byte(`<domain type='qemu'><name>vm2</name><uuid>3f0b8c8e-2d55-4c0e-9d47-6a1f7a3b2c11</uuid>
<metadata>` + metadata + `</metadata>
<devices>
<interface type='ethernet'><mac address='52:54:00:00:00:01'/><script path='/usr/local/libexec/tapbridge/qemu-ifup'/></interface>
<interface type='bridge'><mac address='52:54:00:00:00:02'/><source bridge='br0'/><target dev='vnet7'/></interface>
</devices></domain>`)
}

const ns = `xmlns:tapbridge="https://tapbridge.dev/libvirt/1"`

func TestMetadata(t *testing.T) {
	for _, tc := range []struct {
		name, meta string
		want       *Port
		err        string // a substring of PortErr
	}{
		{name: "none", meta: ``},
		{name: "another application's", meta: `<app:x xmlns:app="https://example.org/app"><y/></app:x>`},
		{
			name: "every key",
			meta: `<tapbridge:port ` + ns + ` bridge="br1" mac-spoof-check="yes" ip-spoof-check="on" ips="192.0.2.50, 2001:db8::50" dhcp-guard="no" ra-guard="off" isolated="true" vlan="20" bpdu-guard="0"/>`,
			want: &Port{Settings: Settings{Bridge: "br1", MACSpoofCheck: yes(), IPSpoofCheck: yes(), IPs: []string{"192.0.2.50, 2001:db8::50"}, DHCPGuard: no(), RAGuard: no(), Isolated: yes(), VLAN: 20, BPDUGuard: no()}},
		},
		{
			name: "default namespace",
			meta: `<port xmlns="https://tapbridge.dev/libvirt/1" isolated="yes"/>`,
			want: &Port{Settings: Settings{Isolated: yes()}},
		},
		{
			name: "per interface",
			meta: `<tapbridge:port ` + ns + ` mac-spoof-check="yes"><tapbridge:interface mac="52:54:00:00:00:02" ips="198.51.100.7"/></tapbridge:port>`,
			want: &Port{
				Settings:   Settings{MACSpoofCheck: yes()},
				Interfaces: []Settings{{MAC: mustMAC(t, "52:54:00:00:00:02"), IPs: []string{"198.51.100.7"}}},
			},
		},
		{name: "misspelled attribute", meta: `<tapbridge:port ` + ns + ` isolate="yes"/>`, err: `<port isolate>: unknown attribute; did you mean "isolated"?`},
		{name: "camel case", meta: `<tapbridge:port ` + ns + ` macSpoofCheck="yes"/>`, err: `did you mean "mac-spoof-check"?`},
		{name: "mac on port", meta: `<tapbridge:port ` + ns + ` mac="52:54:00:00:00:01"/>`, err: `<port mac>: not an attribute of <port>`},
		{name: "bad boolean", meta: `<tapbridge:port ` + ns + ` isolated="maybe"/>`, err: `<port isolated="maybe">: must be "yes" or "no"`},
		{name: "bad vlan", meta: `<tapbridge:port ` + ns + ` vlan="4095"/>`, err: `must be a number between 1 and 4094`},
		{name: "bad ips", meta: `<tapbridge:port ` + ns + ` ips="192.0.2.300"/>`, err: `not a comma-separated list of IP addresses`},
		{name: "unknown element", meta: `<tapbridge:ports ` + ns + `/>`, err: `<ports>: unknown element; did you mean <port>?`},
		{name: "unknown child", meta: `<tapbridge:port ` + ns + `><tapbridge:iface mac="52:54:00:00:00:02"/></tapbridge:port>`, err: `<port><iface>: unknown element; did you mean <interface>?`},
		{name: "interface without mac", meta: `<tapbridge:port ` + ns + `><tapbridge:interface ips="192.0.2.5"/></tapbridge:port>`, err: `<interface>: needs mac`},
		{name: "interface of no NIC", meta: `<tapbridge:port ` + ns + `><tapbridge:interface mac="52:54:00:00:00:09"/></tapbridge:port>`, err: `the domain has no interface with this MAC`},
		{name: "misspelled on interface", meta: `<tapbridge:port ` + ns + `><tapbridge:interface mac="52:54:00:00:00:02" ip="192.0.2.5"/></tapbridge:port>`, err: `<interface ip>: unknown attribute; did you mean "ips"?`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Parse(domainXML(tc.meta))
			if err != nil {
				t.Fatal(err)
			}
			if tc.err != "" {
				if d.PortErr == nil || !strings.Contains(d.PortErr.Error(), tc.err) {
					t.Fatalf("PortErr = %v; want it to contain %q", d.PortErr, tc.err)
				}
				if !strings.Contains(d.PortErr.Error(), `domain "vm2"`) {
					t.Errorf("PortErr = %v; want it to name the domain", d.PortErr)
				}
				if _, err := d.For(d.Interfaces[0]); err == nil {
					t.Errorf("For with invalid metadata = nil error")
				}
				return
			}
			if d.PortErr != nil {
				t.Fatalf("PortErr = %v", d.PortErr)
			}
			if diff := cmp.Diff(tc.want, d.Port); diff != "" {
				t.Errorf("Port (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseNotDomain(t *testing.T) {
	for _, in := range []string{``, `<network><name>default</name></network>`, `not xml`} {
		if _, err := Parse([]byte(in)); !errors.Is(err, ErrNotDomain) {
			t.Errorf("Parse(%q) = %v; want ErrNotDomain", in, err)
		}
	}
}

// Per-interface settings override the domain's; Apply sets the
// configuration keys and the guest MAC.
func TestForApply(t *testing.T) {
	d, err := Parse(domainXML(`<tapbridge:port ` + ns + ` mac-spoof-check="yes" ips="192.0.2.50" isolated="yes">
		<tapbridge:interface mac="52:54:00:00:00:02" ips="198.51.100.7" isolated="no" dhcp-guard="no"/></tapbridge:port>`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		iface int
		want  config.Conf
	}{
		{0, config.Conf{Bridge: "br0", Mode: "netns", MAC: "52:54:00:00:00:01", MACSpoofCheck: true, IPs: []string{"192.0.2.50"}, Isolated: true}},
		{1, config.Conf{Bridge: "br0", Mode: "netns", MAC: "52:54:00:00:00:02", MACSpoofCheck: true, IPs: []string{"198.51.100.7"}, DHCPGuard: no()}},
	} {
		i := d.Interfaces[tc.iface]
		s, err := d.For(i)
		if err != nil {
			t.Fatal(err)
		}
		c := config.Conf{}
		if err := s.Apply(&c, i.MAC); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, c); diff != "" {
			t.Errorf("interface %d: Conf (-want +got):\n%s", tc.iface, diff)
		}
	}
}

// writeDir writes files (name -> content) into a new directory.
func writeDir(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestFind(t *testing.T) {
	other := []byte(strings.NewReplacer("vm1", "vm3", "65642984", "75642984").Replace(string(read(t, "prepare.xml"))))
	live := writeDir(t, map[string][]byte{"vm1.xml": read(t, "status.xml"), "junk.xml": []byte("<oops"), "notes.txt": []byte("x")})
	saved := writeDir(t, map[string][]byte{"65642984-d205-4c17-9cd1-1801d78340bf.xml": read(t, "prepare.xml")})
	twice := writeDir(t, map[string][]byte{"a.xml": read(t, "prepare.xml"), "b.xml": other})
	empty := filepath.Join(t.TempDir(), "missing")
	for _, tc := range []struct {
		name   string
		dirs   []Dir
		tap    string
		tapMAC string
		want   string // "domain/interface MAC", or an error substring after "error: "
	}{
		{"live, by target dev", []Dir{{Path: live, Live: true}}, "vnet2", "fe:54:00:aa:bb:02", "vm1/52:54:00:aa:bb:02"},
		{"live, never by MAC", []Dir{{Path: live, Live: true}}, "vnet9", "fe:54:00:aa:bb:01", "error: no libvirt domain has this TAP"},
		{"saved, by the TAP's MAC", []Dir{{Path: empty, Live: true}, {Path: saved}}, "vnet1", "fe:54:00:aa:bb:01", "vm1/52:54:00:aa:bb:01"},
		{"saved, a bridge interface is not matched by MAC", []Dir{{Path: saved}}, "vnet2", "fe:54:00:aa:bb:02", "error: no libvirt domain has this TAP"},
		{"saved, another MAC", []Dir{{Path: saved}}, "vnet1", "fe:54:00:aa:bb:03", "error: no libvirt domain has this TAP"},
		{"live first", []Dir{{Path: live, Live: true}, {Path: saved}}, "vnet1", "fe:54:00:aa:bb:01", "vm1/52:54:00:aa:bb:01"},
		{"two domains claim it", []Dir{{Path: twice}}, "vnet1", "fe:54:00:aa:bb:01", `error: matches more than one interface: domain "vm1"`},
		{"nothing there", []Dir{{Path: empty}}, "vnet1", "fe:54:00:aa:bb:01", "error: no libvirt domain has this TAP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Find(tc.dirs, tc.tap, mustMAC(t, tc.tapMAC))
			got := ""
			if err != nil {
				got = "error: " + err.Error()
				if want := strings.TrimPrefix(tc.want, "error: "); strings.HasPrefix(tc.want, "error: ") && strings.Contains(got, want) {
					got = tc.want
				}
				if strings.Contains(tc.want, "no libvirt domain") && !errors.Is(err, ErrNotFound) {
					t.Errorf("error %v does not match ErrNotFound", err)
				}
			} else {
				got = f.Domain.Name + "/" + f.Interface.MAC.String()
			}
			if got != tc.want {
				t.Errorf("Find(%s, %s) = %s; want %s", tc.tap, tc.tapMAC, got, tc.want)
			}
		})
	}
}

// The metadata of docs/libvirt.md parses, as written.
func TestDocsMetadata(t *testing.T) {
	doc, err := os.ReadFile("../../docs/libvirt.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile(`(?sm)^ *<metadata>\n.*?</metadata>`).FindAll(doc, -1)
	if len(blocks) < 3 {
		t.Fatalf("docs/libvirt.md has %d <metadata> blocks; want the reference and ways 1 and 4", len(blocks))
	}
	var ifaces strings.Builder
	for _, m := range regexp.MustCompile(`52:54:00:12:34:5[0-9]`).FindAllString(string(doc), -1) {
		fmt.Fprintf(&ifaces, "<interface type='ethernet'><mac address='%s'/></interface>", m)
	}
	for _, b := range blocks {
		xml := "<domain><name>doc</name><uuid>3f0b8c8e-2d55-4c0e-9d47-6a1f7a3b2c11</uuid>" + string(b) + "<devices>" + ifaces.String() + "</devices></domain>"
		d, err := Parse([]byte(xml))
		if err != nil {
			t.Fatal(err)
		}
		if d.PortErr != nil || d.Port == nil {
			t.Errorf("docs/libvirt.md metadata:\n%s\nPort %v, error %v", b, d.Port, d.PortErr)
		}
	}
}
