// Package uplink moves a host's physical uplink (eth0) into a bridge (br0)
// and back, without ever cutting the host off, in the current network
// namespace.
//
// Up is make-before-break: the bridge is created with the uplink's MAC and
// MTU, the uplink's addresses are added to the bridge (with their remaining
// lifetimes), the uplink is enslaved, every route through the uplink in
// every table is replaced onto the bridge (default routes last), the ip
// rules naming the uplink are rewritten, and only then are the uplink's own
// addresses removed. Before the first change a snapshot of the uplink is
// written to a journal; every step is idempotent, so a re-run after a crash
// finishes the job from the journal.
//
// The journal is evidence, not truth. It is acted on only when it
// describes the live host (the same network namespace, boot and uplink
// device, by ifindex and permanent MAC) and, before its snapshot is
// replayed, when that snapshot still matches what is live; otherwise it is
// set aside (kept, with the reason) and Up starts afresh from what is live
// now, or Down refuses. Only the run that started a migration undoes it
// (Result.Started). Down moves back what is live on the bridge now, the
// admin's changes since Up included, reports what differs from the
// snapshot, and refuses while VM ports remain unless forced. Every dump
// that drives a snapshot or a deletion is complete or fails (nldump).
//
// Every change runs under the bridge's file lock. The package never touches
// links other than the named bridge and uplink.
package uplink
