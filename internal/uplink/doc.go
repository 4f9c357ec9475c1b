// Package uplink moves a host's physical uplink (eth0) into a bridge (br0)
// and back, without ever cutting the host off, in the current network
// namespace.
//
// Up is make-before-break: the bridge is created with the uplink's MAC and
// MTU, the uplink's addresses are added to the bridge, the uplink is
// enslaved, every route through the uplink in every table is replaced onto
// the bridge (default routes last), the ip rules naming the uplink are
// rewritten, and only then are the uplink's own addresses removed. Before
// the first change a snapshot of the uplink is written to a journal; every
// step is idempotent, so a re-run after a crash finishes the job from the
// journal, and Down restores the snapshot exactly.
//
// Every change runs under the bridge's file lock. The package never touches
// links other than the named bridge and uplink.
package uplink
