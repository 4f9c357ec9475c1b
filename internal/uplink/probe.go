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
// (ARP or NDP) through the bridge. The gateway's neighbour entry on the
// bridge is flushed first, so only a fresh answer counts: an entry learnt
// before the move proves nothing. Sending a datagram to the discard port
// makes the kernel resolve; no ICMP answer from the gateway is needed.
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
	_ = netlink.NeighDel(&netlink.Neigh{LinkIndex: br.Attrs().Index, Family: family, IP: gw})
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
