// Package macguard keeps unknown source MACs off the uplink, for providers
// that lock a server out when a frame leaves it with a MAC they did not
// assign ("uplinkMACs": "strict", or a list of MACs): only the host's MAC,
// the listed ones and the guest MACs of the VM ports tapbridge attached may
// leave through the uplink. The check is at the uplink's egress, whatever
// port a frame came from (a port without policy, a nested bridge), so it
// holds even when a port's own policy is missing.
//
// It is one nftables table in the bridge family, programmed through
// netlink; ports add and remove elements, never rules:
//
//	table bridge tapbridge_uplink {
//		set uplinks { type ifname }
//		set known   { type ifname . ether_addr }
//		chain postrouting {   # bridge postrouting, priority filter
//			oifname @uplinks oifname . ether saddr != @known counter drop
//		}
//	}
//
// Postrouting sees both the frames the bridge forwards and those the host
// itself sends through the bridge. Each port's MAC is recorded under the
// state directory, so Forget removes a MAC only when no other port and no
// list names it. It never touches another table, and works in the current
// network namespace only.
package macguard
