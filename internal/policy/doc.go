// Package policy is tenant safety on a VM's bridge port: it stops one
// customer's VM from spoofing another's MAC or IP address (link-local and
// neighbour discovery included), from answering DHCP or sending IPv6 router
// advertisements for the whole LAN, from emptying the DHCP pool, from
// talking to other VMs when the port is isolated, from leaving its access
// VLAN, and from taking part in the spanning tree or any other link-local
// protocol of the LAN; and it does so whatever the tenant writes into its
// TAP (VLAN tags, fragments, any source port).
//
// Frames are filtered with nftables in the bridge family, programmed through
// netlink (never by running nft). Everything lives in one table, bridge
// tapbridge, whose chains and rules are fixed: written once, when the table
// is created, and never changed (rules.go). What differs from port to port
// lives in sets keyed by the port's name (nft.go):
//
//	table bridge tapbridge {
//		set policies { type ifname }            # every port; comment: its record
//		set dhcp_guard { type ifname }          # one such set per guard
//		set port_mac { type ifname . ether_addr }
//		set port_ip6 { type ifname . ipv6_addr }
//		set drops { type ifname . mark; counter } # per port and guard
//		chain prerouting {                      # bridge prerouting, priority filter
//			... goto ord4                       # ordinary IPv4/IPv6, by compares:
//			... goto ord6                       # no spoof check, or both and fast4/fast6
//			iifname @policies jump vm           # the rest
//		}
//		chain vm { ... }                         # the same for every port
//	}
//
// Filter on a port adds and deletes elements of these sets in one atomic
// batch and never a chain, a rule or a jump, so the kernel does not
// re-validate the table and the thousandth port costs what the first did.
// Remove deletes the port's elements again. Filter works by name, before
// the port exists, so that a front end can filter a port before it can
// forward. Port isolation, BPDU guard, root block and the access VLAN are
// bridge port settings, set through rtnetlink by Configure on an enslaved
// port. Apply is Filter and Configure. Counters reads how many frames each
// guard dropped on a port.
//
// The package never touches anything but the named port, the named bridge
// (and uplink, in EnsureUplinkVLANs) and its own nftables table, and only in
// the current network namespace: callers that work in another namespace enter
// it first (pkg/ns) with the OS thread locked.
package policy
