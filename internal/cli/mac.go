package cli

import (
	"fmt"
	"io"

	"github.com/tapbridge/tapbridge/internal/mac"
)

func macCommand() command {
	c := command{
		name:    "mac",
		summary: "print a locally administered unicast MAC for a VM",
		usage:   "[NAME]",
		help: `Without NAME, prints a random locally administered unicast MAC. With NAME,
prints the MAC derived from it: the same every time, so a VM given
-device virtio-net-pci,mac=$(tapbridge mac NAME) keeps its DHCP lease (its
public IP) across restarts.

Examples:
  tapbridge mac
  tapbridge mac customer42-vm1
`,
	}
	c.run = func(args []string, out io.Writer) error {
		fs := flagSet(&c, out)
		if err := parse(fs, args); err != nil {
			return handled(err)
		}
		switch fs.NArg() {
		case 0:
			m, err := mac.Random()
			if err != nil {
				return err
			}
			fmt.Fprintln(out, m)
		case 1:
			if fs.Arg(0) == "" {
				return fmt.Errorf("%w: mac: NAME must not be empty", ErrUsage)
			}
			fmt.Fprintln(out, mac.FromName(fs.Arg(0)))
		default:
			return fmt.Errorf("%w: mac takes at most one NAME", ErrUsage)
		}
		return nil
	}
	return c
}
