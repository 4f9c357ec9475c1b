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
// lease file. Only clients this package knows how to read are moved
// (dhclient and busybox udhcpc); a client supervised by a network manager
// (systemd-networkd, NetworkManager) is that manager's to move: see
// 'tapbridge doctor'.
//
// The package only acts on processes of the caller's own network namespace,
// identified by a pidfd so a recycled PID is never signalled, and never
// touches links other than the two it is given.
package handover
