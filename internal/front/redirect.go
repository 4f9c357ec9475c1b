package front

import (
	"errors"
	"fmt"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ingressParent is the handle of the ingress qdisc (ffff:).
var ingressParent = netlink.MakeHandle(0xffff, 0)

// redirectPriority is the priority of the front's tc filter.
const redirectPriority = 1

// Redirect makes every frame received on from leave through to, unchanged:
// an ingress qdisc on from with a match-all u32 filter whose action is a
// mirred egress redirect to to. (u32 rather than matchall: it is in every
// kernel that has tc.)
func Redirect(from, to netlink.Link) error {
	q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: from.Attrs().Index,
		Handle:    ingressParent,
		Parent:    netlink.HANDLE_INGRESS,
	}}
	if err := netlink.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("adding an ingress qdisc to %q: %w", from.Attrs().Name, err)
	}
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: from.Attrs().Index,
			Parent:    ingressParent,
			Priority:  redirectPriority,
			Protocol:  unix.ETH_P_ALL,
		},
		Actions: []netlink.Action{&netlink.MirredAction{
			ActionAttrs:  netlink.ActionAttrs{Action: netlink.TC_ACT_STOLEN},
			MirredAction: netlink.TCA_EGRESS_REDIR,
			Ifindex:      to.Attrs().Index,
		}},
	}
	if err := netlink.FilterAdd(f); err != nil {
		return fmt.Errorf("redirecting %q to %q (tc u32 + mirred; is act_mirred available?): %w", from.Attrs().Name, to.Attrs().Name, err)
	}
	return nil
}

// CheckRedirect says whether every frame received on from is redirected
// to to, and nothing else is done to it.
func CheckRedirect(from, to netlink.Link) error {
	filters, err := netlinksafe.FilterList(from, ingressParent)
	if err != nil {
		return fmt.Errorf("listing the ingress filters of %q: %w", from.Attrs().Name, err)
	}
	for _, f := range filters {
		u, ok := f.(*netlink.U32)
		if !ok || len(u.Actions) != 1 || u.Attrs().Protocol != unix.ETH_P_ALL {
			continue
		}
		if u.Sel != nil && (u.Sel.Nkeys != 1 || u.Sel.Keys[0].Mask != 0) {
			continue
		}
		m, ok := u.Actions[0].(*netlink.MirredAction)
		if ok && m.MirredAction == netlink.TCA_EGRESS_REDIR && m.Ifindex == to.Attrs().Index {
			return nil
		}
	}
	return fmt.Errorf("frames received on %q are not redirected to %q (tc ingress filter missing)", from.Attrs().Name, to.Attrs().Name)
}
