package doctor

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/link"
	"github.com/tapbridge/tapbridge/internal/nldump"
	"github.com/tapbridge/tapbridge/internal/policy"
	"github.com/tapbridge/tapbridge/internal/state"
	"github.com/tapbridge/tapbridge/internal/uplink"
)

// journalUplink returns the uplink the bridge's journal names, or "".
func journalUplink(br string) string {
	var j struct {
		Uplink string `json:"uplink"`
	}
	b, err := os.ReadFile(state.Path("uplink", br+".json"))
	if err != nil || json.Unmarshal(b, &j) != nil {
		return ""
	}
	return j.Uplink
}

// checkNetfilter: with br_netfilter loaded and bridge-nf-call-iptables on,
// bridged frames traverse the ip/ip6/inet FORWARD hooks, where a drop
// policy silently drops the VMs' traffic.
func checkNetfilter(o Options) Check {
	c := Check{Name: "netfilter"}
	if _, err := os.Stat(o.path("sys/module/br_netfilter")); err != nil {
		c.Status, c.Message = OK, "br_netfilter is not loaded: bridged frames skip iptables/nftables ip FORWARD"
		return c
	}
	var calls []string
	for _, k := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables"} {
		if readTrim(o.path("proc/sys/net/bridge/"+k)) == "1" {
			calls = append(calls, k)
		}
	}
	if len(calls) == 0 {
		c.Status, c.Message = OK, "br_netfilter is loaded but bridge-nf-call-iptables and -ip6tables are 0"
		return c
	}
	drops, err := forwardDrops()
	if err != nil {
		c.Status, c.Message = Skip, fmt.Sprintf("br_netfilter is loaded (%s = 1) and the FORWARD chains cannot be read: %v", strings.Join(calls, ", "), err)
		return c
	}
	if len(drops) == 0 {
		// Legacy iptables (x_tables) keeps its chains out of nftables'
		// sight: its FORWARD policy cannot be read here.
		if strings.Contains(readTrim(o.path("proc/net/ip_tables_names"))+"\n"+readTrim(o.path("proc/net/ip6_tables_names")), "filter") {
			c.Status = Skip
			c.Message = fmt.Sprintf("br_netfilter is loaded (%s = 1) and legacy iptables has a filter table, whose FORWARD policy only iptables-legacy shows", strings.Join(calls, ", "))
			c.Fix = "iptables-legacy -S FORWARD | head -1: with -P FORWARD DROP, bridged VM traffic is dropped"
			return c
		}
		c.Status, c.Message = OK, fmt.Sprintf("br_netfilter is loaded (%s = 1) and no FORWARD chain drops by policy", strings.Join(calls, ", "))
		return c
	}
	c.Status = Fail
	c.Message = fmt.Sprintf("br_netfilter passes bridged frames through %s with policy drop: VM traffic is silently dropped", strings.Join(drops, ", "))
	c.Fix = "sysctl -w net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0 (and the same in /etc/sysctl.d/), or accept bridged traffic first: iptables -I FORWARD -m physdev --physdev-is-bridged -j ACCEPT"
	return c
}

// forwardDrops lists the nftables base chains (iptables-nft's included) on
// the forward hook of the ip, ip6 and inet families whose policy is drop.
func forwardDrops() ([]string, error) {
	conn, err := nftables.New()
	if err != nil {
		return nil, err
	}
	chains, err := conn.ListChains()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ch := range chains {
		if ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookForward || ch.Policy == nil || *ch.Policy != nftables.ChainPolicyDrop {
			continue
		}
		fam := map[nftables.TableFamily]string{nftables.TableFamilyIPv4: "ip", nftables.TableFamilyIPv6: "ip6", nftables.TableFamilyINet: "inet"}[ch.Table.Family]
		if fam == "" {
			continue
		}
		out = append(out, fmt.Sprintf("%s %s %s", fam, ch.Table.Name, ch.Name))
	}
	sort.Strings(out)
	return out, nil
}

// checkWireless: a Wi-Fi station cannot be a bridge port.
func checkWireless(o Options) Check {
	c := Check{Name: "wifi"}
	if o.Uplink == "" {
		c.Status, c.Message = Skip, "no uplink"
		return c
	}
	for _, f := range []string{"wireless", "phy80211"} {
		if _, err := os.Stat(o.path(filepath.Join("sys/class/net", o.Uplink, f))); err == nil {
			c.Status = Fail
			c.Message = fmt.Sprintf("uplink %q is a Wi-Fi interface: Wi-Fi stations cannot be bridged", o.Uplink)
			c.Fix = "use an Ethernet uplink, or route the VMs' addresses instead of bridging them"
			return c
		}
	}
	c.Status, c.Message = OK, fmt.Sprintf("uplink %q is not a Wi-Fi interface", o.Uplink)
	return c
}

// bridgeTimers reads a bridge's STP state and forward delay (in
// hundredths of a second) from netlink.
func bridgeTimers(idx int) (stp, fwd uint32, err error) {
	_, data, err := link.Raw(idx)
	if err != nil {
		return 0, 0, err // names the ifindex
	}
	if v := data[nl.IFLA_BR_STP_STATE]; len(v) == 4 {
		stp = binary.NativeEndian.Uint32(v)
	}
	if v := data[nl.IFLA_BR_FORWARD_DELAY]; len(v) == 4 {
		fwd = binary.NativeEndian.Uint32(v)
	}
	return stp, fwd, nil
}

// checkBridge: STP, the bridge's MAC and the ports' MTUs.
func checkBridge(o Options) []Check {
	br, err := netlink.LinkByName(o.Bridge)
	if err != nil {
		return []Check{{Name: "bridge", Status: Skip, Message: fmt.Sprintf("bridge %q does not exist (yet): nothing to check on it", o.Bridge)}}
	}
	if _, ok := br.(*netlink.Bridge); !ok {
		return []Check{{Name: "bridge", Status: Fail, Message: fmt.Sprintf("%q is a %s, not a bridge", o.Bridge, br.Type()), Fix: "pick another --bridge name"}}
	}
	var out []Check
	stp := Check{Name: "stp"}
	on, fwd, err := bridgeTimers(br.Attrs().Index)
	switch {
	case err != nil:
		stp.Status, stp.Message = Skip, err.Error()
	case on != 0 && fwd != 0:
		stp.Status = Fail
		stp.Message = fmt.Sprintf("bridge %q runs STP with a forward delay of %ds: every new VM port blocks (and misses its DHCP) for %ds", o.Bridge, fwd/100, 2*fwd/100)
		stp.Fix = fmt.Sprintf("ip link set %s type bridge stp_state 0 forward_delay 0", o.Bridge)
	case on != 0:
		stp.Status = Fail
		stp.Message = fmt.Sprintf("bridge %q runs STP: a VM can take part in the spanning tree", o.Bridge)
		stp.Fix = fmt.Sprintf("ip link set %s type bridge stp_state 0", o.Bridge)
	default:
		stp.Status, stp.Message = OK, fmt.Sprintf("bridge %q has STP off: new ports forward at once", o.Bridge)
	}
	out = append(out, stp)

	links, err := nldump.LinkList()
	if err != nil {
		return append(out, Check{Name: "ports", Status: Skip, Message: fmt.Sprintf("listing links: %v", err)})
	}
	if o.Uplink != "" {
		mc := Check{Name: "mac"}
		var up netlink.Link
		for _, l := range links {
			if l.Attrs().Name == o.Uplink {
				up = l
			}
		}
		switch {
		case up == nil:
			mc.Status, mc.Message = Fail, fmt.Sprintf("uplink %q does not exist", o.Uplink)
			mc.Fix = "name the host's physical NIC with --uplink"
		case up.Attrs().HardwareAddr.String() != br.Attrs().HardwareAddr.String():
			mc.Status = Fail
			mc.Message = fmt.Sprintf("bridge %q has MAC %s, not uplink %q's %s: the host's DHCP lease, the LAN's ARP caches and switch port security follow the uplink's", o.Bridge, br.Attrs().HardwareAddr, o.Uplink, up.Attrs().HardwareAddr)
			mc.Fix = fmt.Sprintf("ip link set %s address %s (tapbridge up does this)", o.Bridge, up.Attrs().HardwareAddr)
		default:
			mc.Status, mc.Message = OK, fmt.Sprintf("bridge %q has uplink %q's MAC %s", o.Bridge, o.Uplink, br.Attrs().HardwareAddr)
		}
		out = append(out, mc)
	}
	mtu := Check{Name: "mtu"}
	var bad []string
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index && l.Attrs().MTU != br.Attrs().MTU {
			bad = append(bad, fmt.Sprintf("%s %d", l.Attrs().Name, l.Attrs().MTU))
		}
	}
	if len(bad) > 0 {
		mtu.Status = Fail
		mtu.Message = fmt.Sprintf("ports of bridge %q (MTU %d) with another MTU: %s: frames between them are dropped or the bridge MTU drops", o.Bridge, br.Attrs().MTU, strings.Join(bad, ", "))
		mtu.Fix = fmt.Sprintf("ip link set PORT mtu %d for each", br.Attrs().MTU)
	} else {
		mtu.Status, mtu.Message = OK, fmt.Sprintf("every port of bridge %q has its MTU %d", o.Bridge, br.Attrs().MTU)
	}
	return append(out, mtu)
}

// checkDevices: /dev/net/tun for every front end, /dev/vhost-net for QEMU
// run as a user with vhost=on.
func checkDevices(o Options) []Check {
	tun := Check{Name: "tun"}
	if st, err := os.Stat(o.path("dev/net/tun")); err != nil || st.Mode()&fs.ModeCharDevice == 0 {
		tun.Status, tun.Message = Fail, "/dev/net/tun is missing: no TAP can be made"
		tun.Fix = "modprobe tun (and add tun to /etc/modules-load.d/)"
	} else {
		tun.Status, tun.Message = OK, "/dev/net/tun exists"
	}
	vh := Check{Name: "vhost-net"}
	st, err := os.Stat(o.path("dev/vhost-net"))
	switch {
	case err != nil || st.Mode()&fs.ModeCharDevice == 0:
		vh.Status, vh.Message = Fail, "/dev/vhost-net is missing: virtio-net runs in QEMU's userspace, several times slower"
		vh.Fix = "modprobe vhost_net (and add vhost_net to /etc/modules-load.d/)"
	case st.Mode().Perm()&0o006 == 0o006 || groupRW(st, o.QEMUGroup):
		vh.Status, vh.Message = OK, fmt.Sprintf("/dev/vhost-net exists and group %s may use it", o.QEMUGroup)
	default:
		vh.Status = Fail
		vh.Message = fmt.Sprintf("/dev/vhost-net (mode %04o) is not open to group %s: QEMU run as a user cannot use vhost=on", st.Mode().Perm(), o.QEMUGroup)
		vh.Fix = fmt.Sprintf("chgrp %s /dev/vhost-net; chmod 0660 /dev/vhost-net (permanently: a udev rule KERNEL==\"vhost-net\", GROUP=\"%s\", MODE=\"0660\")", o.QEMUGroup, o.QEMUGroup)
	}
	return []Check{tun, vh}
}

// groupRW reports whether st's group is group and may read and write.
func groupRW(st fs.FileInfo, group string) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || st.Mode().Perm()&0o060 != 0o060 {
		return false
	}
	return gidOf(group) == int(sys.Gid)
}

// gidOf resolves a group name or number, -1 when unknown.
func gidOf(group string) int {
	if n, err := strconv.Atoi(group); err == nil {
		return n
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return -1
	}
	n, _ := strconv.Atoi(g.Gid)
	return n
}

// netAdminCap reports whether the file has CAP_NET_ADMIN in its permitted
// file capabilities with the effective bit (setcap cap_net_admin+ep).
func netAdminCap(path string) bool {
	buf := make([]byte, 64)
	n, err := unix.Getxattr(path, "security.capability", buf)
	if err != nil || n < 8 {
		return false
	}
	magic := binary.LittleEndian.Uint32(buf[0:4])
	permitted := binary.LittleEndian.Uint32(buf[4:8])
	const effective, netAdmin = 0x1, 1 << unix.CAP_NET_ADMIN
	return magic&effective != 0 && permitted&netAdmin != 0
}

// checkHelper: the bridge helper needs setuid root or CAP_NET_ADMIN; with
// the capability it runs as the user, who needs the locks and the journal.
func checkHelper(o Options) []Check {
	c := Check{Name: "helper"}
	path := o.path(o.Helper)
	st, err := os.Stat(path)
	if err != nil {
		c.Status, c.Message = Skip, fmt.Sprintf("no bridge helper at %s", o.Helper)
		return []Check{c}
	}
	sys, _ := st.Sys().(*syscall.Stat_t)
	setuid := st.Mode()&fs.ModeSetuid != 0 && sys != nil && sys.Uid == 0
	switch {
	case setuid:
		c.Status, c.Message = OK, fmt.Sprintf("bridge helper %s is setuid root (mode %04o)", o.Helper, st.Mode().Perm())
		if st.Mode().Perm()&0o001 != 0 {
			c.Status = Fail
			c.Message += ": every local user may run it"
			c.Fix = fmt.Sprintf("chown root:%s %s; chmod 4750 %s", o.QEMUGroup, o.Helper, o.Helper)
		}
		return []Check{c}
	case netAdminCap(path):
		c.Status, c.Message = OK, fmt.Sprintf("bridge helper %s has the file capability cap_net_admin+ep", o.Helper)
	default:
		c.Status = Fail
		c.Message = fmt.Sprintf("bridge helper %s is neither setuid root nor has cap_net_admin: QEMU run as a user cannot attach", o.Helper)
		c.Fix = fmt.Sprintf("chown root:%s %s; chmod 4750 %s (or setcap cap_net_admin+ep %s and docs/qemu.md's tmpfiles snippet)", o.QEMUGroup, o.Helper, o.Helper, o.Helper)
		return []Check{c}
	}
	// With the capability the helper runs as the user: it must take the
	// bridge, uplink and policy locks and read the journal.
	rd := Check{Name: "run-dir"}
	want := []string{state.LockPath("bridge", o.Bridge), state.LockPath("policy", "")}
	if o.Uplink != "" {
		want = append(want, state.LockPath("uplink", o.Uplink))
	}
	var bad []string
	for _, p := range want {
		f, _ := filepath.Rel(state.Dir(), p)
		st, err := os.Stat(p)
		if err != nil || !groupRW(st, o.QEMUGroup) {
			bad = append(bad, f)
		}
	}
	if j := filepath.Join(state.Dir(), "uplink", o.Bridge+".json"); o.Uplink != "" {
		if st, err := os.Stat(j); err != nil || st.Mode().Perm()&0o004 == 0 {
			bad = append(bad, filepath.Join("uplink", o.Bridge+".json")+" (readable by all, written by 'tapbridge up')")
		}
	}
	if len(bad) > 0 {
		rd.Status = Fail
		rd.Message = fmt.Sprintf("the helper runs as the user with its file capability, and group %s cannot use %s in %s", o.QEMUGroup, strings.Join(bad, ", "), state.Dir())
		rd.Fix = "install docs/qemu.md's /etc/tmpfiles.d/tapbridge.conf, run systemd-tmpfiles --create and 'tapbridge up' (or install the helper setuid root)"
	} else {
		rd.Status, rd.Message = OK, fmt.Sprintf("group %s may take the helper's locks in %s and read the journal", o.QEMUGroup, state.Dir())
	}
	return []Check{c, rd}
}

// checkQEMUIfup: QEMU's default script for -netdev tap is /etc/qemu-ifup;
// Debian's attaches without any port policy.
func checkQEMUIfup(o Options) Check {
	c := Check{Name: "qemu-ifup"}
	b, err := os.ReadFile(o.path("etc/qemu-ifup"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.Status, c.Message = OK, "no /etc/qemu-ifup: QEMU's -netdev tap without script= runs no script"
	case err != nil:
		c.Status, c.Message = Skip, fmt.Sprintf("/etc/qemu-ifup: %v", err)
	case strings.Contains(string(b), "tapbridge"):
		c.Status, c.Message = OK, "/etc/qemu-ifup is tapbridge's"
	default:
		c.Status = Fail
		c.Message = "/etc/qemu-ifup is not tapbridge's (Debian's qemu package ships one): a -netdev tap without script= attaches with it, without any port policy"
		c.Fix = "ln -sf /usr/local/libexec/tapbridge/qemu-ifup /etc/qemu-ifup and ln -sf /usr/local/libexec/tapbridge/qemu-ifdown /etc/qemu-ifdown (dpkg-divert them first to survive upgrades), or always pass script="
	}
	return c
}

// checkPolicies: every VM port of the bridge has a policy, and every policy
// a port.
func checkPolicies(o Options) []Check {
	c := Check{Name: "policy"}
	br, err := netlink.LinkByName(o.Bridge)
	if err != nil {
		c.Status, c.Message = Skip, fmt.Sprintf("bridge %q does not exist", o.Bridge)
		return []Check{c}
	}
	names, err := policy.Ports()
	if err != nil {
		c.Status, c.Message = Skip, fmt.Sprintf("reading the port policies: %v", err)
		return []Check{c}
	}
	has := map[string]bool{}
	for _, n := range names {
		has[n] = true
	}
	links, err := nldump.LinkList()
	if err != nil {
		c.Status, c.Message = Skip, fmt.Sprintf("listing links: %v", err)
		return []Check{c}
	}
	exists := map[string]bool{}
	var bare []string
	for _, l := range links {
		a := l.Attrs()
		exists[a.Name] = true
		if a.MasterIndex == br.Attrs().Index && a.Name != o.Uplink && !has[a.Name] {
			bare = append(bare, a.Name)
		}
	}
	if len(bare) > 0 {
		c.Status = Fail
		c.Message = fmt.Sprintf("ports of bridge %q without a policy (a VM there may spoof and serve DHCP): %s", o.Bridge, strings.Join(bare, ", "))
		c.Fix = "attach VMs through tapbridge (qemu-ifup, the helper, tap add, CNI), or detach these ports (ip link set PORT nomaster)"
	} else {
		c.Status, c.Message = OK, fmt.Sprintf("every VM port of bridge %q has a policy", o.Bridge)
	}
	stale := Check{Name: "stale-policy"}
	var gone []string
	for _, n := range names {
		if !exists[n] {
			gone = append(gone, n)
		}
	}
	if len(gone) > 0 {
		stale.Status = Fail
		stale.Message = fmt.Sprintf("policies of ports that are gone: %s", strings.Join(gone, ", "))
		stale.Fix = "tapbridge gc"
	} else {
		stale.Status, stale.Message = OK, "no policy outlives its port"
	}
	return []Check{c, stale}
}

// checkState: the bridge's journal matches the live state, and no CNI
// record names a sandbox or port that is gone.
func checkState(o Options) []Check {
	j := Check{Name: "journal"}
	st, err := uplink.GetStatus(o.Bridge)
	switch {
	case err != nil:
		j.Status, j.Message = Fail, fmt.Sprintf("journal of bridge %q: %v", o.Bridge, err)
		j.Fix = fmt.Sprintf("tapbridge status --bridge %s; tapbridge down --bridge %s", o.Bridge, o.Bridge)
	case st.Journal == nil:
		j.Status, j.Message = OK, fmt.Sprintf("no journal for bridge %q (tapbridge did not move an uplink into it)", o.Bridge)
	case !st.Consistent:
		j.Status = Fail
		j.Message = fmt.Sprintf("journal %s (phase %s) does not match the live state: %s", st.Journal.Path, st.Journal.Phase, strings.Join(st.Problems, "; "))
		j.Fix = fmt.Sprintf("tapbridge up --bridge %s --uplink %s to finish the move, or tapbridge down --bridge %s to undo it", o.Bridge, st.Uplink, o.Bridge)
	default:
		j.Status, j.Message = OK, fmt.Sprintf("journal %s matches the live state", st.Journal.Path)
	}
	rc := Check{Name: "records"}
	files, _ := filepath.Glob(filepath.Join(state.Dir(), "cni", "*", "*"))
	var stale []string
	for _, f := range files {
		var r struct {
			HostPort string `json:"hostPort"`
			Netns    string `json:"netns"`
		}
		b, err := os.ReadFile(f)
		if err != nil || json.Unmarshal(b, &r) != nil {
			continue
		}
		if r.Netns != "" {
			if _, err := os.Stat(r.Netns); err != nil {
				stale = append(stale, filepath.Base(f)+" (sandbox "+r.Netns+" is gone)")
				continue
			}
		}
		if r.HostPort != "" {
			if _, err := netlink.LinkByName(r.HostPort); err != nil {
				stale = append(stale, filepath.Base(f)+" (port "+r.HostPort+" is gone)")
			}
		}
	}
	if len(stale) > 0 {
		rc.Status = Fail
		rc.Message = fmt.Sprintf("CNI attachments whose sandbox or port is gone (a runtime never called DEL): %s", strings.Join(stale, ", "))
		rc.Fix = "tapbridge gc (it removes the attachments whose sandbox is gone), or the runtime's DEL"
	} else {
		rc.Status, rc.Message = OK, "every CNI record names a live sandbox and port"
	}
	return []Check{j, rc}
}
