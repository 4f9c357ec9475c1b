package doctor

import (
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/nstest"
	"github.com/tapbridge/tapbridge/internal/policy"
	"github.com/tapbridge/tapbridge/internal/state"
)

const uplinkMAC = "52:54:00:aa:bb:01"

// host makes, in the test's namespace, the uplink eth0 (a veth to peer0,
// MAC 52:54:00:aa:bb:01, 192.0.2.10/24, default via 192.0.2.1) and the
// bridge br0 holding it with the uplink's MAC, STP off, forward delay 0.
func host(t *testing.T) (br, up netlink.Link) {
	t.Helper()
	hw, _ := net.ParseMAC(uplinkMAC)
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", HardwareAddr: hw}, PeerName: "peer0"}
	if err := netlink.LinkAdd(v); err != nil {
		t.Fatal(err)
	}
	b := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0", HardwareAddr: hw}}
	if err := netlink.LinkAdd(b); err != nil {
		t.Fatal(err)
	}
	br, _ = netlink.LinkByName("br0")
	up, _ = netlink.LinkByName("eth0")
	peer, _ := netlink.LinkByName("peer0")
	setBridge(t, br, 0, 0)
	for _, l := range []netlink.Link{br, up, peer} {
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	if err := netlink.LinkSetMaster(up, br); err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr("192.0.2.10/24")
	if err := netlink.AddrAdd(br, addr); err != nil {
		t.Fatal(err)
	}
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: br.Attrs().Index, Gw: net.ParseIP("192.0.2.1"), Flags: int(netlink.FLAG_ONLINK)}); err != nil {
		t.Fatal(err)
	}
	return br, up
}

// setBridge sets a bridge's STP state and forward delay (hundredths of a
// second).
func setBridge(t *testing.T, br netlink.Link, stp, fwd uint32) {
	t.Helper()
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(br.Attrs().Index)
	req.AddData(msg)
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	data.AddRtAttr(nl.IFLA_BR_FORWARD_DELAY, nl.Uint32Attr(fwd))
	data.AddRtAttr(nl.IFLA_BR_STP_STATE, nl.Uint32Attr(stp))
	req.AddData(info)
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		t.Fatalf("setting stp %d forward delay %d: %v", stp, fwd, err)
	}
}

// write creates root/rel with content (and its directories).
// brNetfilter makes root look like a host with br_netfilter loaded and
// bridge-nf-call-iptables set to call ("0" or "1").
func brNetfilter(t *testing.T, root, call string) {
	t.Helper()
	write(t, root, "sys/module/br_netfilter/refcnt", "0\n", 0o644)
	write(t, root, "proc/sys/net/bridge/bridge-nf-call-iptables", call+"\n", 0o644)
}

func write(t *testing.T, root, rel, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func mknod(t *testing.T, root, rel string, mode uint32, major, minor uint32, gid int) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(p, unix.S_IFCHR|mode, int(unix.Mkdev(major, minor))); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 0, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, os.FileMode(mode)); err != nil {
		t.Fatal(err)
	}
}

// setNetAdminCap gives the file cap_net_admin+ep (a version 2
// vfs_cap_data, as setcap writes it).
func setNetAdminCap(t *testing.T, path string) {
	t.Helper()
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|1) // VFS_CAP_REVISION_2 | effective
	binary.LittleEndian.PutUint32(b[4:], 1<<unix.CAP_NET_ADMIN)
	if err := unix.Setxattr(path, "security.capability", b, 0); err != nil {
		t.Fatal(err)
	}
}

const helperPath = "usr/local/libexec/tapbridge/tapbridge-bridge-helper"

// qemuGroup is a group number no test machine gives anyone.
const qemuGroup = "4242"

func TestChecks(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(t *testing.T, root string, br, up netlink.Link)
		check  string
		status Status
		msg    string // a part of the message
	}{
		{"netfilter not loaded", nil, "netfilter", OK, "br_netfilter is not loaded"},
		{"netfilter loaded, calls off", func(t *testing.T, root string, _, _ netlink.Link) {
			brNetfilter(t, root, "0")
		}, "netfilter", OK, "bridge-nf-call-iptables and -ip6tables are 0"},
		{"netfilter with forward accept", func(t *testing.T, root string, _, _ netlink.Link) {
			brNetfilter(t, root, "1")
			forwardChain(t, nftables.ChainPolicyAccept)
		}, "netfilter", OK, "no FORWARD chain drops by policy"},
		{"netfilter with legacy iptables", func(t *testing.T, root string, _, _ netlink.Link) {
			brNetfilter(t, root, "1")
			write(t, root, "proc/net/ip_tables_names", "filter\n", 0o444)
		}, "netfilter", Skip, "legacy iptables has a filter table"},
		{"netfilter with forward drop", func(t *testing.T, root string, _, _ netlink.Link) {
			brNetfilter(t, root, "1")
			forwardChain(t, nftables.ChainPolicyDrop)
		}, "netfilter", Fail, "through ip filter FORWARD with policy drop"},
		{"ethernet uplink", nil, "wifi", OK, `uplink "eth0" is not a Wi-Fi interface`},
		{"wifi uplink", func(t *testing.T, root string, _, _ netlink.Link) {
			write(t, root, "sys/class/net/eth0/phy80211/name", "phy0\n", 0o644)
		}, "wifi", Fail, `uplink "eth0" is a Wi-Fi interface`},
		{"stp off", nil, "stp", OK, "STP off"},
		{"stp on", func(t *testing.T, _ string, br, _ netlink.Link) { setBridge(t, br, 1, 0) }, "stp", Fail, `bridge "br0" runs STP`},
		{"stp on with forward delay", func(t *testing.T, _ string, br, _ netlink.Link) { setBridge(t, br, 1, 1500) }, "stp", Fail, "forward delay of 15s"},
		{"forward delay with stp off", func(t *testing.T, _ string, br, _ netlink.Link) { setBridge(t, br, 0, 1500) }, "stp", OK, "STP off"},
		{"bridge has the uplink's MAC", nil, "mac", OK, "52:54:00:aa:bb:01"},
		{"bridge MAC is not the uplink's", func(t *testing.T, _ string, br, _ netlink.Link) {
			hw, _ := net.ParseMAC("52:54:00:aa:bb:02")
			if err := netlink.LinkSetHardwareAddr(br, hw); err != nil {
				t.Fatal(err)
			}
		}, "mac", Fail, `bridge "br0" has MAC 52:54:00:aa:bb:02, not uplink "eth0"'s 52:54:00:aa:bb:01`},
		{"mtus match", nil, "mtu", OK, "MTU 1500"},
		{"port with a smaller MTU", func(t *testing.T, _ string, br, up netlink.Link) {
			if err := netlink.LinkSetMTU(br, 1450); err != nil { // set by the user: kept
				t.Fatal(err)
			}
			if err := netlink.LinkSetMTU(up, 1400); err != nil {
				t.Fatal(err)
			}
		}, "mtu", Fail, "eth0 1400"},
		{"no tun", nil, "tun", Fail, "/dev/net/tun is missing"},
		{"tun", func(t *testing.T, root string, _, _ netlink.Link) { mknod(t, root, "dev/net/tun", 0o666, 10, 200, 0) }, "tun", OK, "/dev/net/tun exists"},
		{"no vhost-net", nil, "vhost-net", Fail, "/dev/vhost-net is missing"},
		{"vhost-net root only", func(t *testing.T, root string, _, _ netlink.Link) {
			mknod(t, root, "dev/vhost-net", 0o600, 10, 238, 0)
		}, "vhost-net", Fail, "(mode 0600) is not open to group 4242"},
		{"vhost-net for the group", func(t *testing.T, root string, _, _ netlink.Link) {
			mknod(t, root, "dev/vhost-net", 0o660, 10, 238, 4242)
		}, "vhost-net", OK, "group 4242 may use it"},
		{"no helper", nil, "helper", Skip, "no bridge helper"},
		{"helper without privileges", func(t *testing.T, root string, _, _ netlink.Link) {
			write(t, root, helperPath, "ELF", 0o755)
		}, "helper", Fail, "neither setuid root nor has cap_net_admin"},
		{"helper setuid for a group", func(t *testing.T, root string, _, _ netlink.Link) {
			p := write(t, root, helperPath, "ELF", 0o750)
			if err := os.Chmod(p, 0o750|os.ModeSetuid); err != nil {
				t.Fatal(err)
			}
		}, "helper", OK, "setuid root (mode 0750)"},
		{"helper setuid for all", func(t *testing.T, root string, _, _ netlink.Link) {
			p := write(t, root, helperPath, "ELF", 0o755)
			if err := os.Chmod(p, 0o755|os.ModeSetuid); err != nil {
				t.Fatal(err)
			}
		}, "helper", Fail, "every local user may run it"},
		{"helper with capability", func(t *testing.T, root string, _, _ netlink.Link) {
			setNetAdminCap(t, write(t, root, helperPath, "ELF", 0o755))
		}, "helper", OK, "cap_net_admin+ep"},
		{"helper with capability, locks root's", func(t *testing.T, root string, _, _ netlink.Link) {
			setNetAdminCap(t, write(t, root, helperPath, "ELF", 0o755))
		}, "run-dir", Fail, "cannot use lock/bridge/br0.lock, lock/policy.lock, lock/uplink/eth0.lock, uplink/br0.json"},
		{"helper with capability, locks the group's", func(t *testing.T, root string, _, _ netlink.Link) {
			setNetAdminCap(t, write(t, root, helperPath, "ELF", 0o755))
			for _, f := range []string{"lock/bridge/br0.lock", "lock/policy.lock", "lock/uplink/eth0.lock"} {
				p := write(t, state.Dir(), f, "", 0o660)
				if err := os.Chown(p, 0, 4242); err != nil {
					t.Fatal(err)
				}
			}
			write(t, state.Dir(), "uplink/br0.json", `{"bridge": "br0", "uplink": "eth0", "phase": "up"}`, 0o644)
		}, "run-dir", OK, "group 4242 may take the helper's locks"},
		{"no /etc/qemu-ifup", nil, "qemu-ifup", OK, "no /etc/qemu-ifup"},
		{"debian's /etc/qemu-ifup", func(t *testing.T, root string, _, _ netlink.Link) {
			write(t, root, "etc/qemu-ifup", "#! /bin/sh\n# Script to bring a network (tap) device for qemu up.\nip link set \"$1\" master \"$switch\"\n", 0o755)
		}, "qemu-ifup", Fail, "is not tapbridge's"},
		{"tapbridge's /etc/qemu-ifup", func(t *testing.T, root string, _, _ netlink.Link) {
			write(t, root, "etc/qemu-ifup", "#!/bin/sh\nexec /usr/local/libexec/tapbridge/qemu-ifup \"$@\"\n", 0o755)
		}, "qemu-ifup", OK, "is tapbridge's"},
		{"only the uplink", nil, "policy", OK, "every VM port"},
		{"a port without policy", func(t *testing.T, _ string, br, _ netlink.Link) { port(t, br, "vm1") }, "policy", Fail, "without a policy (a VM there may spoof and serve DHCP): vm1"},
		{"a port with policy", func(t *testing.T, _ string, br, _ netlink.Link) {
			port(t, br, "vm1")
			if err := policy.Apply("vm1", policy.Spec{DHCPGuard: true}); err != nil {
				t.Fatal(err)
			}
		}, "policy", OK, "every VM port"},
		{"a policy without port", func(t *testing.T, _ string, br, _ netlink.Link) {
			port(t, br, "vm1")
			if err := policy.Apply("vm1", policy.Spec{DHCPGuard: true}); err != nil {
				t.Fatal(err)
			}
			l, _ := netlink.LinkByName("vm1")
			if err := netlink.LinkDel(l); err != nil {
				t.Fatal(err)
			}
		}, "stale-policy", Fail, "policies of ports that are gone: vm1"},
		{"no journal", nil, "journal", OK, `no journal for bridge "br0"`},
		{"journal of another host", func(t *testing.T, _ string, _, _ netlink.Link) {
			write(t, state.Dir(), "uplink/br0.json", `{"bridge": "br0", "uplink": "eth0", "phase": "up", "addrs": [{"cidr": "198.51.100.7/24"}]}`, 0o644)
		}, "journal", Fail, "the journal does not describe this host"},
		{"no records", nil, "records", OK, "every CNI record"},
		{"record of a vanished sandbox", func(t *testing.T, _ string, _, _ netlink.Link) {
			write(t, state.Dir(), "cni/lan/c1:eth0", `{"network": "lan", "hostPort": "tb0123456789a", "netns": "/run/netns/tb-gone-4242"}`, 0o600)
		}, "records", Fail, "c1:eth0 (sandbox /run/netns/tb-gone-4242 is gone)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nstest.Run(t, func() {
				br, up := host(t)
				root := t.TempDir()
				if tt.setup != nil {
					tt.setup(t, root, br, up)
				}
				r := Run(Options{Root: root, Bridge: "br0", Uplink: "eth0", QEMUGroup: qemuGroup})
				for _, c := range r.Checks {
					if c.Name != tt.check {
						continue
					}
					if c.Status != tt.status || !strings.Contains(c.Message, tt.msg) {
						t.Errorf("check %s: got %s %q (fix %q), want %s and %q", c.Name, c.Status, c.Message, c.Fix, tt.status, tt.msg)
					}
					if c.Status == Fail && c.Fix == "" {
						t.Errorf("check %s fails without a fix", c.Name)
					}
					return
				}
				t.Errorf("no check %q in %+v", tt.check, r.Checks)
			})
		})
	}
}

// forwardChain adds table ip filter with a FORWARD base chain of policy p
// (what iptables-nft makes).
func forwardChain(t *testing.T, p nftables.ChainPolicy) {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tb := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "filter"})
	c.AddChain(&nftables.Chain{Name: "FORWARD", Table: tb, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &p})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}

// port adds a veth whose end name is a port of br.
func port(t *testing.T, br netlink.Link, name string) {
	t.Helper()
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MasterIndex: br.Attrs().Index}, PeerName: name + "p"}); err != nil {
		t.Fatal(err)
	}
}

func TestManager(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string // under the root; "IFINDEX" is eth0's
		want  string            // manager
		dhcp  bool
		lines []string // in the configuration
		// permanent: the manager's configuration already has the bridge
		permanent bool
	}{
		{
			name:  "none",
			want:  "",
			lines: []string{`{"cniVersion": "1.0.0", "name": "tapbridge", "type": "tapbridge", "bridge": "br0", "uplink": "eth0"}`, "sudo systemctl enable --now tapbridge.service"},
		},
		{
			name:  "netplan dhcp",
			files: map[string]string{"etc/netplan/50-cloud-init.yaml": "network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n      match:\n        macaddress: 52:54:00:aa:bb:01\n"},
			want:  Netplan, dhcp: true,
			lines: []string{"  bridges:", "    br0:", "      interfaces: [eth0]", "      macaddress: 52:54:00:aa:bb:01", "      dhcp4: true", "        stp: false", "        forward-delay: 0"},
		},
		{
			name:  "netplan static",
			files: map[string]string{"etc/netplan/01-netcfg.yaml": "network:\n  ethernets:\n    eth0:\n      addresses: [192.0.2.10/24]\n    eth1:\n      dhcp4: true\n"},
			want:  Netplan,
			lines: []string{"      addresses: [192.0.2.10/24]", "        - to: default", "          via: 192.0.2.1"},
		},
		{
			name:  "NetworkManager static",
			files: map[string]string{"etc/NetworkManager/system-connections/Wired.nmconnection": "[connection]\nid=Wired\ntype=ethernet\ninterface-name=eth0\n\n[ipv4]\nmethod=manual\naddress1=192.0.2.10/24,192.0.2.1\n"},
			want:  NetworkManager,
			lines: []string{"sudo nmcli connection add type bridge con-name br0 ifname br0 bridge.stp no bridge.mac-address 52:54:00:aa:bb:01 ipv4.method manual ipv4.addresses 192.0.2.10/24 ipv4.gateway 192.0.2.1 ipv6.method auto", "sudo nmcli connection add type ethernet con-name br0-port-eth0 ifname eth0 master br0 slave-type bridge", "unmanaged-devices=interface-name:eth0;interface-name:br0;interface-name:tbv*;interface-name:tap*", "(auto eth0 / iface eth0 inet static, with its address and gateway)"},
		},
		{
			name:  "NetworkManager dhcp",
			files: map[string]string{"run/NetworkManager/system-connections/netplan-eth0.nmconnection": "[connection]\ninterface-name=eth0\n[ipv4]\nmethod=auto\n[ipv6]\nmethod=manual\n"},
			want:  NetworkManager, dhcp: true,
			lines: []string{"bridge.mac-address 52:54:00:aa:bb:01 ipv4.method auto ipv6.method auto"},
		},
		{
			name:  "NetworkManager at run time, no keyfile",
			files: map[string]string{"run/NetworkManager/devices/IFINDEX": "[device]\nmanaged=true\nperm-hw-addr-fake=52:54:00:aa:bb:01\n"},
			want:  NetworkManager, dhcp: true,
			lines: []string{"ipv4.method auto"},
		},
		{
			name:  "NetworkManager leaves it alone",
			files: map[string]string{"run/NetworkManager/devices/IFINDEX": "[device]\nmanaged=false\n"},
			want:  "",
		},
		{
			name: "networkd at run time",
			files: map[string]string{
				"run/systemd/netif/links/IFINDEX":      "# This is private data. Do not parse.\nADMIN_STATE=configured\nNETWORK_FILE=/etc/systemd/network/20-wired.network\n",
				"etc/systemd/network/20-wired.network": "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n",
			},
			want: Networkd, dhcp: true,
			lines: []string{"[NetDev]\nName=br0\nKind=bridge\nMACAddress=52:54:00:aa:bb:01\n\n[Bridge]\nSTP=no\nForwardDelaySec=0", "[Match]\nName=eth0\n\n[Network]\nBridge=br0", "DHCP=ipv4", "ClientIdentifier=mac", "[Match]\nName=eth0 br0 tbv* tap*\n\n[Link]\nUnmanaged=yes", "(auto eth0 / iface eth0 inet dhcp)"},
		},
		{
			name:  "networkd static by file",
			files: map[string]string{"etc/systemd/network/10-eth0.network": "[Match]\nName=eth0\n[Network]\nAddress=192.0.2.10/24\nGateway=192.0.2.1\n"},
			want:  Networkd,
			lines: []string{"Address=192.0.2.10/24\nGateway=192.0.2.1"},
		},
		{
			name: "ifupdown dhcp in interfaces.d",
			files: map[string]string{
				"etc/network/interfaces":        "source-directory /etc/network/interfaces.d\nauto lo\niface lo inet loopback\n",
				"etc/network/interfaces.d/eth0": "allow-hotplug eth0\niface eth0 inet dhcp\n",
			},
			want: Ifupdown, dhcp: true,
			lines: []string{"auto eth0\niface eth0 inet manual\n\nauto br0\niface br0 inet dhcp\n    hwaddress ether 52:54:00:aa:bb:01\n    bridge_ports eth0\n    bridge_stp off\n    bridge_fd 0"},
		},
		{
			name:  "ifupdown static",
			files: map[string]string{"etc/network/interfaces": "auto eth0\niface eth0 inet static\n    address 192.0.2.10/24\n    gateway 192.0.2.1\n"},
			want:  Ifupdown,
			lines: []string{"iface br0 inet static\n    address 192.0.2.10/24\n    gateway 192.0.2.1\n"},
		},
		{
			name:      "netplan bridge",
			files:     map[string]string{"etc/netplan/01.yaml": "network:\n  ethernets:\n    eth0:\n      dhcp4: false\n  bridges:\n    br0:\n      interfaces:\n        - eth1\n        - eth0\n      dhcp4: true\n"},
			want:      Netplan,
			permanent: true,
		},
		{
			name:      "NetworkManager bridge port",
			files:     map[string]string{"etc/NetworkManager/system-connections/br0-port.nmconnection": "[connection]\ninterface-name=eth0\nmaster=br0\nslave-type=bridge\n"},
			want:      NetworkManager,
			permanent: true,
		},
		{
			name:      "networkd bridge port",
			files:     map[string]string{"etc/systemd/network/10-eth0.network": "[Match]\nName=eth0\n\n[Network]\nBridge=br0\n"},
			want:      Networkd,
			permanent: true,
		},
		{
			name: "ifupdown bridge",
			files: map[string]string{
				"etc/network/interfaces":       "source /etc/network/interfaces.d/*\niface eth0 inet manual\n",
				"etc/network/interfaces.d/br0": "auto br0\niface br0 inet dhcp\n    bridge_ports eth0\n    bridge_stp off\n",
			},
			want:      Ifupdown,
			permanent: true,
		},
		{
			name:  "networkd bridge of another bridge",
			files: map[string]string{"etc/systemd/network/10-eth0.network": "[Match]\nName=eth0\n\n[Network]\nBridge=br1\n"},
			want:  Networkd,
			lines: []string{"Name=br0\nKind=bridge"},
		},
		{
			name:  "another interface's configuration",
			files: map[string]string{"etc/network/interfaces": "iface eth1 inet dhcp\n", "etc/systemd/network/x.network": "[Match]\nName=eth1\n"},
			want:  "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nstest.Run(t, func() {
				_, up := host(t)
				root := t.TempDir()
				for f, content := range tt.files {
					write(t, root, strings.ReplaceAll(f, "IFINDEX", strconv.Itoa(up.Attrs().Index)), content, 0o644)
				}
				r := Run(Options{Root: root, Bridge: "br0", Uplink: "eth0"})
				m, c := r.Manager, r.Checks[0]
				if m == nil || m.Name != tt.want || m.DHCP != tt.dhcp {
					t.Fatalf("manager %+v, want %q (dhcp %v)", m, tt.want, tt.dhcp)
				}
				if m.Permanent != tt.permanent || (tt.permanent && m.Config != "") {
					t.Errorf("manager %+v, want permanent %v and no configuration then", m, tt.permanent)
				}
				if wantStatus := map[bool]Status{true: OK, false: Fail}[tt.want == "" || tt.permanent]; c.Name != "manager" || c.Status != wantStatus {
					t.Errorf("check %+v, want manager %s", c, wantStatus)
				}
				for _, l := range tt.lines {
					if !strings.Contains(m.Config, l) {
						t.Errorf("configuration lacks %q:\n%s", l, m.Config)
					}
				}
			})
		})
	}
}
