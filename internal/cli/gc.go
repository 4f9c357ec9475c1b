package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/tapbridge/tapbridge/internal/vmport"
)

func gcCommand() command {
	c := command{
		name:    "gc",
		summary: "remove the port policies of VM ports that no longer exist",
		usage:   "",
		help: `Removes the nftables chain and map element of every VM port that is gone or
no longer on a bridge. They are left behind when a port vanishes without a
CNI DEL or a qemu-ifdown: the TAP of an unprivileged QEMU (-netdev bridge
runs no down script; a later helper run that gets the same tap name takes the
port over) or of a QEMU
killed with SIGKILL. Idempotent; safe to run from a timer.

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
		pruned, err := vmport.Prune()
		if err != nil {
			return err
		}
		if len(pruned) == 0 {
			fmt.Fprintln(out, "no stale port policies; nothing changed")
			return nil
		}
		fmt.Fprintf(out, "removed the policies of %d vanished ports: %s\n", len(pruned), strings.Join(pruned, " "))
		return nil
	}
	return c
}
