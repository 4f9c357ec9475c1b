// Package front keeps a tenant-held TAP off the bridge.
//
// Whoever holds a TAP's file descriptor (the QEMU of a customer's VM) can
// change the TAP's MAC with SIOCSIFHWADDR and make it persistent with
// TUNSETPERSIST, without any capability. A bridge installs a permanent local
// FDB entry for the MAC of each of its ports, so a TAP that is itself a
// bridge port lets its tenant claim any MAC on the LAN (the gateway's) for
// the host: the host's frames to it go to the tenant, and frames from the
// other ports to it are swallowed by the host.
//
// A front is a veth pair that stands in for the TAP: its bridge end ("the
// port", tbv + 10 hex digits) is the bridge port, with a MAC only root can
// change. The tenant's frames cross unchanged, through tc mirred: what the
// TAP receives from its guest is redirected into the port's ingress, as if
// the port had received it; what the bridge sends through the port comes
// out of the other end ("the peer", tbw + 10 hex digits) and is redirected
// to the TAP. The TAP itself is on no bridge, so its MAC means nothing to
// anyone but its tenant. The CNI plugin's netns mode has the same shape with
// the peer and the TAP in the sandbox (where the port is out of reach of a
// redirect, so the TAP's frames go through the peer); its redirects are
// made here too.
//
// The port carries an alias that names the TAP it stands for, the TAP's
// ifindex and whether the TAP was persistent when the front was made, so
// that a front whose TAP is gone, or whose TAP a tenant made persistent
// behind tapbridge's back, is found from one link dump (Stale).
//
// This package never enslaves, filters or deletes a TAP; it makes and
// removes fronts in the current network namespace only.
package front
