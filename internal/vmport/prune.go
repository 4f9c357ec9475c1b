package vmport

import (
	"fmt"
	"sort"

	"github.com/vishvananda/netlink"

	"github.com/tapbridge/tapbridge/internal/nldump"

	"github.com/tapbridge/tapbridge/internal/front"
	"github.com/tapbridge/tapbridge/internal/policy"
	"github.com/tapbridge/tapbridge/internal/state"
)

// Prune removes what vanished VMs left behind and returns the names of the
// TAPs and ports it cleaned up:
//
//   - the front of every TAP that is gone, and of every TAP its tenant made
//     persistent that nobody holds any more (with that TAP): the TAP of an
//     unprivileged QEMU (-netdev bridge runs no down script) or of a QEMU
//     killed with SIGKILL;
//   - the port policy of every port that no longer exists or is no longer
//     a port of a bridge.
//
// It costs one link dump and one policy listing, so it stays off the
// attach path of the other front ends. It holds the policy lock, so a port
// being attached meanwhile (whose name may be a vanished port's: the kernel
// reuses tap%d names, and a front's name follows its TAP's) gets its policy
// after the prune, never removed by it; fronts are deleted by ifindex, so a
// front made meanwhile under the same name is never touched.
func Prune() ([]string, error) {
	lk, err := state.LockPolicy()
	if err != nil {
		return nil, err
	}
	defer lk.Unlock()
	names, err := policy.Ports()
	if err != nil {
		return nil, err
	}
	links, err := nldump.LinkList() // a port missing from a partial dump would lose its policy
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	var pruned []string
	gone := map[string]string{} // front port -> its TAP, for the report
	for _, l := range front.Stale(links) {
		if err := front.Remove(l); err != nil {
			return pruned, err
		}
		gone[l.Port.Attrs().Name] = l.Info.TAP
	}
	enslaved := map[string]bool{}
	for _, l := range links {
		if _, isGone := gone[l.Attrs().Name]; l.Attrs().MasterIndex != 0 && !isGone {
			enslaved[l.Attrs().Name] = true
		}
	}
	for _, n := range names {
		if enslaved[n] {
			continue
		}
		// Re-check the candidate itself before its policy goes.
		if l, err := netlink.LinkByName(n); err == nil && l.Attrs().MasterIndex != 0 {
			continue
		}
		if err := policy.Remove(n); err != nil {
			return pruned, fmt.Errorf("removing the stale policy of %q: %w", n, err)
		}
		if tap, ok := gone[n]; ok {
			delete(gone, n)
			n = tap
		}
		pruned = append(pruned, n)
	}
	for _, tap := range gone { // fronts whose policy was already gone
		pruned = append(pruned, tap)
	}
	sort.Strings(pruned)
	return pruned, nil
}
