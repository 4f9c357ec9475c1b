package handover

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/nldump"
	"github.com/tapbridge/tapbridge/internal/sysctl"
)

// raSysctls are the per-interface IPv6 settings that decide whether and how
// an interface learns from router advertisements. The uplink's values go
// with it: a host with forwarding on needs accept_ra=2 on whatever holds its
// addresses, and a bridge starts with the defaults.
var raSysctls = []string{"accept_ra", "accept_ra_defrtr", "accept_ra_pinfo", "accept_ra_rtr_pref", "autoconf", "use_tempaddr"}

// copyRASysctls gives to the router-advertisement settings of from. It is
// best effort: an interface without IPv6 has none.
func copyRASysctls(from, to string) {
	for _, k := range raSysctls {
		v, err := sysctl.Read(sysctl.Iface("ipv6", from, k))
		if err != nil {
			continue
		}
		_ = sysctl.Write(sysctl.Iface("ipv6", to, k), v)
	}
}

// raDefaultRoutes returns the default routes link learned from router
// advertisements (protocol "ra"), in every table, from a complete dump:
// it drives a deletion.
func raDefaultRoutes(link netlink.Link) ([]netlink.Route, error) {
	routes, err := nldump.RouteListFiltered(netlink.FAMILY_V6,
		&netlink.Route{LinkIndex: link.Attrs().Index, Table: unix.RT_TABLE_UNSPEC},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("listing the IPv6 routes of %q: %w", link.Attrs().Name, err)
	}
	var out []netlink.Route
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_RA && isDefault(r.Dst) {
			out = append(out, r)
		}
	}
	return out, nil
}

func isDefault(dst *net.IPNet) bool {
	if dst == nil {
		return true
	}
	ones, _ := dst.Mask.Size()
	return ones == 0
}

// moveRA makes to learn from router advertisements as from did (when
// copySettings) and, when
// from had an RA-learned default route, solicits one on to and waits until
// the kernel has learned it there; only then are from's RA-learned default
// routes deleted (an enslaved uplink no longer sees advertisements, so they
// would linger until they expire, pointing at a port). It returns what it
// did, "" for nothing.
func moveRA(from, to string, timeout time.Duration, copySettings bool) (string, error) {
	src, err := netlink.LinkByName(from)
	if err != nil {
		return "", fmt.Errorf("%q: %w", from, err)
	}
	dst, err := netlink.LinkByName(to)
	if err != nil {
		return "", fmt.Errorf("%q: %w", to, err)
	}
	if copySettings {
		copyRASysctls(from, to)
	}
	old, err := raDefaultRoutes(src)
	if err != nil || len(old) == 0 {
		return "", err
	}
	if err := awaitRARoute(dst, timeout); err != nil {
		// Not an error: the uplink's route is kept (it works while its
		// neighbour entry lasts, and expires by itself), and the next
		// periodic advertisement teaches to its own.
		if errors.Is(err, errNoRA) {
			return fmt.Sprintf("warning: no router advertisement on %q within %s; the IPv6 default route stays on %q until %q learns one", to, timeout, from, to), nil
		}
		return "", err
	}
	for _, r := range old {
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			return "", fmt.Errorf("deleting the RA default route via %s from %q: %w", r.Gw, from, err)
		}
	}
	return fmt.Sprintf("the IPv6 default route learned from router advertisements moved to %q", to), nil
}

// errNoRA is awaitRARoute's timeout.
var errNoRA = errors.New("no router advertisement")

// awaitRARoute sends router solicitations on link until the kernel has
// learned a default route there from an advertisement, or timeout passes.
func awaitRARoute(link netlink.Link, timeout time.Duration) error {
	updates := make(chan netlink.RouteUpdate, 16)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.RouteSubscribe(updates, done); err != nil {
		return fmt.Errorf("watching routes: %w", err)
	}
	name := link.Attrs().Name
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	// RFC 4861 sends up to 3 solicitations, 4 s apart; a second one sooner
	// covers a first sent while the link-local address was tentative.
	resend := time.NewTicker(time.Second)
	defer resend.Stop()
	for {
		if rs, err := raDefaultRoutes(link); err == nil && len(rs) > 0 {
			return nil
		}
		// Until the link-local address has passed duplicate address
		// detection there is no source address to solicit from
		// (EADDRNOTAVAIL): the kernel solicits by itself once it has
		// one, and this loop tries again in a second.
		if err := solicit(link.Attrs().Index); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("soliciting a router advertisement on %q: %w", name, err)
		}
	wait:
		for {
			select {
			case u := <-updates:
				if u.Type == unix.RTM_NEWROUTE && u.LinkIndex == link.Attrs().Index && u.Protocol == unix.RTPROT_RA && isDefault(u.Dst) {
					return nil
				}
			case <-resend.C:
				break wait
			case <-deadline.C:
				return errNoRA
			}
		}
	}
}

// solicit sends one ICMPv6 router solicitation to all-routers (ff02::2) out
// of the interface with index idx. The kernel fills in the source address
// and the checksum.
func solicit(idx int) error {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// Neighbour discovery messages must have hop limit 255 (RFC 4861 6.1.1).
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 255); err != nil {
		return err
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, idx); err != nil {
		return err
	}
	rs := []byte{133, 0, 0, 0, 0, 0, 0, 0} // type, code, checksum, reserved
	to := &unix.SockaddrInet6{ZoneId: uint32(idx)}
	copy(to.Addr[:], net.ParseIP("ff02::2").To16())
	return unix.Sendto(fd, rs, 0, to)
}
