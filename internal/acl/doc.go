// Package acl reads bridge access lists in the format of QEMU's
// qemu-bridge-helper (/etc/qemu/bridge.conf), which tapbridge's bridge
// helper and qemu-ifup use to limit the bridges a VM may join:
//
//	# comment
//	allow br0      # this bridge may be used
//	deny br1       # this bridge may not
//	allow all      # every bridge may be used (deny all: none)
//	include /etc/tapbridge/bridge.d/alice.conf
//
// The default is deny, and a matching deny wins over any allow, wherever
// it stands. Bridge names longer than 15 bytes are errors, not silent
// truncations. An include names another file (relative paths are taken
// relative to the including file); a file that the reader reports as
// missing or unreadable is skipped, as qemu-bridge-helper does, which is
// what makes per-user files work: `include /etc/tapbridge/alice.conf`,
// owned by root:alice with mode 0640, grants only alice. A syntax error in
// any file is an error, so a typo never widens access.
//
// The package only reads and evaluates; it never touches the kernel and
// never decides who may read a file: the caller's ReadFile does.
package acl
