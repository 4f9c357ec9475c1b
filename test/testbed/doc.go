// Package testbed builds the real peers that tapbridge's end-to-end tests
// and `make demo` run against: network namespaces, a LAN of a router and a
// hypervisor joined by veth, dnsmasq as the router's DHCP server, and QEMU
// guests that lease an address and serve a web page.
//
// # What it builds
//
//	router netns                          hv netns ("the hypervisor")
//	veth-r 192.0.2.1/24, 2001:db8::1/64 <--veth--> eth0 192.0.2.10/24
//	dnsmasq: pool 192.0.2.100-199                  default via 192.0.2.1
//	                                               br0, tap0 ... (the test's)
//	                                                 |
//	                                               QEMU guest: udhcpc, httpd
//
// The pieces, each usable alone:
//
//   - NewNetNS: a namespace "tb-XXXXXXXX" with lo up; Do runs Go code in it
//     (pkg/ns), Command/Exec run programs in it (`ip netns exec`), Fetch
//     and FetchFrom GET a URL from it in Go.
//   - NewLAN: the router and hypervisor namespaces above; LANOptions adds a
//     secondary address, IPv6, routes, rules and DHCP. AddVeth, ServeDHCP
//     and AddVLAN extend it.
//   - StartDHCP: dnsmasq on one interface, its lease file parsed into Lease
//     values; WaitLease(mac).
//   - BuildImage: the host's cloud kernel and an initramfs built at test
//     time from busybox-static and the kernel's virtio modules.
//   - StartGuest: QEMU (TCG) with the caller's -netdev, in a namespace,
//     optionally as another user. The guest's serial console is captured:
//     WaitLease, WaitReady, Run (a shell command in the guest), Output.
//
// Everything is released by a function registered with TB.Cleanup, also
// when the test fails: processes are stopped by PID (SIGTERM, then
// SIGKILL), then namespaces are deleted. Processes also get a parent-death
// SIGKILL, so a test binary killed by a timeout leaves no QEMU or dnsmasq
// behind (only its namespaces, named tb-*). Programs that are not tests use
// a Session as their TB.
//
// # What it must never do
//
// It never changes the root network namespace: no interface, address,
// route or firewall rule there is created or touched (veth pairs are
// created from inside the router namespace). It uses only the
// documentation ranges 192.0.2.0/24, 198.51.100.0/24 and 2001:db8::/32. It
// kills only processes it started, by PID. The one exception is a guest
// started with GuestOpts.NetNS nil: QEMU then runs in the root namespace,
// and its netdev is the caller's responsibility.
//
// # Host requirements
//
// Root, iproute2, dnsmasq (dnsmasq-base), busybox-static, qemu-system-x86,
// util-linux (setpriv) and linux-image-cloud-amd64. CheckLAN, CheckGuest
// and CheckVLAN say what is missing, for t.Skip. KVM is not used: TCG
// boots a guest in about 7 s.
package testbed
