// Package policy is tenant safety on a VM's bridge port: it stops one
// customer's VM from spoofing another's MAC or IP address, from answering
// DHCP or sending IPv6 router advertisements for the whole LAN, from talking
// to other VMs when the port is isolated, from leaving its access VLAN, and
// from taking part in the spanning tree.
//
// Frames are filtered with nftables in the bridge family, programmed through
// netlink (never by running nft). Everything lives in one table, bridge
// tapbridge:
//
//	table bridge tapbridge {
//		map ports { type ifname : verdict }     # iifname -> jump port-<name>
//		chain prerouting {                      # bridge prerouting, priority filter
//			iifname vmap @ports
//		}
//		chain port-tap0 { ... }                  # one regular chain per port
//	}
//
// Apply on a port adds or replaces that port's chain and its one map element
// in a single atomic batch and never rewrites another port's chain, so the
// thousandth port costs what the first did. Remove deletes them again.
// Port isolation, BPDU guard, root block and the access VLAN are bridge port
// settings, set through rtnetlink.
//
// The package never touches anything but the named port, the named bridge
// (and uplink, in EnsureUplinkVLANs) and its own nftables table, and only in
// the current network namespace: callers that work in another namespace enter
// it first (pkg/ns) with the OS thread locked.
package policy
