package uplink

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/failpoint"
	"github.com/tapbridge/tapbridge/internal/link"
	"github.com/tapbridge/tapbridge/internal/nldump"
)

// ErrGatewayUnreachable matches a failed gateway probe.
var ErrGatewayUnreachable = errors.New("gateway unreachable")

// gateway returns the first default route's gateway in the main table,
// IPv4 before IPv6, or nil.
func (j *Journal) gateway() net.IP {
	var v6 net.IP
	for _, r := range j.Routes {
		if !r.isDefault() || r.Gw == "" || r.Table != unix.RT_TABLE_MAIN {
			continue
		}
		gw := net.ParseIP(r.Gw)
		if gw.To4() != nil {
			return gw
		}
		if v6 == nil {
			v6 = gw
		}
	}
	return v6
}

// probe checks that the default gateway answers neighbour resolution
// (ARP or NDP) through the bridge. Only a fresh answer counts: an entry
// learnt before the move proves nothing (revalidate). Without a valid
// entry, a datagram to the discard port makes the kernel resolve afresh;
// no ICMP answer from the gateway is needed. An entry the admin pinned
// (permanent or noarp) is never re-asked by the kernel: it stands, and the
// probe is skipped.
func (j *Journal) probe(o Options) error {
	failpoint.Hit("up:probe")
	gw := j.gateway()
	if gw == nil {
		o.logf("no default gateway through %s: probe skipped", j.Uplink)
		return nil
	}
	br, err := link.Get(j.Bridge)
	if err != nil {
		return err
	}
	timeout := o.ProbeTimeout
	if timeout <= 0 {
		timeout = DefaultProbeTimeout
	}
	family := netlink.FAMILY_V4
	if gw.To4() == nil {
		family = netlink.FAMILY_V6
	}
	pinned, err := revalidate(br, family, gw)
	if err != nil {
		return fmt.Errorf("probing the default gateway %s on bridge %q: %w", gw, j.Bridge, err)
	}
	if pinned {
		o.logf("gateway %s is pinned on %s (permanent or noarp): probe skipped", gw, j.Bridge)
		return nil
	}
	start := time.Now()
	deadline := start.Add(timeout)
	for time.Now().Before(deadline) {
		poke(j.Bridge, gw)
		for i := 0; i < 10; i++ {
			time.Sleep(10 * time.Millisecond)
			if resolved(br.Attrs().Index, family, gw) {
				o.logf("gateway %s answered on %s after %v", gw, j.Bridge, time.Since(start).Round(time.Millisecond))
				return nil
			}
		}
	}
	return fmt.Errorf("default gateway %s did not answer on bridge %q within %v: %w", gw, j.Bridge, timeout, ErrGatewayUnreachable)
}

// poke sends one datagram to the discard port of gw out of the bridge.
func poke(dev string, gw net.IP) {
	d := net.Dialer{
		Timeout: 100 * time.Millisecond,
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.BindToDevice(int(fd), dev)
			}); err != nil {
				return err
			}
			return serr
		},
	}
	addr := net.JoinHostPort(gw.String(), strconv.Itoa(9))
	if gw.IsLinkLocalUnicast() {
		addr = net.JoinHostPort(gw.String()+"%"+dev, "9")
	}
	c, err := d.DialContext(context.Background(), "udp", addr)
	if err != nil {
		return
	}
	_, _ = c.Write([]byte{0})
	c.Close()
}

// revalidate makes the gateway's neighbour entry on the bridge count
// only once the gateway has answered again, and reports whether the entry
// is pinned (permanent or noarp), which the kernel never re-asks.
//
// A valid entry is put in the kernel's PROBE state, keeping its address
// and flags: it goes on carrying traffic while the kernel asks the gateway
// again (unicast), and only the gateway's reply makes it REACHABLE.
// Deleting it instead drops a packet on its way to the gateway at that
// instant (the host's reply to the gateway's own traffic, say). Deleting is
// left for when the kernel could not ask: IPv6 before the bridge has a
// link-local address past duplicate address detection (the kernel would
// wait for it, a second or more, where the poke's own packet resolves at
// once from its global source), or a failed update.
func revalidate(br netlink.Link, family int, gw net.IP) (pinned bool, err error) {
	n, err := gatewayEntry(br.Attrs().Index, family, gw)
	if err != nil {
		return false, err
	}
	switch {
	case n == nil:
		return false, nil
	case n.State&(netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0:
		return true, nil
	case n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE) == 0 || len(n.HardwareAddr) == 0:
		return false, nil // being resolved already, or failed: nothing old to count
	}
	if family == netlink.FAMILY_V4 || usableLinkLocal(br) {
		e := *n
		e.State = netlink.NUD_PROBE
		if netlink.NeighSet(&e) == nil {
			return false, nil
		}
	}
	if err := netlink.NeighDel(n); err != nil && !errors.Is(err, unix.ENOENT) {
		return false, fmt.Errorf("making the kernel ask again: %w", err)
	}
	return false, nil
}

// gatewayEntry returns the gateway's neighbour entry on the link idx, or
// nil.
func gatewayEntry(idx, family int, gw net.IP) (*netlink.Neigh, error) {
	neighs, err := nldump.NeighList(idx, family)
	if err != nil {
		return nil, err
	}
	for i := range neighs {
		if neighs[i].IP.Equal(gw) {
			return &neighs[i], nil
		}
	}
	return nil, nil
}

// usableLinkLocal reports whether l has an IPv6 link-local
// address that is past duplicate address detection, the source the kernel
// needs for a neighbour solicitation of its own.
func usableLinkLocal(l netlink.Link) bool {
	addrs, err := nldump.AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() && a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0 {
			return true
		}
	}
	return false
}

func resolved(idx, family int, gw net.IP) bool {
	n, err := gatewayEntry(idx, family, gw)
	return err == nil && n != nil && n.State&(netlink.NUD_REACHABLE|netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0
}
