package uplink

import (
	"net"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/tapbridge/tapbridge/internal/state"
)

// Journal phases.
const (
	phaseMigrating = "migrating" // Up started; the snapshot is the truth
	phaseUp        = "up"        // the bridge holds the uplink
	phaseRestoring = "restoring" // Down (or a rollback) started
)

// JournalVersion is the schema version of the journal this tapbridge
// writes; a journal of another version is set aside, never acted on.
const JournalVersion = 1

// Journal is the on-disk record of one bridge's uplink: what the uplink
// looked like before tapbridge changed anything, and how far it got.
type Journal struct {
	Version int `json:"version"`
	// Host, UplinkIndex and UplinkPermMAC say which live objects the
	// journal describes: the network namespace and boot it was written in,
	// and the uplink device itself (a name is reused, a device is not).
	Host          state.Host `json:"host"`
	UplinkIndex   int        `json:"uplinkIndex"`
	UplinkPermMAC string     `json:"uplinkPermMac,omitempty"`
	// SetAside, in a journal that was set aside, says why.
	SetAside string `json:"setAside,omitempty"`

	Bridge        string `json:"bridge"`
	Uplink        string `json:"uplink"`
	Phase         string `json:"phase"`
	BridgeCreated bool   `json:"bridgeCreated"`
	// BridgeMAC is the MAC an existing bridge had before it took the
	// uplink's; Down gives it back.
	BridgeMAC string `json:"bridgeMac,omitempty"`
	// BridgeAddrs are the addresses an existing bridge held before: Down
	// leaves them on the bridge.
	BridgeAddrs []string `json:"bridgeAddrs,omitempty"`
	// BridgeWasDown: an existing bridge was administratively down before.
	BridgeWasDown bool `json:"bridgeWasDown,omitempty"`
	// BridgeRules are the rules that named the bridge before up (ruleKey):
	// Down leaves them naming it.
	BridgeRules []string  `json:"bridgeRules,omitempty"`
	Time        time.Time `json:"time"`

	MAC      string `json:"mac"`
	MTU      int    `json:"mtu"`
	WasUp    bool   `json:"wasUp"`
	RPFilter string `json:"rpFilter,omitempty"`

	Addrs  []Addr         `json:"addrs"`
	Routes []Route        `json:"routes"`
	Rules  []netlink.Rule `json:"rules"`
}

// Addr is an address of the uplink, as the kernel reported it.
type Addr struct {
	CIDR      string `json:"cidr"`
	Label     string `json:"label,omitempty"`
	Flags     int    `json:"flags,omitempty"`
	Scope     int    `json:"scope,omitempty"`
	Broadcast string `json:"broadcast,omitempty"`
	Peer      string `json:"peer,omitempty"`
	// Lifetimes in seconds, remaining at snapshot time; 0xffffffff is forever.
	PreferedLft int `json:"preferedLft"`
	ValidLft    int `json:"validLft"`
}

// Route is a route through the uplink, as the kernel reported it.
type Route struct {
	Family   int    `json:"family"`
	Dst      string `json:"dst,omitempty"`
	Src      string `json:"src,omitempty"`
	Gw       string `json:"gw,omitempty"`
	Table    int    `json:"table"`
	Priority int    `json:"priority,omitempty"`
	Protocol int    `json:"protocol,omitempty"`
	Scope    int    `json:"scope,omitempty"`
	Type     int    `json:"type,omitempty"`
	Tos      int    `json:"tos,omitempty"`
	Flags    int    `json:"flags,omitempty"`
	MTU      int    `json:"mtu,omitempty"`
	AdvMSS   int    `json:"advmss,omitempty"`
}

func journalPath(br string) string { return state.Path("uplink", br+".json") }

func readJournal(br string) (*Journal, error) {
	var j Journal
	if err := state.ReadJSON(journalPath(br), &j); err != nil {
		return nil, err
	}
	return &j, nil
}

func (j *Journal) save() error { return state.WriteJSON(journalPath(j.Bridge), j) }

func removeJournal(br string) error { return state.Remove(journalPath(br)) }

func addrFrom(a netlink.Addr) Addr {
	out := Addr{
		CIDR:        a.IPNet.String(),
		Label:       a.Label,
		Flags:       a.Flags,
		Scope:       a.Scope,
		PreferedLft: a.PreferedLft,
		ValidLft:    a.ValidLft,
	}
	if a.Broadcast != nil {
		out.Broadcast = a.Broadcast.String()
	}
	if a.Peer != nil {
		out.Peer = a.Peer.String()
	}
	return out
}

// netlink returns the address for link, relabelled from the uplink's name to
// the link's (eth0:1 becomes br0:1), with extra flags.
func (a Addr) netlink(uplink, link string, extraFlags int) (*netlink.Addr, error) {
	n, err := netlink.ParseAddr(a.CIDR)
	if err != nil {
		return nil, err
	}
	n.Flags = a.Flags | extraFlags
	n.Scope = a.Scope
	n.PreferedLft, n.ValidLft = a.PreferedLft, a.ValidLft
	if a.Broadcast != "" {
		n.Broadcast = net.ParseIP(a.Broadcast)
	} else if n.IP.To4() != nil {
		// netlink computes a broadcast address when none is given; 0.0.0.0
		// keeps an address that had none without one.
		n.Broadcast = net.IPv4zero
	}
	if a.Peer != "" {
		if n.Peer, err = netlink.ParseIPNet(a.Peer); err != nil {
			return nil, err
		}
	}
	if a.Label != "" && n.IP.To4() != nil {
		if len(a.Label) >= len(uplink) && a.Label[:len(uplink)] == uplink {
			n.Label = link + a.Label[len(uplink):]
		}
		if len(n.Label) > 15 {
			n.Label = link // a label longer than IFNAMSIZ is refused
		}
	}
	return n, nil
}

func (a Addr) ip() net.IP {
	ip, _, _ := net.ParseCIDR(a.CIDR)
	return ip
}

func routeFrom(r netlink.Route) Route {
	out := Route{
		Family:   r.Family,
		Table:    r.Table,
		Priority: r.Priority,
		Protocol: int(r.Protocol),
		Scope:    int(r.Scope),
		Type:     r.Type,
		Tos:      r.Tos,
		Flags:    r.Flags & int(netlink.FLAG_ONLINK),
		MTU:      r.MTU,
		AdvMSS:   r.AdvMSS,
	}
	if r.Dst != nil {
		out.Dst = r.Dst.String()
	}
	if r.Src != nil {
		out.Src = r.Src.String()
	}
	if r.Gw != nil {
		out.Gw = r.Gw.String()
	}
	return out
}

// netlink returns the route through the link with index idx.
func (r Route) netlink(idx int) (*netlink.Route, error) {
	n := &netlink.Route{
		LinkIndex: idx,
		Family:    r.Family,
		Table:     r.Table,
		Priority:  r.Priority,
		Protocol:  netlink.RouteProtocol(r.Protocol),
		Scope:     netlink.Scope(r.Scope),
		Type:      r.Type,
		Tos:       r.Tos,
		Flags:     r.Flags,
		MTU:       r.MTU,
		AdvMSS:    r.AdvMSS,
	}
	var err error
	if r.Dst != "" {
		if n.Dst, err = netlink.ParseIPNet(r.Dst); err != nil {
			return nil, err
		}
	}
	n.Src = net.ParseIP(r.Src)
	n.Gw = net.ParseIP(r.Gw)
	return n, nil
}

// isDefault reports whether r is a default route. Since netlink v1.2.1 the
// Dst of a default route is 0.0.0.0/0 or ::/0, not nil.
func (r Route) isDefault() bool {
	if r.Dst == "" {
		return true
	}
	_, n, err := net.ParseCIDR(r.Dst)
	if err != nil {
		return false
	}
	ones, _ := n.Mask.Size()
	return ones == 0
}
