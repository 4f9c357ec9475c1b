// Package bridge creates Linux bridges and attaches ports to them, in the
// current network namespace, through netlink (never by running ip(8)).
//
// A bridge it creates has its MAC and MTU set explicitly at creation (so no
// later port, and no udev rule, changes them), STP off and forward delay 0
// (so a new port forwards at once and a VM's DHCP discover is not dropped for
// 30 s). A port it attaches gets the bridge's MTU (so a 1500-byte TAP never
// lowers a jumbo bridge) and a MAC whose first byte is 0xFE.
//
// It never changes a bridge it did not create beyond adding and removing
// ports, and it never moves addresses or routes: that is package uplink.
package bridge
