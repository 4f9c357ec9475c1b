package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/tapbridge/tapbridge/internal/cniplugin"
	"github.com/tapbridge/tapbridge/internal/uplink"
	"github.com/tapbridge/tapbridge/internal/vmport"
)

// PortsSchemaVersion is the "schemaVersion" of `ports --json`
// (docs/json.md): raised when a field changes meaning or goes away.
const PortsSchemaVersion = 1

// portJSON is a port with the CNI attachment that owns it, if any.
type portJSON struct {
	vmport.PortInfo
	VM string `json:"vm,omitempty"` // the CNI attachment: NETWORK/CONTAINERID:IFNAME
}

func portsCommand() command {
	c := command{
		name:    "ports",
		summary: "list the VM ports with their owner, guest, guards and drop counters",
		usage:   "[--bridge br0] [--json]",
		help: `Lists every port of the bridge and every routed VM port: its kind (uplink,
vm-tap: the front of a VM's TAP, cni-veth, routed-tap, tap: a TAP on the
bridge itself), the TAP and the uid allowed to open it, the CNI attachment
(network/container:ifname), the guest MAC and addresses the policy knows,
the guards on, isolation, and how many frames each guard dropped. A port
with no policy, a TAP on the bridge itself and a front whose MAC was changed
get a warning, and the command exits 1. Nothing is changed.

Examples:
  tapbridge ports
  tapbridge ports --bridge br1 --json | jq '.ports[] | select(.drops.dhcp > 0)'
`,
	}
	c.run = func(args []string, out io.Writer) error {
		fs := flagSet(&c, out)
		var cf confFlags
		cf.register(fs)
		asJSON := fs.Bool("json", false, "print JSON (schemaVersion "+fmt.Sprint(PortsSchemaVersion)+", docs/json.md)")
		if err := parse(fs, args); err != nil {
			return handled(err)
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("%w: ports takes no arguments, got %q", ErrUsage, strings.Join(fs.Args(), " "))
		}
		conf, err := cf.load(fs)
		if err != nil {
			return err
		}
		if err := conf.Validate(); err != nil {
			return err
		}
		up := conf.Uplink
		if st, err := uplink.GetStatus(conf.Bridge); err == nil && st.Uplink != "" {
			up = st.Uplink
		}
		infos, err := vmport.Ports(conf.Bridge, up)
		if err != nil {
			return err
		}
		att := cniplugin.Attachments()
		ports := make([]portJSON, len(infos))
		warned := 0
		for i, p := range infos {
			ports[i].PortInfo = p
			key := p.Name
			if p.TAP != "" && p.Kind != vmport.KindCNIVeth {
				key = p.TAP
			}
			if a, ok := att[key]; ok {
				ports[i].VM = a.Network + "/" + a.ContainerID + ":" + a.IfName
			}
			if len(p.Warnings) > 0 {
				warned++
			}
		}
		if *asJSON {
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			if err := enc.Encode(struct {
				SchemaVersion int        `json:"schemaVersion"`
				Bridge        string     `json:"bridge"`
				Ports         []portJSON `json:"ports"`
			}{PortsSchemaVersion, conf.Bridge, ports}); err != nil {
				return err
			}
		} else {
			printPorts(out, conf.Bridge, ports)
		}
		if warned > 0 {
			return fmt.Errorf("bridge %q: %d port(s) with a warning", conf.Bridge, warned)
		}
		return nil
	}
	return c
}

func printPorts(out io.Writer, br string, ports []portJSON) {
	fmt.Fprintf(out, "bridge %s: %d ports\n", br, len(ports))
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "PORT\tKIND\tTAP\tOWNER\tVM\tGUEST MAC\tADDRESSES\tGUARDS\tISOLATED\tDROPS")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, p := range ports {
		owner := ""
		if p.Owner != nil {
			owner = fmt.Sprint(*p.Owner)
		}
		var ips []string
		for _, a := range p.IPs {
			ips = append(ips, a.String())
		}
		var drops []string
		for g, n := range p.Drops {
			if n > 0 {
				drops = append(drops, fmt.Sprintf("%s=%d", g, n))
			}
		}
		sort.Strings(drops)
		iso := "no"
		if p.Isolated {
			iso = "yes"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Kind, dash(p.TAP), dash(owner), dash(p.VM), dash(p.GuestMAC),
			dash(strings.Join(ips, ",")), dash(strings.Join(p.Guards, ",")), iso, dash(strings.Join(drops, " ")))
	}
	w.Flush()
	for _, p := range ports {
		for _, m := range p.Warnings {
			fmt.Fprintf(out, "warning: %s: %s\n", p.Name, m)
		}
	}
}
