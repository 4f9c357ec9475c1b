// Package vmport is the one operation both front ends (the CNI plugin and
// the QEMU hooks, and `tapbridge tap add`) use to put a VM's host-side port
// on the bridge and take it off again: under the bridge's file lock it
// ensures the bridge (and, when the configuration names one, the uplink,
// through package uplink), attaches the port with the bridge's MTU and a
// 0xFE MAC, and applies the port policy.
//
// Attach leaves nothing half-done: on failure the port is detached and its
// policy removed before the error is returned. It never creates or deletes
// the port itself; the front end owns that.
package vmport
