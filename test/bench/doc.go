// Command bench is `make bench`: it measures tapbridge's front ends side by
// side with their anchors (a Debian-style shell qemu-ifup, Debian's
// qemu-bridge-helper, the upstream bridge, tap and noop CNI plugins,
// /bin/true and an empty Go program) in one alternating run, and writes
// docs/benchmarks.md with tables of medians and ratios and PNG plots.
//
// Everything runs inside network namespaces it creates and deletes (a
// hypervisor with br0 and a router behind its uplink, addresses from
// 192.0.2.0/24 only) and inside a private mount namespace (where
// /etc/qemu/bridge.conf is an overlay and /sys shows the hypervisor's
// links), so the machine's own network, /etc and /sys are never changed.
//
// It is a program, not a test, so that `go test ./...` never runs it.
// Timings are medians of alternating runs: A, B, C, A, B, C... with the
// starting point rotated each round, so a noisy neighbour slows every
// contender alike and the ratios hold from run to run.
package main
