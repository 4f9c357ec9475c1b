package policy

// The frames the netns tests inject, and the AF_PACKET sockets that send
// and capture them, come from test/frames, which the end-to-end tests in
// test/ share: a frame is injected on the VM's side of a veth pair and
// looked for on the router's (and other VMs') side, by a nonce it carries.

import (
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/tapbridge/tapbridge/test/frames"
)

// openPacket opens a packet socket on ifname in n; it is closed at cleanup.
func openPacket(t testing.TB, n ns.NetNS, ifname string) *frames.Socket {
	t.Helper()
	return frames.OpenPacket(t, n.Path(), ifname)
}
