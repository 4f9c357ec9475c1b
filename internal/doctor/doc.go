// Package doctor inspects a host for what keeps tapbridge's bridge from
// working or from lasting: which network manager owns the uplink (and the
// configuration that makes the bridge permanent in it), br_netfilter with a
// FORWARD chain that drops, a Wi-Fi uplink, STP on the bridge, a bridge MAC
// that is not the uplink's, MTU mismatches, /dev/net/tun and /dev/vhost-net,
// the bridge helper's privileges and the state directory's modes, Debian's
// /etc/qemu-ifup shadowing tapbridge's, ports without a policy, and stale
// journals, records and policies.
//
// Every check is one line with its fix. Files are read under Options.Root
// (/etc, /run, /sys, /dev, /proc/sys, /lib), so tests point it at a fake
// root; tapbridge's state directory is state.Dir() (TAPBRIDGE_RUN_DIR), and
// links, routes and nftables are those of the caller's network
// namespace.
//
// The package only reads: it never changes a link, a file or a rule.
package doctor
