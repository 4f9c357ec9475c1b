// Package vmport is the one operation both front ends (the CNI plugin and
// the QEMU hooks, and `tapbridge tap add`) use to put a VM's host-side port
// on the bridge and take it off again: under the bridge's file lock it
// ensures the bridge (and, when the configuration names one, the uplink,
// through package uplink), puts a front (package front) before a TAP,
// enslaves the port with the bridge's MTU and a 0xFE MAC while it is down,
// applies the port policy, and only then brings the port up.
//
// Attach leaves nothing half-done: on failure the port is detached, the
// front it made deleted and the policy removed before the error is
// returned. It never creates or deletes the TAP or the CNI veth itself;
// the front end owns those.
package vmport
