package nldump

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
)

// Attempts is how many times a dump is tried before it fails.
const Attempts = 10

// ErrInterrupted matches a dump that the kernel interrupted on every
// attempt.
var ErrInterrupted = errors.New("netlink dump interrupted by concurrent changes")

// Retry runs dump until it completes without netlink.ErrDumpInterrupted, at
// most Attempts times; then it fails with ErrInterrupted, naming what.
func Retry[T any](what string, dump func() (T, error)) (T, error) {
	var zero T
	for range Attempts {
		v, err := dump()
		if err == nil {
			return v, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return zero, err
		}
	}
	return zero, fmt.Errorf("listing %s: %w %d times in a row; try again", what, ErrInterrupted, Attempts)
}

// LinkList lists every link of the current namespace.
func LinkList() ([]netlink.Link, error) {
	return Retry("links", netlink.LinkList) //nolint:forbidigo
}

// AddrList lists the addresses of link (nil: of every link) of family.
func AddrList(link netlink.Link, family int) ([]netlink.Addr, error) {
	what := "addresses"
	if link != nil {
		what = fmt.Sprintf("addresses of %q", link.Attrs().Name)
	}
	return Retry(what, func() ([]netlink.Addr, error) { return netlink.AddrList(link, family) })
}

// RouteListFiltered lists the routes matching filter and mask.
func RouteListFiltered(family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	return Retry("routes", func() ([]netlink.Route, error) { return netlink.RouteListFiltered(family, filter, mask) })
}

// RuleList lists the routing rules of family.
func RuleList(family int) ([]netlink.Rule, error) {
	return Retry("rules", func() ([]netlink.Rule, error) { return netlink.RuleList(family) })
}

// RouteList lists the routes of family through link (nil: every route of
// the main table).
func RouteList(link netlink.Link, family int) ([]netlink.Route, error) {
	return Retry("routes", func() ([]netlink.Route, error) { return netlink.RouteList(link, family) })
}

// BridgeVlanList lists the VLANs of every bridge port, by ifindex.
func BridgeVlanList() (map[int32][]*nl.BridgeVlanInfo, error) {
	return Retry("bridge VLANs", netlink.BridgeVlanList)
}

// FilterList lists the tc filters of link under parent.
func FilterList(link netlink.Link, parent uint32) ([]netlink.Filter, error) {
	what := "tc filters"
	if link != nil {
		what = fmt.Sprintf("tc filters of %q", link.Attrs().Name)
	}
	return Retry(what, func() ([]netlink.Filter, error) { return netlink.FilterList(link, parent) })
}

// NeighList lists the neighbour entries of family on the link with index
// idx (0: every link).
func NeighList(idx, family int) ([]netlink.Neigh, error) {
	return Retry("neighbours", func() ([]netlink.Neigh, error) { return netlink.NeighList(idx, family) })
}
