package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tapbridge/tapbridge/internal/cniplugin"
	"github.com/tapbridge/tapbridge/internal/event"
	"github.com/tapbridge/tapbridge/internal/vmport"
)

func gcCommand() command {
	c := command{
		name:    "gc",
		summary: "remove the port policies of VM ports that no longer exist",
		usage:   "",
		help: `Removes the nftables policy (set elements) of every VM port that is gone or
no longer on a bridge. They are left behind when a port vanishes without a
CNI DEL or a qemu-ifdown: the TAP of an unprivileged QEMU (-netdev bridge
runs no down script; a later helper run that gets the same tap name takes the
port over) or of a QEMU killed with SIGKILL. It also removes every CNI
attachment whose sandbox network namespace is gone (its host links, port
policy, IPAM lease and record), which runtimes that never send DEL leave
behind: ctr run -d --cni. Idempotent; safe to run from a timer.

Examples:
  tapbridge gc
`,
	}
	c.run = func(args []string, out io.Writer) error {
		fs := flagSet(&c, out)
		if err := parse(fs, args); err != nil {
			return handled(err)
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("%w: gc takes no arguments, got %q", ErrUsage, strings.Join(fs.Args(), " "))
		}
		// Attachments first: their ports' policies go with them.
		collected, cerr := cniplugin.CollectVanished()
		if len(collected) > 0 {
			fmt.Fprintf(out, "removed %d CNI attachments whose sandbox is gone: %s\n", len(collected), strings.Join(collected, " "))
		}
		pruned, err := vmport.Prune()
		err = errors.Join(cerr, err)
		logEvent(event.Event{Action: "gc", Detail: strings.Join(append(collected, pruned...), " ")}, len(pruned)+len(collected) > 0, err)
		if len(pruned) > 0 {
			fmt.Fprintf(out, "removed the policies of %s: %s\n", plural(len(pruned), "vanished port"), strings.Join(pruned, " "))
		}
		if err != nil {
			return err
		}
		if len(pruned) == 0 && len(collected) == 0 {
			fmt.Fprintln(out, "no stale port policies or CNI attachments; nothing changed")
		}
		return nil
	}
	return c
}

// plural is "1 vanished port", "2 vanished ports".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
