package cli

import (
	"strings"

	"github.com/spf13/pflag"

	"github.com/tapbridge/tapbridge/internal/config"
)

// policyFlags are the port-policy flags of commands that attach a VM port;
// each overrides the configuration key of the same meaning.
type policyFlags struct {
	mac, ips                                        string
	macSpoof, ipSpoof, dhcpGuard, raGuard, isolated bool
	bpduGuard                                       bool
	vlan                                            int
}

func (p *policyFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&p.mac, "mac", "", "the guest NIC's MAC (\"mac\"; needed by --mac-spoof-check)")
	fs.StringVar(&p.ips, "ips", "", "the guest's allowed addresses, comma-separated (\"ips\"; needed by --ip-spoof-check)")
	fs.BoolVar(&p.macSpoof, "mac-spoof-check", false, "drop frames whose source MAC is not the guest's (\"macSpoofCheck\")")
	fs.BoolVar(&p.ipSpoof, "ip-spoof-check", false, "drop packets and ARP/ND from addresses not in --ips (\"ipSpoofCheck\")")
	fs.BoolVar(&p.dhcpGuard, "dhcp-guard", true, "drop DHCP server replies from the VM (\"dhcpGuard\")")
	fs.BoolVar(&p.raGuard, "ra-guard", true, "drop IPv6 router advertisements from the VM (\"raGuard\")")
	fs.BoolVar(&p.isolated, "isolated", false, "isolate the port from other isolated ports (\"isolated\")")
	fs.IntVar(&p.vlan, "vlan", 0, "access VLAN of the port, untagged (\"vlan\")")
	fs.BoolVar(&p.bpduGuard, "bpdu-guard", true, "BPDU guard and root block on the port (\"bpduGuard\")")
}

// apply copies the flags the user set onto c.
func (p *policyFlags) apply(fs *pflag.FlagSet, c *config.Conf) {
	set := func(name string, f func()) {
		if fs.Changed(name) {
			f()
		}
	}
	set("mac", func() { c.MAC = p.mac })
	set("ips", func() { c.IPs = strings.Split(p.ips, ",") })
	set("mac-spoof-check", func() { c.MACSpoofCheck = p.macSpoof })
	set("ip-spoof-check", func() { c.IPSpoofCheck = p.ipSpoof })
	set("dhcp-guard", func() { c.DHCPGuard = &p.dhcpGuard })
	set("ra-guard", func() { c.RAGuard = &p.raGuard })
	set("isolated", func() { c.Isolated = p.isolated })
	set("vlan", func() { c.VLAN = p.vlan })
	set("bpdu-guard", func() { c.BPDUGuard = &p.bpduGuard })
}

// changed reports whether any policy flag was given.
func (p *policyFlags) changed(fs *pflag.FlagSet) bool {
	for _, n := range []string{"mac", "ips", "mac-spoof-check", "ip-spoof-check", "dhcp-guard", "ra-guard", "isolated", "vlan", "bpdu-guard"} {
		if fs.Changed(n) {
			return true
		}
	}
	return false
}
