// Package state owns tapbridge's on-disk state under /run/tapbridge (or
// $TAPBRIDGE_RUN_DIR): file locks that serialize every change to a shared
// resource, one directory per kind (lock/bridge/NAME.lock,
// lock/uplink/NAME.lock, lock/policy.lock), each wait bounded
// (LockTimeout) and a timeout naming the holder's PID; and small JSON
// records written atomically (an unnamed file, fsync, rename) so that a
// crash never leaves a torn record, with the temporary files a SIGKILL can
// leave removed by the next write.
//
// State is evidence, not truth: Host identifies the network namespace and
// boot a record was written in, and a record that does not describe the
// live host is set aside (SetAside), never acted on.
//
// It never touches network interfaces.
package state
