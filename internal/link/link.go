// Package link looks network interfaces up by name in the current network
// namespace: Get with a not-found error every caller can test with
// errors.Is, and MasterName for the bridge (or bond) a link is a port of.
// It only reads; it never changes a link.
package link

import (
	"errors"
	"fmt"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNotFound matches a link that does not exist.
var ErrNotFound = errors.New("no such interface")

// Get returns the link called name, or an error matching ErrNotFound.
func Get(name string) (netlink.Link, error) {
	l, err := netlinksafe.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return nil, fmt.Errorf("%q: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("looking up %q: %w", name, err)
	}
	return l, nil
}

// MasterName returns the name of l's master (the bridge it is a port of),
// "" when it has none. A master that vanished meanwhile is an error
// matching ErrNotFound.
func MasterName(l netlink.Link) (string, error) {
	m := l.Attrs().MasterIndex
	if m == 0 {
		return "", nil
	}
	master, err := netlink.LinkByIndex(m)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return "", fmt.Errorf("the master (ifindex %d) of %q: %w", m, l.Attrs().Name, ErrNotFound)
		}
		return "", fmt.Errorf("looking up the master (ifindex %d) of %q: %w", m, l.Attrs().Name, err)
	}
	return master.Attrs().Name, nil
}
