package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/event"
	"github.com/tapbridge/tapbridge/internal/qemuhook"
)

func tapCommand() command {
	c := command{
		name:    "tap",
		summary: "add or delete a persistent TAP on the bridge (for QEMU with script=no)",
		usage:   "add|del NAME [flags]",
		words:   []string{"add", "del"},
		help: `'tap add' creates the persistent TAP NAME, owned by --owner/--group so that a
QEMU running as that user can open it, and attaches it to the bridge exactly
as qemu-ifup does (bridge and uplink ensured, the bridge's MTU, a front
port whose MAC only root can change, the port policy of the configuration,
up). 'tap del' detaches it, removes its front and port policy and deletes
it; it refuses a TAP a running QEMU holds. Both are idempotent; a TAP left by a crashed QEMU is
reused. No 'ip' command is run.

Examples:
  tapbridge tap add vm1-tap --owner qemu
  qemu-system-x86_64 ... -netdev tap,id=n0,ifname=vm1-tap,script=no,downscript=no \
      -device virtio-net-pci,netdev=n0,mac=$(tapbridge mac vm1)    # as user qemu
  tapbridge tap del vm1-tap
  tapbridge tap add vm2-tap --config /etc/tapbridge/tapbridge.conf --group kvm --vnet-hdr
  tapbridge tap add vm3-tap --owner alice --mac $(tapbridge mac vm3) --mac-spoof-check \
      --ips 192.0.2.33 --ip-spoof-check --isolated
`,
	}
	c.run = func(args []string, out io.Writer) error {
		fs := flagSet(&c, out)
		var cf confFlags
		cf.register(fs)
		owner := fs.String("owner", "", "user (name or uid) allowed to open the TAP (tap add)")
		group := fs.String("group", "", "group (name or gid) allowed to open the TAP (tap add)")
		multiQueue := fs.Bool("multi-queue", false, "create a multi-queue TAP (QEMU queues=N) (tap add)")
		vnetHdr := fs.Bool("vnet-hdr", false, "create the TAP with IFF_VNET_HDR (QEMU vnet_hdr=on) (tap add)")
		uplink := fs.StringP("uplink", "u", "", "the physical NIC the bridge holds (\"uplink\") (tap add)")
		uplinkVLANs := fs.IntSlice("uplink-vlans", nil, "VLANs the uplink carries tagged, comma-separated (\"uplinkVlans\"; needs --uplink) (tap add)")
		var pf policyFlags
		pf.register(fs)
		if err := parse(fs, args); err != nil {
			return handled(err)
		}
		if fs.NArg() != 2 || (fs.Arg(0) != "add" && fs.Arg(0) != "del") {
			return fmt.Errorf("%w: want 'tap add NAME' or 'tap del NAME', got %q; run 'tapbridge tap --help'", ErrUsage, strings.Join(fs.Args(), " "))
		}
		verb, name := fs.Arg(0), fs.Arg(1)
		conf, err := cf.load(fs)
		if err != nil {
			return err
		}
		if verb == "del" {
			for _, f := range []string{"owner", "group", "multi-queue", "vnet-hdr", "uplink", "uplink-vlans"} {
				if fs.Changed(f) {
					return fmt.Errorf("%w: --%s is for 'tap add'", ErrUsage, f)
				}
			}
			if pf.changed(fs) {
				return fmt.Errorf("%w: the port policy flags are for 'tap add'", ErrUsage)
			}
		}
		pf.apply(fs, conf)
		if fs.Changed("owner") {
			conf.Owner = &config.ID{Name: *owner, Value: -1}
		}
		if fs.Changed("group") {
			conf.Group = &config.ID{Name: *group, Value: -1}
		}
		if fs.Changed("multi-queue") {
			conf.MultiQueue = *multiQueue
		}
		if fs.Changed("vnet-hdr") {
			conf.VnetHdr = *vnetHdr
		}
		if fs.Changed("uplink") {
			conf.Uplink = *uplink
		}
		if fs.Changed("uplink-vlans") {
			conf.UplinkVLANs = *uplinkVLANs
		}
		if err := conf.Validate(); err != nil {
			return err
		}
		if verb == "del" {
			res, err := qemuhook.DeleteTAP(conf, name)
			logEvent(event.Event{Action: "tap-del", Bridge: res.Bridge, Port: name}, res.Changed, err)
			if err != nil {
				return fmt.Errorf("tap del %q: %w", name, err)
			}
			if res.Changed {
				fmt.Fprintf(out, "%s: detached from %s and deleted\n", name, res.Bridge)
			} else {
				fmt.Fprintf(out, "%s: does not exist, nothing to do\n", name)
			}
			return nil
		}
		res, err := qemuhook.AddTAP(conf, name)
		logEvent(event.Event{Action: "tap-add", Bridge: conf.Bridge, Port: name, MAC: conf.MAC}, res.Changed, err)
		if err != nil {
			return fmt.Errorf("tap add %q on bridge %q: %w", name, conf.Bridge, err)
		}
		state := "attached to"
		if !res.Changed {
			state = "already on"
		}
		fmt.Fprintf(out, "%s: %s bridge %s through port %s (owner %s, group %s, MTU %d, port MAC %s); QEMU: -netdev tap,id=n0,ifname=%s,script=no,downscript=no\n",
			name, state, res.Bridge, res.Port, idName(conf.Owner), idName(conf.Group), res.MTU, res.MAC, name)
		return nil
	}
	return c
}

func idName(id *config.ID) string {
	if id == nil {
		return "none"
	}
	if fmt.Sprint(id.Value) == id.Name {
		return id.Name
	}
	return fmt.Sprintf("%s=%d", id.Name, id.Value)
}
