// Package routed attaches a VM's port without a bridge, for providers whose
// switch accepts frames only from the server's own MAC (Hetzner, OVH and
// Scaleway without virtual MACs): each of the VM's addresses is a host
// route (/32, /128) to the VM's port, and the host answers for it on the
// uplink with a per-address proxy neighbour entry when the address lies in
// one of the uplink's on-link prefixes. Addresses of a subnet the provider
// routes to the host's own address need no neighbour entry.
//
// The guest uses its address as /32 (/128) and the gateway 169.254.0.1
// (fe80::1), which the host holds on the VM's port. The host forwards only
// where it must: IPv4 forwarding on the uplink and the port; for IPv6 the
// global forwarding switch (the kernel has no per-interface one), after
// setting the uplink's accept_ra to 2 when it was 1, so router
// advertisements keep being accepted there.
//
// The sysctls a routed port needs are shared and reference-counted in a
// record under the state directory (one directory per network namespace,
// state.NetNSPath): the last port to leave puts back what
// it found, and a value that was already set is never turned off. Every
// change a port makes is written to its own record, so Detach removes
// exactly that, nothing else, also after a crash or when the port is gone.
//
// Filtering lives in the nftables table inet tapbridge_routed, programmed
// through netlink: per-port data (the port, its allowed sources, whether it
// is isolated, its guards) are elements of sets keyed by the interface
// name, so the cost of a port does not grow with the number of ports, and
// every change is one atomic batch:
//
//	table inet tapbridge_routed {
//		set ports     { type ifname }
//		set v4src     { type ifname . ipv4_addr }
//		set v6src     { type ifname . ipv6_addr }
//		set isolated  { type ifname }
//		set dhcpguard { type ifname }
//		set raguard   { type ifname }
//		chain prerouting { # priority raw: before conntrack sees a spoofed packet
//			iifname != @ports return
//			iifname @dhcpguard udp sport 67 udp dport 68 drop   (and DHCPv6)
//			iifname @raguard icmpv6 type { nd-router-advert, nd-redirect } drop
//			meta nfproto ipv4 iifname . ip saddr != @v4src drop
//			ip6 saddr fe80::/10 return; ip6 saddr :: icmpv6 return
//			meta nfproto ipv6 iifname . ip6 saddr != @v6src drop
//		}
//		chain forward {
//			iifname @isolated oifname @ports drop
//			iifname @ports oifname @isolated drop
//		}
//	}
//
// A routed TAP needs no front (package front): no bridge learns its MAC,
// so a tenant that changes its TAP's MAC changes only what its own guest
// must send to. Source-address checking is always on for a routed port. The package
// touches only the named port, the named uplink's proxy entries and
// sysctls, the global IPv6 forwarding switch and its own table, in the
// current network namespace; it never enslaves anything and never changes
// the uplink's addresses or routes. Callers hold no bridge lock: the
// package takes state.LockRouted itself.
package routed
