package qemuhook

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tapbridge/tapbridge/internal/nstest"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/acl"
	"github.com/tapbridge/tapbridge/internal/bridge"
	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/link"
	"github.com/tapbridge/tapbridge/internal/tap"
	"github.com/tapbridge/tapbridge/internal/testkit"
	"github.com/tapbridge/tapbridge/internal/vmport"
)

// env is a fake process environment.
type env map[string]string

func (e env) get(k string) string { return e[k] }

// writeConf writes a configuration file and returns an environment that
// names it.
func writeConf(t *testing.T, conf string) env {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tapbridge.conf")
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return env{config.EnvConf: p}
}

// qemuTAP makes a TAP the way QEMU does for -netdev tap: non-persistent,
// held open by the test until cleanup.
func qemuTAP(t *testing.T, name string) {
	t.Helper()
	f, _, err := tap.Open(name, tap.Options{Owner: tap.NoID, Group: tap.NoID, VnetHdr: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
}

func TestIfupIfdown(t *testing.T) {
	nstest.Run(t, func() {
		e := writeConf(t, `{"bridge": "br0", "mtu": 9000}`)
		e[config.EnvMAC] = "52:54:00:12:34:56"
		qemuTAP(t, "tap0")
		if err := Ifup("tap0", e.get); err != nil {
			t.Fatal(err)
		}
		br, err := bridge.Get("br0")
		if err != nil {
			t.Fatalf("ifup did not create br0: %v", err)
		}
		// tap0 stays off the bridge; its front is the port.
		l, _ := link.Get("tap0")
		if a := l.Attrs(); a.MasterIndex != 0 || a.MTU != 9000 {
			t.Errorf("tap0 after ifup: master %d, MTU %d; want no master, MTU 9000", a.MasterIndex, a.MTU)
		}
		l, _ = link.Get(vmport.BridgePort("tap0"))
		a := l.Attrs()
		if !strings.HasPrefix(a.Name, "tbv") || a.MasterIndex != br.Attrs().Index || a.MTU != 9000 || a.HardwareAddr[0] != 0xFE || a.Flags&net.FlagUp == 0 {
			t.Errorf("front of tap0 after ifup: %s master %d (br0 %d), MTU %d, MAC %s, flags %v", a.Name, a.MasterIndex, br.Attrs().Index, a.MTU, a.HardwareAddr, a.Flags)
		}
		if err := Ifup("tap0", e.get); err != nil {
			t.Errorf("second ifup: %v", err)
		}
		if err := Ifdown("tap0", e.get); err != nil {
			t.Fatal(err)
		}
		// QEMU's TAP (not persistent: it goes when QEMU closes it, right
		// after the down script) is deleted with its front, in one kernel
		// operation.
		for _, n := range []string{"tap0", a.Name} {
			if _, err := link.Get(n); !errors.Is(err, link.ErrNotFound) {
				t.Errorf("%s after ifdown: %v; want it gone", n, err)
			}
		}
		if err := Ifdown("tap0", e.get); err != nil {
			t.Errorf("second ifdown: %v", err)
		}
	})
}

// TestIfupPerVMBridge: TAPBRIDGE_BRIDGE picks another bridge, which does
// not get the uplink the file names for its own bridge.
func TestIfupPerVMBridge(t *testing.T) {
	nstest.Run(t, func() {
		e := writeConf(t, `{"bridge": "br0", "uplink": "eth0"}`)
		e[config.EnvBridge] = "br-int"
		qemuTAP(t, "tap0")
		if err := Ifup("tap0", e.get); err != nil {
			t.Fatal(err)
		}
		if _, err := bridge.Get("br-int"); err != nil {
			t.Fatal(err)
		}
		if _, err := link.Get("br0"); !errors.Is(err, link.ErrNotFound) {
			t.Errorf("br0 = %v, want untouched", err)
		}
	})
}

func TestIfdownWhenTAPIsGone(t *testing.T) {
	nstest.Run(t, func() {
		for _, e := range []env{{}, writeConf(t, `{"bridge": "br0"}`), writeConf(t, `{"mtu": "broken"}`)} {
			if err := Ifdown("tap0", e.get); err != nil {
				t.Errorf("ifdown of a gone TAP with %v = %v", e, err)
			}
		}
	})
}

func TestIfdownRefusesNonTAP(t *testing.T) {
	nstest.Run(t, func() {
		if _, _, err := bridge.Ensure(bridge.Spec{Name: "br0"}); err != nil {
			t.Fatal(err)
		}
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MasterIndex: mustIndex(t, "br0")}, PeerName: "eth0p"}
		if err := netlink.LinkAdd(veth); err != nil {
			t.Fatal(err)
		}
		before := testkit.Links(t)
		err := Ifdown("eth0", env{}.get)
		if err == nil || !strings.Contains(err.Error(), `"eth0" is not a TAP but a veth link`) {
			t.Fatalf("ifdown eth0 = %v", err)
		}
		if diff := cmp.Diff(before, testkit.Links(t)); diff != "" {
			t.Errorf("links changed (-before +after):\n%s", diff)
		}
	})
}

func mustIndex(t *testing.T, name string) int {
	t.Helper()
	l, err := link.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

// TestIfupFailures: one line naming the TAP, the bridge and the reason, and
// the namespace exactly as it was.
func TestIfupFailures(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) env
		tap   string
		want  []string
	}{
		{
			name: "bridge name is not a bridge",
			setup: func(t *testing.T) env {
				qemuTAP(t, "tap0")
				if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "br0"}, PeerName: "br0p"}); err != nil {
					t.Fatal(err)
				}
				return writeConf(t, `{"bridge": "br0"}`)
			},
			want: []string{`cannot attach TAP "tap0" to bridge "br0": `, `bridge "br0" exists and is not a bridge`},
		},
		{
			name: "bad config",
			setup: func(t *testing.T) env {
				qemuTAP(t, "tap0")
				return writeConf(t, `{"bridge": "br7", "mtu": 10}`)
			},
			want: []string{`cannot attach TAP "tap0" to bridge "br7": `, `"mtu": must be between 68 and 65535, got 10`},
		},
		{
			name: "config is not JSON",
			setup: func(t *testing.T) env {
				qemuTAP(t, "tap0")
				return writeConf(t, "bridge=br0\n")
			},
			want: []string{`cannot attach TAP "tap0" to bridge "br0": `, `invalid JSON`},
		},
		{
			name: "TAPBRIDGE_CONF names a missing file",
			setup: func(t *testing.T) env {
				qemuTAP(t, "tap0")
				return env{config.EnvConf: "/nonexistent/tapbridge.conf"}
			},
			want: []string{`TAP "tap0"`, `bridge "br0"`, `/nonexistent/tapbridge.conf: no such file or directory`},
		},
		{
			name: "bad TAPBRIDGE_BRIDGE",
			setup: func(t *testing.T) env {
				qemuTAP(t, "tap0")
				return env{config.EnvBridge: "a-bridge-name-too-long"}
			},
			want: []string{`TAP "tap0"`, `bridge "a-bridge-name-too-long"`, `22 bytes`},
		},
		{
			name:  "TAP does not exist",
			setup: func(t *testing.T) env { return env{} },
			want:  []string{`cannot attach TAP "tap0" to bridge "br0": TAP "tap0" does not exist`},
		},
		{
			name: "not a TAP",
			setup: func(t *testing.T) env {
				if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "tap0"}, PeerName: "tap0p"}); err != nil {
					t.Fatal(err)
				}
				return env{}
			},
			want: []string{`TAP "tap0"`, `"tap0" is not a TAP but a veth link; refusing to touch it`},
		},
		{
			name: "TAP on another bridge",
			setup: func(t *testing.T) env {
				qemuTAP(t, "tap0")
				if _, _, err := bridge.Ensure(bridge.Spec{Name: "other"}); err != nil {
					t.Fatal(err)
				}
				l, _ := link.Get("tap0")
				if err := netlink.LinkSetMasterByIndex(l, mustIndex(t, "other")); err != nil {
					t.Fatal(err)
				}
				return env{}
			},
			want: []string{`"tap0" is already a port of "other"`},
		},
		{
			name: "ACL denies the bridge",
			setup: func(t *testing.T) env {
				qemuTAP(t, "tap0")
				p := filepath.Join(t.TempDir(), "bridge.conf")
				if err := os.WriteFile(p, []byte("allow all\ndeny br0\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return writeConf(t, fmt.Sprintf(`{"acl": %q}`, p))
			},
			want: []string{`cannot attach TAP "tap0" to bridge "br0": access denied by acl file `, `bridge.conf:2 (deny br0)`},
		},
		{
			name: "ACL named but missing",
			setup: func(t *testing.T) env {
				qemuTAP(t, "tap0")
				return writeConf(t, `{"acl": "/nonexistent/bridge.conf"}`)
			},
			want: []string{`TAP "tap0"`, `reading ACL: open /nonexistent/bridge.conf: no such file or directory`},
		},
		{
			name:  "bad TAP name",
			setup: func(t *testing.T) env { return env{} },
			tap:   "tap/0",
			want:  []string{`TAP "tap/0"`, `must not contain '/'`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nstest.Run(t, func() {
				e := tt.setup(t)
				before := testkit.Links(t)
				name := tt.tap
				if name == "" {
					name = "tap0"
				}
				err := Ifup(name, e.get)
				if err == nil {
					t.Fatal("ifup succeeded")
				}
				var stderr bytes.Buffer
				code := runMain(t, &stderr, err)
				line := stderr.String()
				if code != 1 || strings.Count(line, "\n") != 1 || !strings.HasPrefix(line, "qemu-ifup: ") {
					t.Errorf("exit %d, stderr %q: want 1 and one line", code, line)
				}
				for _, w := range tt.want {
					if !strings.Contains(line, w) {
						t.Errorf("stderr %q lacks %q", line, w)
					}
				}
				if diff := cmp.Diff(before, testkit.Links(t)); diff != "" {
					t.Errorf("a failed ifup changed links (-before +after):\n%s", diff)
				}
			})
		})
	}
}

// runMain prints err the way Main does.
func runMain(t *testing.T, stderr *bytes.Buffer, err error) int {
	t.Helper()
	fmt.Fprintf(stderr, "qemu-ifup: %s\n", oneLine(err.Error()))
	if errors.Is(err, ErrUsage) {
		return 2
	}
	return 1
}

func TestMainUsage(t *testing.T) {
	for _, args := range [][]string{{"qemu-ifup"}, {"/etc/qemu-ifup", "a", "b"}, {"qemu-ifdown"}, {"tapbridge-bridge-helper-x", "--bogus"}} {
		if ModeOf(args) == ModeHelper {
			// Main would drop this test's capabilities; check the parser.
			if _, err := ParseHelperArgs(args[1:]); !errors.Is(err, ErrUsage) {
				t.Errorf("%v: %v, want a usage error", args, err)
			}
			continue
		}
		var stderr bytes.Buffer
		if code := Main(args, &stderr); code != 2 || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("Main(%q) = %d, %q; want 2 and one line", args, code, stderr.String())
		}
	}
}

func TestModeOf(t *testing.T) {
	tests := []struct {
		args []string
		want Mode
	}{
		{[]string{"/usr/libexec/tapbridge/qemu-ifup", "tap0"}, ModeIfup},
		{[]string{"/etc/qemu-ifup", "tap0"}, ModeIfup},
		{[]string{"bin/qemu-ifdown", "tap0"}, ModeIfdown},
		{[]string{"/etc/qemu-ifdown", "tap0"}, ModeIfdown},
		{[]string{"/usr/libexec/tapbridge/tapbridge-bridge-helper", "--use-vnet", "--fd=3", "--br=br0"}, ModeHelper},
		{[]string{"/opt/qemu-ifup", "--use-vnet", "--fd=3", "--br=br0"}, ModeHelper},
		{[]string{"/opt/qemu-ifup", "--br=br0", "--fd=3"}, ModeHelper},
		{[]string{}, ModeIfup},
	}
	for _, tt := range tests {
		if got := ModeOf(tt.args); got != tt.want {
			t.Errorf("ModeOf(%q) = %v, want %v", tt.args, got, tt.want)
		}
	}
}

func TestParseHelperArgs(t *testing.T) {
	tests := []struct {
		args []string
		want HelperArgs
		err  string
	}{
		{[]string{"--use-vnet", "--fd=7", "--br=br0"}, HelperArgs{VnetHdr: true, Bridge: "br0", FD: 7}, ""},
		{[]string{"--br=br1", "--fd=3"}, HelperArgs{Bridge: "br1", FD: 3}, ""},
		{[]string{"--br=br0"}, HelperArgs{}, "want [--use-vnet] --br=BRIDGE --fd=N"},
		{[]string{"--fd=3"}, HelperArgs{}, "want [--use-vnet] --br=BRIDGE --fd=N"},
		{[]string{"--br=br0", "--fd=x"}, HelperArgs{}, `--fd wants a descriptor number, got "x"`},
		{[]string{"--br", "br0", "--fd=3"}, HelperArgs{}, `unknown argument "--br"`},
	}
	for _, tt := range tests {
		got, err := ParseHelperArgs(tt.args)
		if tt.err != "" {
			if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseHelperArgs(%q) = %v, want usage error %q", tt.args, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseHelperArgs(%q) = %v", tt.args, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseHelperArgs(%q) (-want +got):\n%s", tt.args, diff)
		}
	}
}

func TestHelper(t *testing.T) {
	nstest.Run(t, func() {
		dir := t.TempDir()
		aclPath := filepath.Join(dir, "bridge.conf")
		if err := os.WriteFile(aclPath, []byte("allow br0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		e := writeConf(t, fmt.Sprintf(`{"bridge": "br0", "mtu": 4000, "acl": %q}`, aclPath))
		qemu, sock := testkit.Socketpair(t)
		if err := helper([]string{"--use-vnet", fmt.Sprintf("--fd=%d", sock), "--br=br0"}, e.get, Caller{}); err != nil {
			t.Fatal(err)
		}
		fd := testkit.RecvFD(t, qemu)
		var name string
		ls, _ := netlink.LinkList()
		for _, l := range ls {
			if strings.HasPrefix(l.Attrs().Name, "tap") {
				name = l.Attrs().Name
			}
		}
		if name == "" {
			t.Fatal("no TAP after the helper ran")
		}
		info, err := tap.Inspect(name)
		if err != nil || info.Persistent || !info.VnetHdr {
			t.Errorf("TAP %s: %+v, %v; want non-persistent with vnet_hdr", name, info, err)
		}
		l, _ := link.Get(vmport.BridgePort(name))
		if a := l.Attrs(); a.Name == name || a.MasterIndex != mustIndex(t, "br0") || a.MTU != 4000 || a.HardwareAddr[0] != 0xFE || a.Flags&net.FlagUp == 0 {
			t.Errorf("port of TAP %s: %s master %d, MTU %d, MAC %s, flags %v", name, a.Name, a.MasterIndex, a.MTU, a.HardwareAddr, a.Flags)
		}
		// The descriptor QEMU received is the TAP: once it is closed (QEMU
		// exits) the TAP is gone.
		unix.Close(fd)
		if _, err := link.Get(name); !errors.Is(err, link.ErrNotFound) {
			t.Errorf("TAP %s after QEMU closed it: %v", name, err)
		}
	})
}

func TestHelperFailures(t *testing.T) {
	tests := []struct {
		name   string
		acl    string // "" = none
		conf   string
		args   func(sock int) []string
		caller Caller
		want   []string
	}{
		{
			name: "ACL denies",
			acl:  "allow all\ndeny br0\n",
			args: func(s int) []string { return []string{"--use-vnet", fmt.Sprintf("--fd=%d", s), "--br=br0"} },
			want: []string{`cannot attach a TAP to bridge "br0": access denied by acl file`, `(deny br0) (uid 0)`},
		},
		{
			name: "no rule allows",
			acl:  "allow br1\n",
			args: func(s int) []string { return []string{fmt.Sprintf("--fd=%d", s), "--br=br0"} },
			want: []string{`no rule allows bridge "br0" (the default is deny)`},
		},
		{
			name: "no ACL file",
			conf: `{"acl": "/nonexistent/bridge.conf"}`,
			args: func(s int) []string { return []string{fmt.Sprintf("--fd=%d", s), "--br=br0"} },
			want: []string{`reading ACL: open /nonexistent/bridge.conf`},
		},
		{
			name: "bridge name too long",
			acl:  "allow all\n",
			args: func(s int) []string { return []string{fmt.Sprintf("--fd=%d", s), "--br=br-0123456789abc"} },
			want: []string{`bridge "br-0123456789abc": invalid interface name: 16 bytes, at most 15 allowed`},
		},
		{
			name: "fd is not a socket",
			acl:  "allow all\n",
			args: func(int) []string { return []string{"--fd=0", "--br=br0"} },
			want: []string{`--fd=0 is not a socket`},
		},
		{
			name: "fd is closed",
			acl:  "allow all\n",
			args: func(int) []string { return []string{"--fd=999", "--br=br0"} },
			want: []string{`--fd=999: bad file descriptor`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nstest.Run(t, func() {
				conf := tt.conf
				if tt.acl != "" {
					p := filepath.Join(t.TempDir(), "bridge.conf")
					if err := os.WriteFile(p, []byte(tt.acl), 0o644); err != nil {
						t.Fatal(err)
					}
					conf = fmt.Sprintf(`{"acl": %q}`, p)
				}
				e := writeConf(t, conf)
				_, sock := testkit.Socketpair(t)
				before := testkit.Links(t)
				err := helper(tt.args(sock), e.get, tt.caller)
				if err == nil {
					t.Fatal("helper succeeded")
				}
				for _, w := range tt.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				if diff := cmp.Diff(before, testkit.Links(t)); diff != "" {
					t.Errorf("a failed helper changed links (-before +after):\n%s", diff)
				}
			})
		})
	}
}

// TestHelperEnvForUsers: for a caller other than root, the helper ignores
// the per-VM overrides and accepts TAPBRIDGE_CONF and TAPBRIDGE_RUN_DIR
// only when they are root's and nobody else can write them.
func TestHelperEnvForUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes files owned by another user")
	}
	user := Caller{UID: 65534, GID: 65534}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, mode os.FileMode, uid, gid int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(`{}`), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.conf", 0o640, 0, 65534) // the tenant's: root:its group 0640
	everyones := write("everyones.conf", 0o644, 0, 0)
	theirs := write("theirs.conf", 0o644, 65534, 0)
	writable := write("writable.conf", 0o666, 0, 0)
	link := filepath.Join(dir, "link.conf")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(dir, "run")
	if err := os.MkdirAll(filepath.Join(runDir, "lock"), 0o755); err != nil {
		t.Fatal(err)
	}
	bare := filepath.Join(dir, "bare")
	if err := os.Mkdir(bare, 0o755); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		env  env
		want string // error part; "" = accepted
	}{
		{"root's file", env{config.EnvConf: good}, ""},
		{"symlink to root's file", env{config.EnvConf: link}, ""},
		{"the user's file", env{config.EnvConf: theirs}, "is owned by uid 65534, not by root"},
		{"a file every user can read", env{config.EnvConf: everyones}, "readable by every user"},
		{"a world-writable file", env{config.EnvConf: writable}, "is writable by group or others"},
		{"a missing file", env{config.EnvConf: filepath.Join(dir, "none")}, "no such file"},
		{"a state directory root made", env{envRunDir: runDir}, ""},
		{"a directory without lock/", env{envRunDir: bare}, "TAPBRIDGE_RUN_DIR"},
		{"/tmp", env{envRunDir: os.TempDir()}, "TAPBRIDGE_RUN_DIR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(envRunDir, os.Getenv(envRunDir)) // restored after the test
			get, err := helperEnv(tt.env.get, user)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("helperEnv = %v, want error containing %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p := tt.env[config.EnvConf]; p != "" && get(config.EnvConf) != good {
				t.Errorf("TAPBRIDGE_CONF = %q, want the resolved %q", get(config.EnvConf), good)
			}
		})
	}
	t.Run("per-VM overrides are ignored", func(t *testing.T) {
		get, err := helperEnv(env{config.EnvBridge: "br9", config.EnvIPs: "192.0.2.0/24", config.EnvIsolated: "false"}.get, user)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{config.EnvBridge, config.EnvIPs, config.EnvIsolated} {
			if get(k) != "" {
				t.Errorf("%s = %q for uid 65534", k, get(k))
			}
		}
	})
	t.Run("ACL files the user could edit grant nothing", func(t *testing.T) {
		if err := os.WriteFile(good, []byte("allow br0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		read := aclReader(user)
		if _, err := read(good); err != nil {
			t.Errorf("root's ACL: %v", err)
		}
		if _, err := read(theirs); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Errorf("the user's ACL: %v", err)
		}
		a, err := acl.Load(good, read)
		if err != nil || len(a.Files) != 1 {
			t.Errorf("Load = %+v, %v", a, err)
		}
	})
}

// TestExampleConfigs keeps conf/tapbridge.conf and conf/bridge.conf valid.
func TestExampleConfigs(t *testing.T) {
	data, err := os.ReadFile("../../conf/tapbridge.conf")
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse(data)
	if err != nil {
		t.Fatalf("conf/tapbridge.conf: %v", err)
	}
	if c.Bridge != "br0" || c.Uplink != "eth0" || c.ACL != acl.DefaultPath {
		t.Errorf("conf/tapbridge.conf: bridge %q uplink %q acl %q", c.Bridge, c.Uplink, c.ACL)
	}
	a, err := acl.Load("../../conf/bridge.conf", os.ReadFile)
	if err != nil {
		t.Fatalf("conf/bridge.conf: %v", err)
	}
	if err := a.Check("br0"); err != nil {
		t.Errorf("conf/bridge.conf: %v", err)
	}
	if err := a.Check("br1"); !errors.Is(err, acl.ErrDenied) {
		t.Errorf("conf/bridge.conf allows br1: %v", err)
	}
}
