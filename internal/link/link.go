// Package link looks network interfaces up by name in the current network
// namespace: Get with a not-found error every caller can test with
// errors.Is, Master and MasterName for the bridge (or bond) a link is a
// port of, and
// Raw for the attributes netlink's link types do not decode. It only
// reads; it never changes a link.
package link

import (
	"errors"
	"fmt"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
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

// Master returns l's master (the bridge or bond it is a port of), nil
// when it has none. A master that vanished meanwhile is an error matching
// ErrNotFound.
func Master(l netlink.Link) (netlink.Link, error) {
	m := l.Attrs().MasterIndex
	if m == 0 {
		return nil, nil
	}
	master, err := netlink.LinkByIndex(m)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return nil, fmt.Errorf("the master (ifindex %d) of %q: %w", m, l.Attrs().Name, ErrNotFound)
		}
		return nil, fmt.Errorf("looking up the master (ifindex %d) of %q: %w", m, l.Attrs().Name, err)
	}
	return master, nil
}

// MasterName returns the name of l's master, "" when it has none; errors
// as Master's.
func MasterName(l netlink.Link) (string, error) {
	master, err := Master(l)
	if master == nil || err != nil {
		return "", err
	}
	return master.Attrs().Name, nil
}

// Raw returns the attributes of the link with the given index as the
// kernel sends them: its top-level IFLA_* attributes and the
// kind-specific ones inside IFLA_LINKINFO's IFLA_INFO_DATA (empty when
// the kind has none), each by type. It is for the few attributes
// vishvananda/netlink does not decode (a TAP's owner, a bridge's timers).
func Raw(index int) (top, data map[uint16][]byte, err error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the attributes of ifindex %d: %w", index, err)
	}
	if len(msgs) == 0 || len(msgs[0]) < unix.SizeofIfInfomsg {
		return nil, nil, fmt.Errorf("reading the attributes of ifindex %d: empty answer", index)
	}
	top, err = attrMap(msgs[0][unix.SizeofIfInfomsg:])
	if err != nil {
		return nil, nil, fmt.Errorf("reading the attributes of ifindex %d: %w", index, err)
	}
	info, err := attrMap(top[unix.IFLA_LINKINFO])
	if err != nil {
		return nil, nil, fmt.Errorf("reading the link info of ifindex %d: %w", index, err)
	}
	if data, err = attrMap(info[nl.IFLA_INFO_DATA]); err != nil {
		return nil, nil, fmt.Errorf("reading the link data of ifindex %d: %w", index, err)
	}
	return top, data, nil
}

// attrMap parses a run of netlink attributes into a map by type (the
// nested flag masked off); nil or empty input gives an empty map.
func attrMap(b []byte) (map[uint16][]byte, error) {
	m := map[uint16][]byte{}
	if len(b) == 0 {
		return m, nil
	}
	attrs, err := nl.ParseRouteAttr(b)
	if err != nil {
		return nil, err
	}
	for _, a := range attrs {
		m[a.Attr.Type&nl.NLA_TYPE_MASK] = a.Value
	}
	return m, nil
}
