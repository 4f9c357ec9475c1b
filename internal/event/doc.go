// Package event records what tapbridge did to the host in the system log:
// a port attached or detached, a TAP added or deleted, the uplink moved
// into its bridge or given back, stale policies collected, and every
// refusal. Each record carries structured fields (TAPBRIDGE_ACTION,
// TAPBRIDGE_RESULT, TAPBRIDGE_BRIDGE, TAPBRIDGE_PORT, TAPBRIDGE_VM,
// TAPBRIDGE_MAC, TAPBRIDGE_UPLINK, TAPBRIDGE_ERROR) so that
//
//	journalctl TAPBRIDGE_BRIDGE=br0
//	journalctl TAPBRIDGE_PORT=vm1-0 TAPBRIDGE_RESULT=refused
//
// answer an operator's questions.
//
// Records go to journald over its native datagram socket
// (/run/systemd/journal/socket), else to syslog (/dev/log, RFC 3164 with
// the fields appended as key=value), else nowhere: a host without a log
// daemon loses the records silently, and logging never fails, blocks for
// long or delays the operation it records.
//
// It never writes to the terminal: the front ends print what a user must
// see themselves (a failing QEMU hook still prints its one line to
// stderr).
package event
