package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/policy"
	"github.com/tapbridge/tapbridge/internal/vmport"
)

func checkCommand() command {
	c := command{
		name:    "check",
		summary: "validate a configuration and print the policy a VM port gets",
		usage:   "[--config FILE] [--env] [policy flags]",
		help: `Validates a configuration file (the tapbridge CNI schema) the way every front
end reads it, and prints the effective port policy of a VM attached with it:
each guard on or off, with the defaults filled in. An unknown or misspelled
key is an error that names the nearest known key. Nothing on the host is
read or changed.

The per-VM values a front end adds (the guest's MAC and addresses, an access
VLAN, isolation) can be given as flags, or with --env from the environment
as qemu-ifup reads it (TAPBRIDGE_MAC, TAPBRIDGE_IPS, TAPBRIDGE_VLAN,
TAPBRIDGE_ISOLATED, TAPBRIDGE_ROUTED, TAPBRIDGE_BRIDGE; an unknown TAPBRIDGE_ variable is an
error). Without them, a guard that needs one is reported as such.

Exit status: 0 when the configuration is valid, 1 when it is not.

Examples:
  tapbridge check --config /etc/tapbridge/tapbridge.conf
  tapbridge check -c /etc/cni/net.d/10-tapbridge.conflist.d/tapbridge.conf --mac 52:54:00:12:34:56 --ips 192.0.2.50
  TAPBRIDGE_MAC=52:54:00:12:34:56 tapbridge check -c /etc/tapbridge/tapbridge.conf --env
`,
	}
	c.run = func(args []string, out io.Writer) error {
		fs := flagSet(&c, out)
		var cf confFlags
		cf.register(fs)
		useEnv := fs.Bool("env", false, "apply the per-VM TAPBRIDGE_ variables of the environment, as qemu-ifup does")
		var pf policyFlags
		pf.register(fs)
		if err := parse(fs, args); err != nil {
			return handled(err)
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("%w: check takes no arguments, got %q", ErrUsage, strings.Join(fs.Args(), " "))
		}
		conf, err := cf.load(fs)
		if err != nil {
			return err
		}
		if *useEnv {
			if err := config.CheckEnv(os.Environ()); err != nil {
				return err
			}
			if err := conf.ApplyEnv(os.Getenv); err != nil {
				return err
			}
		}
		pf.apply(fs, conf)
		if err := conf.Validate(); err != nil {
			return err
		}
		src := "defaults (no --config)"
		if cf.path != "" {
			src = cf.path
		}
		fmt.Fprintf(out, "%s: valid\n", src)
		uplink := conf.Uplink
		if uplink == "" {
			uplink = "none"
		}
		fmt.Fprintf(out, "bridge %s, uplink %s, CNI mode %s\n", conf.Bridge, uplink, conf.Mode)
		if conf.UplinkMACs.Enabled() {
			fmt.Fprintf(out, "uplinkMACs: only the host's, the listed and the VMs' known MACs leave through %s\n", uplink)
		}
		if conf.Routed {
			fmt.Fprintf(out, "routed: no bridge; the VM's addresses are routed to its port (guest gateway 169.254.0.1, fe80::1) and answered for on %s; the source-address check is always on\n", uplink)
			if ips, _ := config.ParseIPs("ips", conf.IPs); len(ips) == 0 {
				fmt.Fprintf(out, "a routed VM port cannot be attached without its addresses (\"ips\", --ips, %s or IPAM)\n", config.EnvIPs)
			}
		}
		spec, err := vmport.Spec(conf, vmport.Port{})
		if err != nil {
			fmt.Fprintf(out, "a VM port cannot be attached without more: %v\n", err)
			return nil
		}
		spec.IPSpoofCheck = spec.IPSpoofCheck || conf.Routed
		printPolicy(out, conf, spec)
		return nil
	}
	return c
}

// printPolicy prints the effective policy of a VM port, one guard a line.
func printPolicy(out io.Writer, c *config.Conf, s policy.Spec) {
	onOff := func(b bool) string {
		if b {
			return "on"
		}
		return "off"
	}
	dflt := func(p *bool) string {
		if p == nil {
			return " (default)"
		}
		return ""
	}
	guestMAC, ips := "unknown", "unknown"
	if s.MAC != nil {
		guestMAC = s.MAC.String()
	}
	if len(s.IPs) > 0 {
		var a []string
		for _, ip := range s.IPs {
			a = append(a, ip.String())
		}
		ips = strings.Join(a, ",")
	}
	vlan := "none"
	if s.VLAN != 0 {
		vlan = fmt.Sprint(s.VLAN)
	}
	fmt.Fprintf(out, "port policy of a VM port (guest MAC %s, addresses %s):\n", guestMAC, ips)
	fmt.Fprintf(out, "  %-14s %s\n", "macSpoofCheck", onOff(s.MACSpoofCheck))
	fmt.Fprintf(out, "  %-14s %s\n", "ipSpoofCheck", onOff(s.IPSpoofCheck))
	fmt.Fprintf(out, "  %-14s %s%s\n", "dhcpGuard", onOff(s.DHCPGuard), dflt(c.DHCPGuard))
	fmt.Fprintf(out, "  %-14s %s%s\n", "raGuard", onOff(s.RAGuard), dflt(c.RAGuard))
	fmt.Fprintf(out, "  %-14s %s%s\n", "bpduGuard", onOff(s.BPDUGuard), dflt(c.BPDUGuard))
	fmt.Fprintf(out, "  %-14s %s\n", "isolated", onOff(s.Isolated))
	fmt.Fprintf(out, "  %-14s %s\n", "vlan", vlan)
}
