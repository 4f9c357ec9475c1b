package doctor

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/tapbridge/tapbridge/internal/nldump"
	"github.com/vishvananda/netlink"
)

// Network managers doctor knows.
const (
	Netplan        = "netplan"
	NetworkManager = "NetworkManager"
	Networkd       = "systemd-networkd"
	Ifupdown       = "ifupdown"
)

// Manager is the network manager that owns the uplink, and what to write
// in its configuration.
type Manager struct {
	// Name is one of the constants above, "" when none owns the uplink.
	Name string `json:"name"`
	// Evidence is the file that says so.
	Evidence string `json:"evidence,omitempty"`
	// DHCP is whether it configures the uplink by DHCP.
	DHCP bool `json:"dhcp"`
	// Permanent is whether its configuration already makes the uplink a
	// port of the bridge.
	Permanent bool `json:"permanent"`
	// Config is the configuration that makes the bridge permanent in that
	// manager, or how to leave it to tapbridge.service; "" when Permanent.
	Config string `json:"config"`

	file string // the configuration file that names the uplink
}

// bridged reports whether m's configuration makes the uplink a port of
// the bridge.
func bridged(o Options, m *Manager) bool {
	br, up := regexp.QuoteMeta(o.Bridge), regexp.QuoteMeta(o.Uplink)
	b, _ := os.ReadFile(m.file)
	switch m.Name {
	case NetworkManager:
		return regexp.MustCompile(`(?m)^(master|controller)=` + br + `\s*$`).Match(b)
	case Networkd:
		return regexp.MustCompile(`(?m)^\s*Bridge\s*=\s*` + br + `\s*$`).Match(b)
	case Ifupdown:
		return regexp.MustCompile(`(?m)^\s*bridge[_-]ports\s+(.*\s)?` + up + `(\s|$)`).Match(ifupdownText(o, o.path("etc/network/interfaces"), 0))
	case Netplan:
		block := yamlBlock(string(b), o.Bridge)
		return regexp.MustCompile(`(?s)interfaces:\s*(\[[^\]]*\b` + up + `\b|\n(\s*-\s*\S+\s*\n)*?\s*-\s*` + up + `\s*\n)`).MatchString(block + "\n")
	}
	return false
}

// yamlBlock returns the lines under the first "key:" line, as far as they
// are indented deeper than it.
func yamlBlock(text, key string) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != key+":" {
			continue
		}
		indent := len(l) - len(strings.TrimLeft(l, " "))
		var out []string
		for _, n := range lines[i+1:] {
			if strings.TrimSpace(n) != "" && len(n)-len(strings.TrimLeft(n, " ")) <= indent {
				break
			}
			out = append(out, n)
		}
		return strings.Join(out, "\n")
	}
	return ""
}

// ifupdownText returns /etc/network/interfaces with every file it sources.
func ifupdownText(o Options, f string, depth int) []byte {
	b, err := os.ReadFile(f)
	if err != nil || depth > 4 {
		return nil
	}
	out := append([]byte{}, b...)
	for _, line := range strings.Split(string(b), "\n") {
		fs := strings.Fields(line)
		if len(fs) < 2 || (fs[0] != "source" && fs[0] != "source-directory") {
			continue
		}
		for _, m := range ifupdownSources(o, fs[0], fs[1]) {
			out = append(append(out, '\n'), ifupdownText(o, m, depth+1)...)
		}
	}
	return out
}

// findManager returns the manager owning the uplink, in the order that
// decides: netplan writes NetworkManager's or networkd's configuration, so
// its files are the ones to edit.
func findManager(o Options, ifindex int) *Manager {
	up := o.Uplink
	for _, dir := range []string{"etc/netplan", "run/netplan", "lib/netplan"} {
		for _, f := range glob(o.path(dir), "*.yaml") {
			if m := netplanOwns(f, up); m != nil {
				return m
			}
		}
	}
	for _, dir := range []string{"etc/NetworkManager/system-connections", "run/NetworkManager/system-connections"} {
		for _, f := range glob(o.path(dir), "*") {
			if m := nmOwns(f, up); m != nil {
				return m
			}
		}
	}
	if ifindex > 0 {
		// NetworkManager's run-time device state: it manages devices it
		// has no keyfile for with an in-memory "Wired connection 1" (DHCP).
		f := o.path(filepath.Join("run/NetworkManager/devices", strconv.Itoa(ifindex)))
		if regexp.MustCompile(`(?m)^managed=true\s*$`).MatchString(readTrim(f)) {
			return &Manager{Name: NetworkManager, Evidence: f, DHCP: true, file: f}
		}
	}
	if ifindex > 0 {
		f := o.path(filepath.Join("run/systemd/netif/links", strconv.Itoa(ifindex)))
		if s := readTrim(f); strings.Contains(s, "NETWORK_FILE=") {
			m := &Manager{Name: Networkd, Evidence: f}
			if nf := regexp.MustCompile(`(?m)^NETWORK_FILE=(.+)$`).FindStringSubmatch(s); nf != nil {
				m.file = o.path(nf[1])
				if dm := networkdOwns(m.file, up); dm != nil {
					m.DHCP = dm.DHCP
				}
			}
			return m
		}
	}
	for _, dir := range []string{"etc/systemd/network", "run/systemd/network", "usr/lib/systemd/network", "lib/systemd/network"} {
		for _, f := range glob(o.path(dir), "*.network") {
			if m := networkdOwns(f, up); m != nil {
				return m
			}
		}
	}
	if m := ifupdownOwns(o, o.path("etc/network/interfaces"), up, 0); m != nil {
		return m
	}
	if f := o.path("run/network/ifstate." + up); readTrim(f) != "" {
		return &Manager{Name: Ifupdown, Evidence: f, file: f}
	}
	return nil
}

func glob(dir, pattern string) []string {
	m, _ := filepath.Glob(filepath.Join(dir, pattern))
	sort.Strings(m)
	return m
}

// netplanOwns reads a netplan YAML file: the uplink is owned when it is a
// key (a line "  eth0:") of the file.
func netplanOwns(f, up string) *Manager {
	b, err := os.ReadFile(f)
	if err != nil {
		return nil
	}
	re := regexp.MustCompile(`(?m)^(\s+)` + regexp.QuoteMeta(up) + `:\s*$`)
	loc := re.FindSubmatchIndex(b)
	if loc == nil {
		return nil
	}
	// The uplink's block: the lines indented deeper than its key.
	indent := loc[3] - loc[2]
	dhcp := false
	sc := bufio.NewScanner(strings.NewReader(string(b[loc[1]:])))
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		if len(line)-len(strings.TrimLeft(line, " ")) <= indent {
			break
		}
		if regexp.MustCompile(`^\s+dhcp4:\s*(true|yes|on)\s*$`).MatchString(line) {
			dhcp = true
		}
	}
	return &Manager{Name: Netplan, Evidence: f, DHCP: dhcp, file: f}
}

// nmOwns reads a NetworkManager keyfile: owned when interface-name is the
// uplink.
func nmOwns(f, up string) *Manager {
	b, err := os.ReadFile(f)
	if err != nil {
		return nil
	}
	s := string(b)
	if !regexp.MustCompile(`(?m)^interface-name=` + regexp.QuoteMeta(up) + `\s*$`).MatchString(s) {
		return nil
	}
	m := &Manager{Name: NetworkManager, Evidence: f, file: f}
	if _, v4, ok := strings.Cut(s, "[ipv4]"); ok {
		sec, _, _ := strings.Cut(v4, "\n[")
		m.DHCP = regexp.MustCompile(`(?m)^method=auto\s*$`).MatchString(sec)
	}
	return m
}

// networkdOwns reads a .network file: owned when a Name= of its [Match]
// section matches the uplink.
func networkdOwns(f, up string) *Manager {
	b, err := os.ReadFile(f)
	if err != nil {
		return nil
	}
	section, matched, dhcp := "", false, false
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Match]" && strings.HasPrefix(line, "Name="):
			for _, p := range strings.Fields(strings.TrimPrefix(line, "Name=")) {
				if ok, _ := filepath.Match(p, up); ok {
					matched = true
				}
			}
		case section == "[Network]" && strings.HasPrefix(line, "DHCP="):
			v := strings.TrimPrefix(line, "DHCP=")
			dhcp = v == "yes" || v == "ipv4" || v == "true"
		}
	}
	if !matched {
		return nil
	}
	return &Manager{Name: Networkd, Evidence: f, DHCP: dhcp, file: f}
}

// ifupdownOwns reads /etc/network/interfaces and what it sources.
func ifupdownOwns(o Options, f, up string, depth int) *Manager {
	b, err := os.ReadFile(f)
	if err != nil || depth > 4 {
		return nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		fs := strings.Fields(line)
		switch {
		case len(fs) >= 4 && fs[0] == "iface" && fs[1] == up && fs[2] == "inet":
			return &Manager{Name: Ifupdown, Evidence: f, DHCP: fs[3] == "dhcp", file: f}
		case len(fs) >= 2 && (fs[0] == "source" || fs[0] == "source-directory"):
			for _, m := range ifupdownSources(o, fs[0], fs[1]) {
				if r := ifupdownOwns(o, m, up, depth+1); r != nil {
					return r
				}
			}
		}
	}
	return nil
}

// addressing is what the host's own IP configuration is now, wherever it
// lives (the bridge after 'tapbridge up', the uplink before).
type addressing struct {
	MAC     string
	V4, V6  []string // CIDRs
	Gateway string
}

func liveAddressing(o Options) addressing {
	var a addressing
	for _, name := range []string{o.Bridge, o.Uplink} {
		l, err := netlink.LinkByName(name)
		if err != nil {
			continue
		}
		if a.MAC == "" && name == o.Uplink {
			a.MAC = l.Attrs().HardwareAddr.String()
		}
		addrs, err := nldump.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			continue
		}
		for _, ad := range addrs {
			if ad.Scope != int(netlink.SCOPE_UNIVERSE) {
				continue
			}
			if ad.IP.To4() != nil {
				a.V4 = append(a.V4, ad.IPNet.String())
			} else {
				a.V6 = append(a.V6, ad.IPNet.String())
			}
		}
		routes, _ := nldump.RouteList(l, netlink.FAMILY_V4)
		for _, r := range routes {
			if (r.Dst == nil || r.Dst.IP.Equal(net.IPv4zero)) && r.Gw != nil && a.Gateway == "" {
				a.Gateway = r.Gw.String()
			}
		}
	}
	return a
}

// checkManager finds the manager owning the uplink and writes the
// configuration that makes the bridge permanent in it.
func checkManager(o Options) (*Manager, Check) {
	c := Check{Name: "manager"}
	if o.Uplink == "" {
		c.Status, c.Message = Skip, "no uplink given (--uplink) and no journal names one"
		return nil, c
	}
	idx := 0
	if l, err := netlink.LinkByName(o.Uplink); err == nil {
		idx = l.Attrs().Index
	}
	m := findManager(o, idx)
	a := liveAddressing(o)
	if m == nil {
		m = &Manager{}
		m.Config = noneConfig(o)
		c.Status = OK
		c.Message = fmt.Sprintf("no network manager owns %q: tapbridge.service makes bridge %q permanent", o.Uplink, o.Bridge)
		return m, c
	}
	if m.Permanent = bridged(o, m); m.Permanent {
		c.Status = OK
		c.Message = fmt.Sprintf("%s makes %q a port of bridge %q (%s): the bridge is permanent; leave tapbridge.service's uplink unset", m.Name, o.Uplink, o.Bridge, m.Evidence)
		return m, c
	}
	m.Config = renderConfig(o, m, a)
	c.Status = Fail
	c.Message = fmt.Sprintf("%s owns %q (%s): it undoes 'tapbridge up' when it reconfigures %q", m.Name, o.Uplink, m.Evidence, o.Uplink)
	c.Fix = fmt.Sprintf("make bridge %q permanent in %s (below), or leave %q to tapbridge.service as shown below", o.Bridge, m.Name, o.Uplink)
	return m, c
}

func noneConfig(o Options) string {
	return fmt.Sprintf(`# Nothing else configures %[2]s: let tapbridge.service move it into %[1]s at boot.
# /etc/tapbridge/tapbridge.conf
{"cniVersion": "1.0.0", "name": "tapbridge", "type": "tapbridge", "bridge": %[1]q, "uplink": %[2]q}
sudo install -m 0644 conf/systemd/tapbridge.service /etc/systemd/system/
sudo systemctl enable --now tapbridge.service
`, o.Bridge, o.Uplink)
}

// renderConfig writes the manager's configuration of a bridge holding the
// uplink with the host's addressing: the uplink's MAC, STP off, the
// uplink's DHCP or its live static addresses.
func renderConfig(o Options, m *Manager, a addressing) string {
	br, up := o.Bridge, o.Uplink
	mac := a.MAC
	if mac == "" {
		mac = "MAC-OF-" + up
	}
	var b strings.Builder
	switch m.Name {
	case Netplan:
		fmt.Fprintf(&b, "# /etc/netplan/60-tapbridge.yaml: bridge %s holds %s (remove %s's addressing from %s), then: sudo netplan apply\n", br, up, up, m.Evidence)
		fmt.Fprintf(&b, "network:\n  version: 2\n  ethernets:\n    %s:\n      dhcp4: false\n      dhcp6: false\n      accept-ra: false\n  bridges:\n    %s:\n      interfaces: [%s]\n      macaddress: %s\n", up, br, up, mac)
		if m.DHCP {
			b.WriteString("      dhcp4: true\n")
		} else {
			if addrs := append(append([]string{}, a.V4...), a.V6...); len(addrs) > 0 {
				fmt.Fprintf(&b, "      addresses: [%s]\n", strings.Join(addrs, ", "))
			}
			if a.Gateway != "" {
				fmt.Fprintf(&b, "      routes:\n        - to: default\n          via: %s\n", a.Gateway)
			}
		}
		b.WriteString("      accept-ra: true\n      parameters:\n        stp: false\n        forward-delay: 0\n")
		fmt.Fprintf(&b, "\n# Or remove %[1]s from %[2]s (with renderer NetworkManager also list %[1]s and %[3]s in\n# unmanaged-devices), configure %[1]s in /etc/network/interfaces (%[4]s) and let\n# tapbridge.service move it at boot (docs/dhcp.md).\n", up, m.Evidence, br, ifaceStanza(up, m.DHCP))
	case NetworkManager:
		fmt.Fprintf(&b, "# NetworkManager: bridge %s holds %s (replaces the connection in %s)\n", br, up, m.Evidence)
		ip4 := "ipv4.method auto"
		if !m.DHCP && len(a.V4) > 0 {
			ip4 = fmt.Sprintf("ipv4.method manual ipv4.addresses %s", strings.Join(a.V4, ","))
			if a.Gateway != "" {
				ip4 += " ipv4.gateway " + a.Gateway
			}
		}
		fmt.Fprintf(&b, "sudo nmcli connection add type bridge con-name %[1]s ifname %[1]s bridge.stp no bridge.mac-address %[3]s %[4]s ipv6.method auto\n", br, up, mac, ip4)
		fmt.Fprintf(&b, "sudo nmcli connection add type ethernet con-name %[1]s-port-%[2]s ifname %[2]s master %[1]s slave-type bridge\n", br, up)
		fmt.Fprintf(&b, "sudo nmcli connection delete \"$(nmcli -g NAME,DEVICE connection show --active | sed -n 's/:%s$//p')\"; sudo nmcli connection up %s\n", up, br)
		fmt.Fprintf(&b, "# With STP off the bridge forwards at once, whatever bridge.forward-delay says.\n")
		fmt.Fprintf(&b, "\n# Or take %[1]s, %[2]s and the VM ports away from NetworkManager (its DHCP client runs\n# inside the daemon and cannot follow %[1]s into %[2]s), configure %[1]s in /etc/network/interfaces\n# (%[3]s) and let tapbridge.service move it at boot (docs/dhcp.md):\n# /etc/NetworkManager/conf.d/tapbridge.conf\n[keyfile]\nunmanaged-devices=interface-name:%[1]s;interface-name:%[2]s;interface-name:tbv*;interface-name:tap*\n", up, br, ifaceStanza(up, m.DHCP))
	case Networkd:
		fmt.Fprintf(&b, "# systemd-networkd: bridge %s holds %s (replaces %s), then: sudo networkctl reload\n", br, up, m.Evidence)
		fmt.Fprintf(&b, "# /etc/systemd/network/10-%s.netdev\n[NetDev]\nName=%s\nKind=bridge\nMACAddress=%s\n\n[Bridge]\nSTP=no\nForwardDelaySec=0\n\n", br, br, mac)
		fmt.Fprintf(&b, "# /etc/systemd/network/10-%s.network\n[Match]\nName=%s\n\n[Network]\nBridge=%s\n\n", up, up, br)
		fmt.Fprintf(&b, "# /etc/systemd/network/10-%s.network\n[Match]\nName=%s\n\n[Network]\nIPv6AcceptRA=yes\n", br, br)
		if m.DHCP {
			b.WriteString("DHCP=ipv4\n\n[DHCPv4]\n# br0 has eth0's MAC; networkd's default identifier derives from the interface\n# name, so it would ask for a lease of its own\nClientIdentifier=mac\n")
		} else {
			for _, ad := range append(append([]string{}, a.V4...), a.V6...) {
				fmt.Fprintf(&b, "Address=%s\n", ad)
			}
			if a.Gateway != "" {
				fmt.Fprintf(&b, "Gateway=%s\n", a.Gateway)
			}
		}
		fmt.Fprintf(&b, "\n# Or take %[1]s, %[2]s and the VM ports away from networkd (its DHCP client runs inside\n# the daemon and cannot follow %[1]s into %[2]s), configure %[1]s in /etc/network/interfaces\n# (%[3]s) and let tapbridge.service move it at boot (docs/dhcp.md):\n# /etc/systemd/network/05-tapbridge-unmanaged.network\n[Match]\nName=%[1]s %[2]s tbv* tap*\n\n[Link]\nUnmanaged=yes\n", up, br, ifaceStanza(up, m.DHCP))
	case Ifupdown:
		fmt.Fprintf(&b, "# ifupdown (needs bridge-utils): bridge %s holds %s; replaces the %s stanza in %s, then: sudo ifdown %s; sudo ifup %s %s\n", br, up, up, m.Evidence, up, up, br)
		fmt.Fprintf(&b, "auto %s\niface %s inet manual\n\nauto %s\n", up, up, br)
		if m.DHCP {
			fmt.Fprintf(&b, "iface %s inet dhcp\n", br)
		} else {
			fmt.Fprintf(&b, "iface %s inet static\n", br)
			if len(a.V4) > 0 {
				fmt.Fprintf(&b, "    address %s\n", a.V4[0])
			}
			if a.Gateway != "" {
				fmt.Fprintf(&b, "    gateway %s\n", a.Gateway)
			}
		}
		fmt.Fprintf(&b, "    hwaddress ether %s\n    bridge_ports %s\n    bridge_stp off\n    bridge_fd 0\n", mac, up)
		fmt.Fprintf(&b, "\n# Or keep %s's stanza and let tapbridge.service move it at boot: tapbridge hands\n# the DHCP client (dhclient) over to %s and back (docs/dhcp.md).\n", up, br)
	}
	return b.String()
}

// ifaceStanza is the ifupdown stanza that configures the uplink the way
// the manager did, for tapbridge.service to move.
func ifaceStanza(up string, dhcp bool) string {
	if dhcp {
		return fmt.Sprintf("auto %s / iface %s inet dhcp", up, up)
	}
	return fmt.Sprintf("auto %s / iface %s inet static, with its address and gateway", up, up)
}

// ifupdownSources are the files an interfaces(5) "source" or
// "source-directory" line (kind) names with arg, relative paths taken
// from /etc/network.
func ifupdownSources(o Options, kind, arg string) []string {
	pat := arg
	if kind == "source-directory" {
		pat = filepath.Join(pat, "*")
	}
	if !filepath.IsAbs(pat) {
		pat = filepath.Join("/etc/network", pat)
	}
	matches, _ := filepath.Glob(o.path(pat))
	return matches
}
