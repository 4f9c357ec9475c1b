// Package cniplugin is the CNI plugin of type "tapbridge": the ADD, DEL,
// CHECK, STATUS and GC verbs (CNI 0.3.0 to 1.1.0) over the one core
// (vmport, tap, bridge, config, state). plugins/tapbridge/main.go runs it
// when CNI_COMMAND is set.
//
// A VM NIC attached by the plugin is a TAP that a QEMU opens by name:
//
//   - mode "netns" (the default): QEMU runs inside CNI_NETNS. The TAP
//     CNI_IFNAME lives in that namespace and is joined at layer 2, by tc
//     mirred redirects both ways, to the peer of a veth pair whose host end
//     is a port of the bridge. The guest's frames reach the bridge unchanged.
//   - mode "host": QEMU runs in the plugin's (the host's) namespace. The TAP
//     is made on the host, named from the container ID and ifname, and is
//     itself the bridge port.
//
// Every attachment leaves a small record under state.Path("cni", network)
// before any link is made, so that DEL and GC can always find and remove
// what an ADD (even a crashed one) made. CollectVanished, which `tapbridge
// gc` runs, uses the records to remove the attachments whose sandbox
// namespace is gone, for runtimes that never send DEL (ctr run -d --cni).
//
// The plugin never touches a link it did not make: it deletes only links
// whose name it derived and for which it holds a record (GC), or whose name
// it derived for the attachment being deleted (DEL), and only when they are
// of the kind it makes (a veth, a TAP). It never changes the sandbox's other
// interfaces. Failed ADDs undo every step before they return.
package cniplugin
