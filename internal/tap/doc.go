// Package tap creates and deletes TAP devices in the current network
// namespace, with the ioctls of /dev/net/tun (never by running ip(8)):
// persistent TAPs for `tapbridge tap add` and the CNI plugin, and
// non-persistent ones whose descriptor is handed to QEMU by the bridge
// helper.
//
// It never deletes a link that is not a TAP, nor a TAP a process holds
// (InUse asks the kernel: the carrier and the queues, never a probe).
package tap
