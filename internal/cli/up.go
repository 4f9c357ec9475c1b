package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tapbridge/tapbridge/internal/event"
	"github.com/tapbridge/tapbridge/internal/state"
	"github.com/tapbridge/tapbridge/internal/uplink"
)

func upCommand() command {
	c := command{
		name:    "up",
		summary: "move the uplink and its addresses, routes and rules into the bridge",
		usage:   "[--bridge br0] --uplink eth0 [flags]",
		help: `Creates the bridge if missing (with the uplink's MAC and MTU, STP off, forward
delay 0), then moves the uplink's IPv4 and global IPv6 addresses, its routes
in every table and the ip rules naming it onto the bridge, enslaves the
uplink, and only then removes the addresses from it: the host never loses
connectivity. A snapshot is written to ` + state.Path("uplink", "BRIDGE.json") + `
first; if the default gateway does not answer on the bridge afterwards, the
change is rolled back. Idempotent; after a crash, a re-run finishes the job.
A journal is acted on only when it describes this host (network namespace,
boot, uplink device) and its snapshot still matches what is live; otherwise
it is set aside (renamed BRIDGE.json.stale-TIME, kept for inspection) and a
fresh snapshot of what is live now is taken.

Examples:
  tapbridge up --uplink eth0
  tapbridge up --bridge br0 --uplink enp3s0 --probe-timeout 10s
  tapbridge up --config /etc/tapbridge/tapbridge.conf
`,
	}
	c.run = func(args []string, out io.Writer) error {
		fs := flagSet(&c, out)
		var cf confFlags
		cf.register(fs)
		up := fs.StringP("uplink", "u", "", "the physical NIC to enslave (required here or in --config)")
		mtu := fs.Int("mtu", 0, "MTU of a new bridge (default: the uplink's)")
		probe := fs.Duration("probe-timeout", uplink.DefaultProbeTimeout, "how long the default gateway may take to answer on the bridge")
		noProbe := fs.Bool("no-probe", false, "do not probe the default gateway (no rollback on an unreachable gateway)")
		if err := parse(fs, args); err != nil {
			return handled(err)
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("%w: up takes no arguments, got %q", ErrUsage, strings.Join(fs.Args(), " "))
		}
		conf, err := cf.load(fs)
		if err != nil {
			return err
		}
		if fs.Changed("uplink") {
			conf.Uplink = *up
		}
		if fs.Changed("mtu") {
			conf.MTU = *mtu
		}
		if err := conf.Validate(); err != nil {
			return err
		}
		if conf.Uplink == "" {
			return fmt.Errorf("%w: up needs --uplink (or \"uplink\" in --config)", ErrUsage)
		}
		timeout := *probe
		if !fs.Changed("probe-timeout") && conf.ProbeTimeout != "" {
			timeout, _ = conf.ProbeDuration()
		}
		res, err := uplink.Up(uplink.Options{
			Bridge: conf.Bridge, Uplink: conf.Uplink, MTU: conf.MTU,
			ProbeTimeout: timeout, NoProbe: *noProbe, Log: logTo(out),
		})
		logEvent(event.Event{Action: "up", Bridge: conf.Bridge, Uplink: conf.Uplink, Detail: res.Message}, res.Changed, err)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, res.Message)
		return nil
	}
	return c
}

func downCommand() command {
	c := command{
		name:    "down",
		summary: "give the uplink back its addresses, routes and rules",
		usage:   "[--bridge br0] [--force]",
		help: `Moves back onto the uplink what is live on the bridge now: its addresses
(with their remaining lifetimes), its routes in every table and the ip rules
naming it, including those added after 'up'; releases the uplink, and
deletes the bridge if tapbridge created it and no other port remains. It
says what differs from the snapshot 'up' took. It refuses while VM ports
remain on the bridge (they would lose the LAN) unless --force, and refuses
a journal that does not describe this host (another network namespace, an
earlier boot, another uplink device): that journal is set aside as
/run/tapbridge/uplink/BRIDGE.json.stale-TIME. Idempotent.

Examples:
  tapbridge down
  tapbridge down --bridge br0
  tapbridge down --force        # VMs on br0 lose the LAN
`,
	}
	c.run = func(args []string, out io.Writer) error {
		fs := flagSet(&c, out)
		var cf confFlags
		cf.register(fs)
		force := fs.Bool("force", false, "go ahead even though VM ports remain on the bridge")
		if err := parse(fs, args); err != nil {
			return handled(err)
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("%w: down takes no arguments, got %q", ErrUsage, strings.Join(fs.Args(), " "))
		}
		conf, err := cf.load(fs)
		if err != nil {
			return err
		}
		if err := conf.Validate(); err != nil {
			return err
		}
		res, err := uplink.Down(uplink.Options{Bridge: conf.Bridge, Force: *force, Log: logTo(out)})
		logEvent(event.Event{Action: "down", Bridge: conf.Bridge, Detail: res.Message}, res.Changed, err)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, res.Message)
		return nil
	}
	return c
}

func statusCommand() command {
	c := command{
		name:    "status",
		summary: "show the bridge, its uplink, addresses and ports, and the journal",
		usage:   "[--bridge br0] [--json]",
		help: `Shows the bridge, its uplink and addresses, its ports, and whether the
journal matches the live state. Exit status 1 when they disagree.

Examples:
  tapbridge status
  tapbridge status --bridge br0 --json
`,
	}
	c.run = func(args []string, out io.Writer) error {
		fs := flagSet(&c, out)
		var cf confFlags
		cf.register(fs)
		asJSON := fs.Bool("json", false, "print JSON")
		if err := parse(fs, args); err != nil {
			return handled(err)
		}
		conf, err := cf.load(fs)
		if err != nil {
			return err
		}
		if err := conf.Validate(); err != nil {
			return err
		}
		st, err := uplink.GetStatus(conf.Bridge)
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			if err := enc.Encode(statusJSON{SchemaVersion: StatusSchemaVersion, Status: st}); err != nil {
				return err
			}
		} else {
			printStatus(out, st)
		}
		if !st.Consistent {
			return fmt.Errorf("bridge %q: %d problem(s): %s", st.Bridge, len(st.Problems), strings.Join(st.Problems, "; "))
		}
		return nil
	}
	return c
}

// StatusSchemaVersion is the "schemaVersion" of `status --json`
// (docs/json.md). It changes when a field is removed or changes meaning;
// new fields may appear without a change.
const StatusSchemaVersion = 1

// statusJSON is the document `status --json` prints.
type statusJSON struct {
	SchemaVersion int `json:"schemaVersion"`
	*uplink.Status
}

func printStatus(out io.Writer, st *uplink.Status) {
	if !st.Exists {
		fmt.Fprintf(out, "bridge %s: does not exist\n", st.Bridge)
	} else {
		state := "down"
		if st.Up {
			state = "up"
		}
		fmt.Fprintf(out, "bridge %s: %s, MAC %s, MTU %d\n", st.Bridge, state, st.MAC, st.MTU)
		fmt.Fprintf(out, "  addresses: %s\n", orNone(strings.Join(st.Addrs, " ")))
	}
	if st.Uplink != "" {
		fmt.Fprintf(out, "  uplink:    %s (journal %s, %s)\n", st.Uplink, st.Journal.Path, st.Journal.Phase)
	} else {
		fmt.Fprintf(out, "  uplink:    none managed by tapbridge\n")
	}
	if st.Exists {
		fmt.Fprintf(out, "  ports:     %d\n", len(st.Ports))
		for _, p := range st.Ports {
			state := "down"
			if p.Up {
				state = "up"
			}
			fmt.Fprintf(out, "    %-15s %-8s %s MTU %d %s\n", p.Name, p.Type, p.MAC, p.MTU, state)
		}
	}
	for _, p := range st.SetAside {
		fmt.Fprintf(out, "  set aside: %s (a journal that did not describe this host)\n", p)
	}
	if st.Consistent {
		fmt.Fprintf(out, "  state:     consistent\n")
	} else {
		for _, p := range st.Problems {
			fmt.Fprintf(out, "  problem:   %s\n", p)
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func logTo(out io.Writer) func(string, ...any) {
	start := time.Now()
	return func(format string, args ...any) {
		fmt.Fprintf(out, "[%6.1fms] %s\n", float64(time.Since(start).Microseconds())/1000, fmt.Sprintf(format, args...))
	}
}
