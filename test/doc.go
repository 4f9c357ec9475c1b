// Package e2e holds tapbridge's end-to-end tests: they drive the built
// binaries (bin/tapbridge, bin/qemu-ifup, ...) the way users do, against
// real peers in throwaway network namespaces: a router running dnsmasq,
// QEMU guests, cnitool and libcni. They never touch the root namespace.
//
// The binaries come from $TAPBRIDGE_BIN_DIR and the CNI tools (cnitool and
// the upstream reference plugins) from $CNI_TOOLS_DIR, as `make test` sets
// them; when unset, TestMain builds both into a temporary directory.
package e2e
