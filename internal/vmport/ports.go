package vmport

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"

	"github.com/tapbridge/tapbridge/internal/bridge"
	"github.com/tapbridge/tapbridge/internal/front"
	"github.com/tapbridge/tapbridge/internal/link"
	"github.com/tapbridge/tapbridge/internal/mac"
	"github.com/tapbridge/tapbridge/internal/policy"
	"github.com/tapbridge/tapbridge/internal/routed"
	"github.com/tapbridge/tapbridge/internal/tap"
)

// Kinds of port in PortInfo.
const (
	KindUplink    = "uplink"     // the bridge's physical uplink
	KindVMTAP     = "vm-tap"     // the front of a VM's TAP (QEMU hooks, helper, tap add, CNI host mode)
	KindCNIVeth   = "cni-veth"   // the host end of a CNI netns-mode veth
	KindRoutedTAP = "routed-tap" // a routed VM's TAP (on no bridge)
	KindTAP       = "tap"        // a TAP that is a bridge port itself (not attached by tapbridge)
	KindOther     = "other"      // anything else on the bridge
)

// PortInfo is what an operator sees of one port: what it is, whose it is,
// and what guards it.
type PortInfo struct {
	Name     string            `json:"name"`
	Kind     string            `json:"kind"`
	TAP      string            `json:"tap,omitempty"`   // the TAP behind a front, or the port itself
	Owner    *int              `json:"owner,omitempty"` // uid allowed to open the TAP, when set
	GuestMAC string            `json:"guestMac,omitempty"`
	IPs      []netip.Addr      `json:"ips,omitempty"`
	Guards   []string          `json:"guards"`
	Isolated bool              `json:"isolated"`
	Drops    map[string]uint64 `json:"drops,omitempty"` // per guard, since the port got its policy
	Warnings []string          `json:"warnings,omitempty"`
}

// Ports describes every port of bridge br, and every routed VM port, in
// name order. uplink names the bridge's uplink ("" when unknown).
func Ports(br, uplink string) ([]PortInfo, error) {
	b, err := bridge.Get(br)
	if err != nil {
		return nil, err
	}
	links, err := bridge.Ports(b)
	if err != nil {
		return nil, err
	}
	var out []PortInfo
	for _, l := range links {
		out = append(out, describe(l, uplink))
	}
	names, err := routed.Ports()
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		p := PortInfo{Name: n, Kind: KindRoutedTAP, TAP: n, Guards: []string{"ip"}}
		if l, err := link.Get(n); err == nil {
			p.Owner = owner(l)
		} else {
			p.Warnings = append(p.Warnings, fmt.Sprintf("routed port %q is gone: run tapbridge gc", n))
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func describe(l netlink.Link, uplink string) PortInfo {
	a := l.Attrs()
	p := PortInfo{Name: a.Name, Kind: KindOther, Guards: []string{}}
	if info, ok := front.Of(l); ok {
		p.Kind, p.TAP = KindVMTAP, info.TAP
		if t, err := link.Get(info.TAP); err == nil {
			p.Owner = owner(t)
		} else {
			p.Warnings = append(p.Warnings, fmt.Sprintf("its TAP %q is gone: run tapbridge gc", info.TAP))
		}
	} else if _, isVeth := l.(*netlink.Veth); isVeth && a.HardwareAddr.String() == mac.HostPort(mac.FromName(a.Name)).String() {
		p.Kind = KindCNIVeth
	} else if t, isTAP := l.(*netlink.Tuntap); isTAP && t.Mode == netlink.TUNTAP_MODE_TAP {
		p.Kind, p.TAP, p.Owner = KindTAP, a.Name, owner(l)
	}
	if a.Name == uplink {
		p.Kind = KindUplink
		return p
	}
	if msg := front.Problem(l); msg != "" {
		p.Warnings = append(p.Warnings, msg)
	}
	if pi, err := netlink.LinkGetProtinfo(l); err == nil {
		p.Isolated = pi.Isolated
	}
	s, err := policy.Get(a.Name)
	switch {
	case errors.Is(err, policy.ErrNoPolicy):
		if p.Kind != KindOther {
			p.Warnings = append(p.Warnings, "no port policy: nothing guards what this VM sends")
		}
		return p
	case err != nil:
		p.Warnings = append(p.Warnings, err.Error())
		return p
	}
	if s.MAC != nil {
		p.GuestMAC = s.MAC.String()
	}
	p.IPs = s.IPs
	for _, g := range []struct {
		on   bool
		name string
	}{{s.MACSpoofCheck, "mac"}, {s.IPSpoofCheck, "ip"}, {s.DHCPGuard, "dhcp"}, {s.RAGuard, "ra"}, {s.BPDUGuard, "bpdu"}} {
		if g.on {
			p.Guards = append(p.Guards, g.name)
		}
	}
	if d, err := policy.Counters(a.Name); err == nil {
		p.Drops = d
	}
	return p
}

// owner is the uid a TAP belongs to, nil when it has none.
func owner(l netlink.Link) *int {
	info, err := tap.Inspect(l.Attrs().Name)
	if err != nil || info.Owner == tap.NoID {
		return nil
	}
	return &info.Owner
}
