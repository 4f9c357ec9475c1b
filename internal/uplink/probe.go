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
// learnt before the move proves nothing, so a valid entry on the bridge is
// put in the kernel's PROBE state, where it goes on carrying traffic while
// the kernel asks the gateway again (unicast) and only the gateway's reply
// makes it REACHABLE. Deleting the entry instead would drop a packet on its
// way to the gateway at that instant (the host's reply to the gateway's
// own traffic, say). Without a valid entry, a datagram to the discard port
// makes the kernel resolve afresh; no ICMP answer from the gateway is
// needed. An entry the admin pinned (permanent or noarp) stands.
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
	if pinned := revalidate(br.Attrs().Index, family, gw); pinned {
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

// revalidate puts the gateway's valid neighbour entry on the bridge in
// the PROBE state, keeping its link-layer address, so that it only
// becomes REACHABLE again on a fresh answer. It reports whether the entry
// is pinned (permanent or noarp), which the kernel never re-asks.
func revalidate(idx, family int, gw net.IP) (pinned bool) {
	neighs, err := netlink.NeighList(idx, family)
	if err != nil {
		return false
	}
	for _, n := range neighs {
		if !n.IP.Equal(gw) {
			continue
		}
		switch {
		case n.State&(netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0:
			return true
		case n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE) != 0 && len(n.HardwareAddr) > 0:
			e := &netlink.Neigh{LinkIndex: idx, Family: family, IP: gw, HardwareAddr: n.HardwareAddr, State: netlink.NUD_PROBE}
			if netlink.NeighSet(e) != nil {
				// Never seen; an answer from before must still not count.
				_ = netlink.NeighDel(e)
			}
		}
	}
	return false
}

func resolved(idx, family int, gw net.IP) bool {
	neighs, err := netlink.NeighList(idx, family)
	if err != nil {
		return false
	}
	for _, n := range neighs {
		if n.IP.Equal(gw) && n.State&(netlink.NUD_REACHABLE|netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0 {
			return true
		}
	}
	return false
}
