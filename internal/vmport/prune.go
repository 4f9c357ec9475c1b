package vmport

import (
	"fmt"

	"github.com/containernetworking/plugins/pkg/netlinksafe"

	"github.com/tapbridge/tapbridge/internal/policy"
	"github.com/tapbridge/tapbridge/internal/state"
)

// Prune removes the port policy of every port that no longer exists or is
// no longer a port of a bridge, and returns their names. Such policies are
// left behind when a port vanishes without a DEL or an ifdown: the TAP of
// an unprivileged QEMU (-netdev bridge runs no down script) or of a QEMU
// killed with SIGKILL. It costs one link dump and one chain listing, so it
// stays off the attach path of the other front ends. It holds the policy
// lock, so a port being attached meanwhile (whose name may be a vanished
// port's: the kernel reuses tap%d names) gets its policy after the prune,
// never removed by it.
func Prune() ([]string, error) {
	gone, err := pruneRouted()
	if err != nil {
		return gone, err
	}
	more, err := prunePolicies()
	return append(gone, more...), err
}

func prunePolicies() ([]string, error) {
	lk, err := state.LockPolicy()
	if err != nil {
		return nil, err
	}
	defer lk.Unlock()
	names, err := policy.Ports()
	if err != nil || len(names) == 0 {
		return nil, err
	}
	links, err := netlinksafe.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	enslaved := map[string]bool{}
	for _, l := range links {
		if l.Attrs().MasterIndex != 0 {
			enslaved[l.Attrs().Name] = true
		}
	}
	var pruned []string
	for _, n := range names {
		if enslaved[n] {
			continue
		}
		if err := policy.Remove(n); err != nil {
			return pruned, fmt.Errorf("removing the stale policy of %q: %w", n, err)
		}
		pruned = append(pruned, n)
	}
	return pruned, nil
}
