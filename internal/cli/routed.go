package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/tapbridge/tapbridge/internal/vmport"
)

// rehomeRouted follows the uplink with the routed VMs after `up` or
// `down` (docs/routed.md): their proxy entries and forwarding go where the
// uplink's addresses now are.
func rehomeRouted(out io.Writer) error {
	moved, err := vmport.RehomeRouted()
	if len(moved) > 0 {
		fmt.Fprintf(out, "routed ports moved with the uplink's addresses: %s\n", strings.Join(moved, " "))
	}
	if err != nil {
		return fmt.Errorf("moving routed ports with the uplink: %w", err)
	}
	return nil
}
