package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/doctor"
)

func doctorCommand() command {
	c := command{
		name:    "doctor",
		summary: "check the host for what breaks or undoes the bridge, one line and fix each",
		usage:   "[--bridge br0] [--uplink eth0] [--json]",
		help: `Finds which network manager owns the uplink (netplan, NetworkManager,
systemd-networkd, ifupdown) and prints the configuration that makes the
bridge permanent in it, or how to leave the uplink to tapbridge.service.
Then checks, one line each with its fix: br_netfilter with a FORWARD chain
whose policy is drop, a Wi-Fi uplink, STP on the bridge, a bridge MAC that
is not the uplink's, ports whose MTU is not the bridge's, /dev/net/tun and
/dev/vhost-net, the bridge helper's setuid bit or capability and the state
directory's modes, a /etc/qemu-ifup that is not tapbridge's, VM ports
without a policy, policies without a port, a journal that does not match
the live state and CNI records of vanished sandboxes. Changes nothing.
Exit status 1 when a check fails.

Examples:
  tapbridge doctor
  tapbridge doctor --bridge br0 --uplink enp3s0
  tapbridge doctor --config /etc/tapbridge/tapbridge.conf --json
`,
	}
	c.run = func(args []string, out io.Writer) error {
		fs := flagSet(&c, out)
		var cf confFlags
		cf.register(fs)
		up := fs.StringP("uplink", "u", "", "the uplink (default: the configuration's, else the journal's)")
		helper := fs.String("helper", doctor.DefaultHelper, "the installed bridge helper")
		group := fs.String("qemu-group", "kvm", "the group of the users who run QEMU")
		root := fs.String("root", "/", "read /etc, /run, /sys, /dev and /proc/sys under this directory (for tests and chroots)")
		asJSON := fs.Bool("json", false, "print the report as JSON")
		if err := parse(fs, args); err != nil {
			return handled(err)
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("%w: doctor takes no arguments, got %q", ErrUsage, strings.Join(fs.Args(), " "))
		}
		conf, err := cf.load(fs)
		if err != nil {
			return err
		}
		if fs.Changed("uplink") {
			conf.Uplink = *up
		}
		if conf.Bridge == "" {
			conf.Bridge = config.DefaultBridge
		}
		r := doctor.Run(doctor.Options{Root: *root, Bridge: conf.Bridge, Uplink: conf.Uplink, Helper: *helper, QEMUGroup: *group})
		if *asJSON {
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			if err := enc.Encode(r); err != nil {
				return err
			}
		} else {
			r.Print(out)
		}
		if n := r.Failed(); n > 0 {
			return fmt.Errorf("doctor: %d check(s) failed", n)
		}
		return nil
	}
	return c
}
