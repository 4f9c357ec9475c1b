package cniplugin

import (
	"net"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/tapbridge/tapbridge/internal/bridge"
	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/link"
	"github.com/tapbridge/tapbridge/internal/routed"
)

// routedIPAM rewrites the IPAM result for a routed attachment ("routed":
// true) the way the guest must configure it: each address as /32 (/128)
// with the gateway 169.254.0.1 (fe80::1), which is on-link, and default
// routes through it. The IPAM plugin's own gateways and routes describe a
// LAN the guest is not on, so they are left out.
func routedIPAM(r *types100.Result) *types100.Result {
	out := &types100.Result{CNIVersion: r.CNIVersion, DNS: r.DNS}
	gw4, gw6 := net.IP(routed.GatewayIPv4.AsSlice()), net.IP(routed.GatewayIPv6.AsSlice())
	var v4, v6 bool
	for _, ip := range r.IPs {
		c := *ip
		if a := ip.Address.IP.To4(); a != nil {
			c.Address = net.IPNet{IP: a, Mask: net.CIDRMask(32, 32)}
			c.Gateway, v4 = gw4, true
		} else {
			c.Address = net.IPNet{IP: ip.Address.IP, Mask: net.CIDRMask(128, 128)}
			c.Gateway, v6 = gw6, true
		}
		out.IPs = append(out.IPs, &c)
	}
	if v4 {
		out.Routes = append(out.Routes,
			&types.Route{Dst: net.IPNet{IP: gw4, Mask: net.CIDRMask(32, 32)}}, // on-link
			&types.Route{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, GW: gw4},
		)
	}
	if v6 {
		out.Routes = append(out.Routes, &types.Route{Dst: net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, GW: gw6})
	}
	return out
}

// portMTU is the MTU the attachment's links must have: the bridge's, or
// for a routed attachment its host port's.
func portMTU(c *config.Conf, hostPort string) (int, error) {
	if c.Routed {
		l, err := link.Get(hostPort)
		if err != nil {
			return 0, err
		}
		return l.Attrs().MTU, nil
	}
	br, err := bridge.Get(c.Bridge)
	if err != nil {
		return 0, err
	}
	return br.Attrs().MTU, nil
}
