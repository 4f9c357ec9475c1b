// Package testkit holds the small helpers that the tests of several
// packages share: skipping honestly, passing a TAP descriptor as QEMU and
// its bridge helper do, reading a CNI error code. It is imported by tests
// only and never touches the system itself.
package testkit

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/nldump"
)

// NeedRoot skips a test that needs root (why says for what) when not run
// as root, and with -short, which runs the unit tests only.
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: " + why)
	}
	if testing.Short() {
		t.Skip("-short: " + why)
	}
}

// Socketpair returns QEMU's end and the helper's end of the socket QEMU
// reads a TAP descriptor from; both are closed at cleanup.
func Socketpair(t testing.TB) (qemu, helper int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

// RecvFD is QEMU's recv_fd: one byte and one descriptor, without waiting.
func RecvFD(t testing.TB, sock int) int {
	t.Helper()
	fd, err := ReceiveFD(sock, unix.MSG_DONTWAIT)
	if err != nil {
		t.Fatalf("no TAP descriptor: %v", err)
	}
	return fd
}

// ReceiveFD reads one byte and one descriptor from sock as QEMU's recv_fd
// does, with recvmsg flags (MSG_DONTWAIT not to wait); the descriptor is
// close-on-exec.
func ReceiveFD(sock, flags int) (int, error) {
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(sock, buf, oob, flags|unix.MSG_CMSG_CLOEXEC)
	for err == unix.EINTR {
		n, oobn, _, _, err = unix.Recvmsg(sock, buf, oob, flags|unix.MSG_CMSG_CLOEXEC)
	}
	if err != nil || n != 1 {
		return -1, fmt.Errorf("recvmsg = %d, %v", n, err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return -1, fmt.Errorf("control messages %v, %v", msgs, err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return -1, fmt.Errorf("rights %v, %v", fds, err)
	}
	return fds[0], nil
}

// NotCNI is what CNICode returns for an error that carries no CNI code.
const NotCNI = 999

// CNICode returns the code of a CNI error (a *types.Error anywhere in
// err's chain), 0 for nil, and NotCNI for any other error, so that a test
// expecting a code never mistakes a plain error for success.
func CNICode(err error) uint {
	if err == nil {
		return 0
	}
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return NotCNI
}

// Links lists every link of the current network namespace with what a
// failed operation must leave as it was (kind, master, MTU, MAC, up),
// sorted, for a before/after comparison.
func Links(t testing.TB) []string {
	t.Helper()
	ls, err := nldump.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		a := l.Attrs()
		out = append(out, fmt.Sprintf("%s %s master=%d mtu=%d mac=%s up=%v", a.Name, l.Type(), a.MasterIndex, a.MTU, a.HardwareAddr, a.Flags&net.FlagUp != 0))
	}
	sort.Strings(out)
	return out
}
