// Package state owns tapbridge's on-disk state under /run/tapbridge (or
// $TAPBRIDGE_RUN_DIR): per-bridge file locks that serialize every change to
// a shared resource, and small JSON records written atomically (write,
// fsync, rename) so that a crash never leaves a torn journal.
//
// It never touches network interfaces.
package state
