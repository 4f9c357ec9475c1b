// Package frames is test-only: it builds Ethernet/ARP/IPv4/IPv6/UDP/ICMPv6/DHCP
// frames by hand and injects/captures them with AF_PACKET or a TAP fd.
//
// The port-policy tests of internal/policy (veth pairs) and the end-to-end
// tests in test/ (the real front ends, frames written to a VM's TAP) share
// it, so that both send the same frames and judge them the same way.
//
// Every probe carries a nonce (NewNonce) in its payload, its ND nonce option
// or its Ethernet padding, so that a capture recognises it wherever it
// arrives, whatever else the kernel sends on the same link. Deliver sends a
// batch of probes followed by a marker and reports, per capture, which
// probes arrived: the marker proves the path works, so a probe that did not
// arrive was dropped and not merely slow.
//
// # What it must never do
//
// It is for tests and test programs only: nothing outside test/ and the
// _test.go files may import it. It creates sockets and opens TAPs only in
// the network namespace it is given, never changes a link, address, route
// or firewall rule, and closes what it opened at the TB's cleanup.
package frames
