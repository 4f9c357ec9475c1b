// Package handover moves what the host's own network stack keeps doing on
// an interface from the uplink to the bridge when tapbridge enslaves the
// uplink, and back when it releases it: the host's DHCP client (so the lease
// keeps being renewed, with the same MAC, client identifier and address) and
// IPv6 router-advertisement processing (so SLAAC addresses keep their
// lifetimes and the RA-learned default route is learned again on the new
// interface).
//
// A DHCP client is handed over by stopping it with SIGKILL (so it neither
// releases the lease nor deconfigures an interface) and starting the same
// command line, environment and working directory again with the interface
// name replaced: the client keeps its own configuration, script, hooks and
// lease file, and starts in the old one's cgroup where the kernel allows
// it. Only clients whose command line this package reads are moved
// (dhclient and busybox udhcpc); a dhcpcd or pump naming the interface is
// reported, not moved; a network manager's in-daemon client (systemd-
// networkd, NetworkManager) is that manager's: see 'tapbridge doctor'.
//
// Router advertisements: the uplink's accept_ra and autoconf settings are
// copied to the bridge, a router solicitation is sent there, and the
// uplink's RA-learned default routes are deleted only once the kernel has
// learned one on the bridge (a timeout is a warning, not an error).
//
// The package only acts on processes of the caller's own network namespace,
// identified by a pidfd so a recycled PID is never signalled, and never
// touches links other than the two it is given.
package handover
