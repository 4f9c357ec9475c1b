package front

import (
	"errors"
	"fmt"

	"github.com/tapbridge/tapbridge/internal/nldump"
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
	return redirect(from, to, netlink.TCA_EGRESS_REDIR)
}

// RedirectIngress makes every frame received on from arrive on to, as if
// to had received it: the same filter with a mirred ingress redirect. A
// frame the TAP receives from its guest enters the front's port this way,
// without the veth hop (a transmit, a softirq backlog and a receive); the
// kernel drops it while the port is down (mirred refuses a device that is
// down or without carrier), so the port still forwards nothing before its
// policy is in place.
func RedirectIngress(from, to netlink.Link) error {
	return redirect(from, to, netlink.TCA_INGRESS_REDIR)
}

func redirect(from, to netlink.Link, how netlink.MirredAct) error {
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
			MirredAction: how,
			Ifindex:      to.Attrs().Index,
		}},
	}
	if err := netlink.FilterAdd(f); err != nil {
		return fmt.Errorf("redirecting %q to %q (tc u32 + mirred; is act_mirred available?): %w", from.Attrs().Name, to.Attrs().Name, err)
	}
	return nil
}

// CheckRedirect says whether every frame received on from is redirected
// to to (Redirect), and nothing else is done to it.
func CheckRedirect(from, to netlink.Link) error {
	return checkRedirect(from, to, netlink.TCA_EGRESS_REDIR)
}

// CheckRedirectIngress is CheckRedirect for RedirectIngress.
func CheckRedirectIngress(from, to netlink.Link) error {
	return checkRedirect(from, to, netlink.TCA_INGRESS_REDIR)
}

func checkRedirect(from, to netlink.Link, how netlink.MirredAct) error {
	filters, err := nldump.FilterList(from, ingressParent)
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
		if ok && m.MirredAction == how && m.Ifindex == to.Attrs().Index {
			return nil
		}
	}
	return fmt.Errorf("frames received on %q are not redirected to %q (tc ingress filter missing)", from.Attrs().Name, to.Attrs().Name)
}
