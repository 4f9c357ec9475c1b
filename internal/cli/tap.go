package cli

import (
	"fmt"
	"io"
)

// tapCommand is filled in by the QEMU front end issue.
func tapCommand() command {
	c := command{name: "tap", summary: "add or delete a persistent TAP on the bridge", usage: "add|del NAME [flags]"}
	c.run = func(args []string, out io.Writer) error {
		return fmt.Errorf("tap: not implemented yet")
	}
	return c
}
