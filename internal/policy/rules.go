package policy

import (
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Ethernet types, IP protocols, ICMPv6 types and ports the rules look at.
const (
	etherIPv4   = 0x0800
	etherARP    = 0x0806
	etherIPv6   = 0x86dd
	ether8021Q  = 0x8100
	ether8021AD = 0x88a8
	ether9100   = 0x9100 // pre-standard QinQ outer tag

	protoUDP    = 17
	protoICMPv6 = 58
	ipv6Frag    = 44 // the fragment header

	icmp6EchoRequest = 128
	icmp6EchoReply   = 129
	icmp6MLDReport   = 131
	icmp6RS          = 133
	icmp6RA          = 134
	icmp6NS          = 135
	icmp6NA          = 136
	icmp6Redirect    = 137
	icmp6MLD2Report  = 143

	portBOOTPS = 67  // DHCPv4 server
	portBOOTPC = 68  // DHCPv4 client
	portDHCP6C = 546 // DHCPv6 client
	portDHCP6S = 547 // DHCPv6 server and relay agent
)

// DHCPv6 message types a server or relay agent sends (RFC 8415): ADVERTISE,
// REPLY, RECONFIGURE, RELAY-REPL.
var dhcp6ServerTypes = []byte{2, 7, 10, 13}

// ruleset writes rules into the batch that creates the table.
type ruleset struct {
	c    *nftables.Conn
	sets map[string]*nftables.Set
}

const (
	ll = expr.PayloadBaseLLHeader
	nh = expr.PayloadBaseNetworkHeader
	th = expr.PayloadBaseTransportHeader
)

func (w *ruleset) chain(name string) *nftables.Chain {
	return w.c.AddChain(&nftables.Chain{Name: name, Table: table})
}

func (w *ruleset) rule(ch *nftables.Chain, exprs ...[]expr.Any) {
	w.c.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: concat(exprs...)})
}

func concat(exprs ...[]expr.Any) []expr.Any {
	var all []expr.Any
	for _, e := range exprs {
		all = append(all, e...)
	}
	return all
}

// load loads n bytes at off of the link layer, network or transport header
// into register 1. loadTo loads into register reg: 1 and 2 are the first
// and second 16 bytes, 8 to 23 the 4-byte registers they are made of
// (12 starts the second 16 bytes); a concatenation's parts go one after
// the other, each rounded up to 4 bytes.
func load(base expr.PayloadBase, off, n uint32) []expr.Any { return loadTo(1, base, off, n) }

func loadTo(reg uint32, base expr.PayloadBase, off, n uint32) []expr.Any {
	return []expr.Any{&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: reg, Base: base, Offset: off, Len: n}}
}

func compare(op expr.CmpOp, data []byte) []expr.Any {
	return []expr.Any{&expr.Cmp{Op: op, Register: 1, Data: data}}
}

func eq(data ...byte) []expr.Any  { return compare(expr.CmpOpEq, data) }
func neq(data ...byte) []expr.Any { return compare(expr.CmpOpNeq, data) }
func gte(data []byte) []expr.Any  { return compare(expr.CmpOpGte, data) }
func lte(data []byte) []expr.Any  { return compare(expr.CmpOpLte, data) }

func be16(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }

// etherType matches the Ethernet type as it is on the wire: the payload
// expression puts back a VLAN tag the driver took off (nft_payload_copy_vlan),
// so a tagged frame shows its tag protocol here, whatever the offload.
func etherType(t uint16) []expr.Any { return concat(load(ll, 12, 2), eq(be16(t)...)) }

func l4proto(p byte) []expr.Any {
	return append([]expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}}, eq(p)...)
}

// icmp6Type matches an ICMPv6 message of type t (wherever its header is:
// the kernel walks the extension headers to find it).
func icmp6Type(t byte) []expr.Any { return concat(l4proto(protoICMPv6), load(th, 0, 1), eq(t)) }

// udpDport matches UDP to port p, whatever the source port.
func udpDport(p uint16) []expr.Any { return concat(l4proto(protoUDP), load(th, 2, 2), eq(be16(p)...)) }

var iifname = []expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}}

// lookup matches when register 1 onwards is (invert: is not) in set.
func (w *ruleset) lookup(set string, invert bool) []expr.Any {
	s := w.sets[set]
	return []expr.Any{&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, Invert: invert}}
}

// member matches a frame from a port in set.
func (w *ruleset) member(set string) []expr.Any { return concat(iifname, w.lookup(set, false)) }

// pair matches iifname . (n bytes at off of base) in set (invert: not in).
func (w *ruleset) pair(set string, base expr.PayloadBase, off, n uint32, invert bool) []expr.Any {
	return concat(iifname, loadTo(2, base, off, n), w.lookup(set, invert))
}

func verdict(k expr.VerdictKind, chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: k, Chain: chain}}
}

var (
	accept = verdict(expr.VerdictAccept, "")
	ret    = verdict(expr.VerdictReturn, "")
)

func jump(chain string) []expr.Any { return verdict(expr.VerdictJump, chain) }
func gotoChain(chain string) []expr.Any {
	return verdict(expr.VerdictGoto, chain)
}

// dropFor is the verdict of guard g: count, then drop.
func dropFor(g string) []expr.Any { return jump("drop_" + g) }

// addBase adds the table, its sets, its chains and all its rules to the
// batch. Adding what exists is a no-op, and every chain is flushed before
// its rules are added, so they are there exactly once however many
// processes race to create the table. It is only sent when the version set
// is missing: flushing chains that hold rules and re-adding a base chain
// each make the kernel wait for an RCU grace period (about 12 ms here), and
// rules that jump make it validate the whole table.
func addBase(c *nftables.Conn, sets map[string]*nftables.Set) error {
	c.AddTable(table)
	for _, name := range setNames {
		if err := c.AddSet(sets[name], nil); err != nil {
			return err
		}
	}
	accept := nftables.ChainPolicyAccept
	w := &ruleset{c: c, sets: sets}
	base := c.AddChain(&nftables.Chain{
		Name:     baseChain,
		Table:    table,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookPrerouting,
		Priority: nftables.ChainPriorityRef(priorityFilter),
		Policy:   &accept,
	})
	chains := map[string]*nftables.Chain{baseChain: base}
	for _, name := range []string{"ord4", "ord6", "vm", "reserved", "mac", "v4", "v4_dhcp", "v4_ip", "arp", "arp_ip", "v6", "v6_slow", "frag6", "v6_ip", "v6_nd", "nd_ns", "nd_na", "nd_rs", "v6_unspec"} {
		chains[name] = w.chain(name)
	}
	for _, g := range guards {
		chains["drop_"+g] = w.chain("drop_" + g)
	}
	for _, ch := range chains {
		c.FlushChain(ch)
	}
	return w.rules(chains)
}

// rules writes every rule. Checks that count most frames come first in a
// chain, and each rule starts with its cheapest comparison, so that the
// VM's own traffic meets few expressions.
func (w *ruleset) rules(ch map[string]*nftables.Chain) error {
	// bridge prerouting. An ordinary IP packet (see ord4 and ord6), from
	// any port, the uplink's included, is told apart by compares alone
	// and goes to ord4/ord6; everything else from a port with a policy
	// goes to vm. When a chain returns (or one it went to with goto), the
	// base chain's policy accepts.
	//
	// Ordinary IPv4: untagged (the Ethernet type on the wire, see
	// etherType), and either not UDP or UDP to another port than 67 and 68
	// and not fragmented. Ordinary IPv6: untagged, and TCP or UDP (to
	// another port than 546 and 547) right after the IPv6 header: no
	// extension header (so no fragment header) and no ICMPv6 (neighbour
	// discovery, RAs). For such a packet no guard but the two spoof checks
	// has anything to look at: DHCP, RA, tags and the fragments that could
	// hide them are excluded, and it is none of the link-local protocols
	// of the reserved group addresses (so it skips that check). A packet
	// the kernel could not parse has no transport protocol: its rules
	// fail, and it takes the long way.
	notDHCP4 := []expr.Any{&expr.Range{Op: expr.CmpOpNeq, Register: 1, FromData: be16(portBOOTPS), ToData: be16(portBOOTPC)}}
	notDHCP6 := []expr.Any{&expr.Range{Op: expr.CmpOpNeq, Register: 1, FromData: be16(portDHCP6C), ToData: be16(portDHCP6S)}}
	notFragment := concat(load(nh, 6, 2), []expr.Any{&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 2, Mask: be16(0x3fff), Xor: []byte{0, 0}}}, eq(0, 0))
	l4 := []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}}
	w.rule(ch[baseChain], etherType(etherIPv4), l4, neq(protoUDP), gotoChain("ord4"))
	w.rule(ch[baseChain], etherType(etherIPv4), l4proto(protoUDP), load(th, 2, 2), notDHCP4, notFragment, gotoChain("ord4"))
	w.rule(ch[baseChain], etherType(etherIPv6), load(nh, 6, 1), eq(6), gotoChain("ord6"))
	w.rule(ch[baseChain], etherType(etherIPv6), load(nh, 6, 1), eq(protoUDP), load(th, 2, 2), notDHCP6, gotoChain("ord6"))
	w.rule(ch[baseChain], w.member(setPolicies), jump("vm"))

	// ord4 and ord6: a port without a spoof check (or without a policy)
	// is done with one lookup; a port with both whose packet has the
	// VM's MAC and one of its addresses as sources is done with one more
	// (fast4/fast6 hold exactly what mac and v4_ip or v6_ip would let
	// through). Everything else takes the long way.
	for _, o := range []struct {
		chain, fast string
		saddr       uint32
		n           uint32
	}{{"ord4", setFast4, 12, 4}, {"ord6", setFast6, 8, 16}} {
		w.rule(ch[o.chain], iifname, w.lookup(setSpoof, true), accept)
		w.rule(ch[o.chain], iifname, loadTo(12, ll, 6, 6), loadTo(14, nh, o.saddr, o.n), w.lookup(o.fast, false), accept)
		w.rule(ch[o.chain], gotoChain("vm"))
	}

	// vm: one chain per Ethernet type.
	//
	// One hash lookup sends a frame to the chain of its Ethernet type. A
	// VLAN tag (802.1Q, 802.1ad, or the older 0x9100; single or double)
	// hides the frame's real type and payload from every rule, and a VM
	// port is an access port: any guard on drops every tagged frame. The
	// map is anonymous and constant, written with the table: its jumps
	// are validated once, not on every attach.
	dispatch := &nftables.Set{
		Table: table, Name: "__map%d", ID: setIDs.Add(1), Anonymous: true, Constant: true,
		IsMap: true, KeyType: nftables.TypeEtherType, DataType: nftables.TypeVerdict,
	}
	var els []nftables.SetElement
	for _, e := range []struct {
		etherType uint16
		chain     string
	}{
		{etherIPv4, "v4"}, {etherIPv6, "v6"}, {etherARP, "arp"},
		{ether8021Q, "drop_tagged"}, {ether8021AD, "drop_tagged"}, {ether9100, "drop_tagged"},
	} {
		els = append(els, nftables.SetElement{Key: be16(e.etherType), VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: e.chain}})
	}
	if err := w.c.AddSet(dispatch, els); err != nil {
		return err
	}
	// The Ethernet type as on the wire: the payload expression puts back
	// a VLAN tag the driver took off (nft_payload_copy_vlan), so a tagged
	// frame shows its tag protocol here, whatever the offload. IPv4, by
	// far the most frames, goes first, by a compare, cheaper than a
	// lookup; v4 looks at the reserved group addresses after its fast
	// path, the others right here.
	w.rule(ch["vm"], etherType(etherIPv4), gotoChain("v4"))
	w.rule(ch["vm"], jump("reserved"))
	w.rule(ch["vm"], load(ll, 12, 2), []expr.Any{&expr.Lookup{SourceRegister: 1, SetName: dispatch.Name, SetID: dispatch.ID, IsDestRegSet: true, DestRegister: 0}})
	// Any other type: the MAC check.
	w.rule(ch["vm"], jump("mac"))

	// mac: ether saddr must be the VM's MAC.
	w.rule(ch["mac"], w.member(setMACCheck), w.pair(setPortMAC, ll, 6, 6, true), dropFor("mac"))

	// v4: what ord4 did not take (DHCP, fragments, and ordinary packets
	// that failed the fast path). DHCP first (UDP to 67 or 68, see
	// v4_dhcp); then, as in ord4, fast4 (a DHCP renewal from the VM's own
	// address, say); then the reserved group addresses, the MAC and the
	// source address.
	w.rule(ch["v4"], l4proto(protoUDP), load(th, 2, 2), gte(be16(portBOOTPS)), lte(be16(portBOOTPC)), jump("v4_dhcp"))
	w.rule(ch["v4"], iifname, loadTo(12, ll, 6, 6), loadTo(14, nh, 12, 4), w.lookup(setFast4, false), accept)
	w.rule(ch["v4"], jump("reserved"))
	w.rule(ch["v4"], jump("mac"))
	w.rule(ch["v4"], w.member(setIPCheck), gotoChain("v4_ip"))

	// reserved: IEEE 802.1D reserved group addresses 01:80:c2:00:00:00-0f
	// (STP BPDUs, pause, LACP, 802.1X, LLDP...) are never meant to cross a
	// bridge. With bpduGuard none of them leaves a VM's port: the rule
	// sees every such frame the bridge would forward, which is all of
	// them with the kernel's STP off (the default after `up`) and those
	// group_fwd_mask lets through. With the kernel's STP on, a BPDU (00)
	// goes to the bridge's own STP before any hook, and the port's BPDU
	// guard flag disables the port; LLDP (0e) and the others the bridge
	// keeps are delivered to the host only, never to another port.
	// (The first four bytes alone first: a 4-byte load and compare is the
	// kernel's cheapest rule, and it fails for every other frame.)
	w.rule(ch["reserved"], load(ll, 0, 4), eq(0x01, 0x80, 0xc2, 0), load(ll, 4, 2),
		[]expr.Any{&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 2, Mask: []byte{0xff, 0xf0}, Xor: []byte{0, 0}}},
		eq(0, 0), w.member(setBPDU), dropFor("bpdu"))

	// v4_dhcp.
	//
	// Fragments: the kernel shows a rule the transport header of a first
	// fragment (offset 0) only; in later fragments a transport load fails
	// and its rule does not match (so a later fragment never comes here).
	// A later fragment cannot carry a UDP header (offset >= 8 bytes, the
	// header is bytes 0-7), so it cannot make a datagram DHCP: what it
	// belongs to was judged by its first fragment. A first fragment of a
	// datagram that is fragmented (MF set) always holds the whole UDP
	// header (its payload is a multiple of 8 bytes, and a 0-byte one leaves
	// the header to another offset-0 fragment, which is judged as a first
	// one too). DHCP never needs fragments, and a fragmented client
	// message could hide its chaddr in a later fragment: a first fragment
	// to port 67 or 68 is dropped.
	w.rule(ch["v4_dhcp"], load(nh, 6, 2),
		[]expr.Any{&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 2, Mask: be16(0x2000), Xor: []byte{0, 0}}},
		neq(0, 0), dropFor("fragment"))
	// DHCP guard: whatever the source port, nothing from a VM goes to the
	// client port 68, and no BOOTREPLY (op 2) goes to the server port 67
	// (which is what a server sends a relay agent).
	w.rule(ch["v4_dhcp"], load(th, 2, 2), eq(be16(portBOOTPC)...), w.member(setDHCP), dropFor("dhcp"))
	w.rule(ch["v4_dhcp"], load(th, 8, 1), eq(2), w.member(setDHCP), dropFor("dhcp"))
	// DHCP starvation: with the VM's MAC known, every message to port 67
	// names it as the client: htype Ethernet, hlen 6 (a longer chaddr
	// would make every message a new client) and chaddr (at 8+28) the
	// VM's MAC.
	w.rule(ch["v4_dhcp"], w.member(setChaddr), load(th, 2, 2), eq(be16(portBOOTPS)...), load(th, 9, 2), neq(1, 6), dropFor("chaddr"))
	w.rule(ch["v4_dhcp"], w.member(setChaddr), load(th, 2, 2), eq(be16(portBOOTPS)...), w.pair(setPortMAC, th, 36, 6, true), dropFor("chaddr"))

	// v4_ip: the source is the VM's, or 0.0.0.0 for a DHCP client's
	// message (UDP 68 -> 67) before it has an address.
	w.rule(ch["v4_ip"], w.pair(setPortIP4, nh, 12, 4, false), ret)
	w.rule(ch["v4_ip"], load(nh, 12, 4), eq(0, 0, 0, 0), l4proto(protoUDP), load(th, 0, 4), eq(0, portBOOTPC, 0, portBOOTPS), ret)
	w.rule(ch["v4_ip"], dropFor("ip"))

	// arp: with ipSpoofCheck, Ethernet/IPv4 ARP only (so that the offsets
	// below hold), the sender MAC the VM's when known, and the sender IP
	// the VM's, or 0.0.0.0 for an ARP probe. A packet too short for a
	// field passes its rule; the kernel's ARP (and every other) drops a
	// truncated ARP packet.
	w.rule(ch["arp"], jump("mac"))
	w.rule(ch["arp"], w.member(setIPCheck), gotoChain("arp_ip"))
	w.rule(ch["arp_ip"], load(nh, 0, 6), neq(0, 1, 0x08, 0x00, 6, 4), dropFor("ip"))
	w.rule(ch["arp_ip"], w.member(setHasMAC), w.pair(setPortMAC, nh, 8, 6, true), dropFor("ip"))
	w.rule(ch["arp_ip"], load(nh, 14, 4), eq(0, 0, 0, 0), ret)
	w.rule(ch["arp_ip"], w.pair(setPortIP4, nh, 14, 4, false), ret)
	w.rule(ch["arp_ip"], dropFor("ip"))

	// v6. Fragments first (see frag6), DHCPv6, then the fast path as in
	// v4, for anything but ICMPv6 (whose ND messages v6_nd must see).
	w.rule(ch["v6"], []expr.Any{&expr.Exthdr{DestRegister: 1, Type: ipv6Frag, Offset: 0, Len: 1, Flags: unix.NFT_EXTHDR_F_PRESENT, Op: expr.ExthdrOpIpv6}},
		eq(1), jump("frag6"))
	// DHCPv6 guard: nothing to the client port 546, and no server message
	// type to the server/relay port 547, whatever the source port.
	w.rule(ch["v6"], udpDport(portDHCP6C), w.member(setDHCP), dropFor("dhcp"))
	for _, t := range dhcp6ServerTypes {
		w.rule(ch["v6"], udpDport(portDHCP6S), load(th, 8, 1), eq(t), w.member(setDHCP), dropFor("dhcp"))
	}
	w.rule(ch["v6"], l4proto(protoICMPv6), gotoChain("v6_slow"))
	w.rule(ch["v6"], iifname, loadTo(12, ll, 6, 6), loadTo(14, nh, 8, 16), w.lookup(setFast6, false), accept)
	w.rule(ch["v6"], gotoChain("v6_slow"))
	// v6_slow. RA guard: router advertisements and redirects.
	w.rule(ch["v6_slow"], icmp6Type(icmp6RA), w.member(setRA), dropFor("ra"))
	w.rule(ch["v6_slow"], icmp6Type(icmp6Redirect), w.member(setRA), dropFor("ra"))
	w.rule(ch["v6_slow"], jump("mac"))
	w.rule(ch["v6_slow"], w.member(setIPCheck), gotoChain("v6_ip"))

	// frag6: an IPv6 packet with a fragment header, from any port with a
	// policy. The kernel finds a packet's transport header by walking its
	// extension headers; when the chain of headers does not end in the
	// first fragment (an RA whose ICMPv6 header is in the second one) it
	// finds none, and every rule that asks for the transport protocol or
	// header fails: such a packet matches none of the returns below and is
	// dropped. A later fragment (offset != 0) carries no transport header:
	// it only completes a datagram whose first fragment was judged, so it
	// returns. A first fragment returns when it is neither DHCPv6 nor an
	// ICMPv6 message other than echo request/reply: fragmented ND, RA,
	// redirects, MLD and DHCPv6 are dropped (RFC 6980 forbids fragmented
	// ND), large pings and fragmented TCP/UDP of other ports pass.
	w.rule(ch["frag6"], []expr.Any{&expr.Exthdr{DestRegister: 1, Type: ipv6Frag, Offset: 2, Len: 2, Op: expr.ExthdrOpIpv6}},
		[]expr.Any{&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 2, Mask: be16(0xfff8), Xor: []byte{0, 0}}},
		neq(0, 0), ret)
	w.rule(ch["frag6"], udpDport(portDHCP6C), dropFor("fragment"))
	w.rule(ch["frag6"], udpDport(portDHCP6S), dropFor("fragment"))
	w.rule(ch["frag6"], icmp6Type(icmp6EchoRequest), ret)
	w.rule(ch["frag6"], icmp6Type(icmp6EchoReply), ret)
	w.rule(ch["frag6"], l4proto(protoICMPv6), dropFor("fragment"))
	w.rule(ch["frag6"], []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}}, neq(protoICMPv6), ret)
	w.rule(ch["frag6"], dropFor("fragment"))

	// v6_ip: the source must be one of the VM's addresses, its own
	// link-local address included (the EUI-64 one of its MAC, and any
	// fe80:: address in its IPs): never another host's, link-local or
	// not. From :: see v6_unspec.
	w.rule(ch["v6_ip"], load(nh, 8, 16), eq(make([]byte, 16)...), gotoChain("v6_unspec"))
	w.rule(ch["v6_ip"], w.pair(setPortIP6, nh, 8, 16, false), gotoChain("v6_nd"))
	w.rule(ch["v6_ip"], dropFor("ip"))

	// v6_nd: neighbour discovery from the VM's own address. A host that
	// receives an NS or an RS maps its source to the source link-layer
	// address option; an NA maps its target to the target link-layer
	// address option. The source is checked above; the NA target must be
	// the VM's too, and the link-layer option the VM's MAC. Options come
	// in any order and number, which rules at fixed offsets cannot follow,
	// so what passes is exactly what a guest's stack sends: the message
	// with no option, or with one link-layer address option (type 1 or 2,
	// length 1) right after the fixed part, holding the VM's MAC; the IPv6
	// payload length (which counts extension headers too) must be that
	// size. Anything else is dropped. With the MAC unknown, port_mac holds
	// nothing for the port: every message with a link-layer option is
	// dropped (fail-closed), which leaves such a VM without working IPv6
	// neighbour discovery: give it its MAC.
	w.rule(ch["v6_nd"], icmp6Type(icmp6NS), gotoChain("nd_ns"))
	w.rule(ch["v6_nd"], icmp6Type(icmp6NA), gotoChain("nd_na"))
	w.rule(ch["v6_nd"], icmp6Type(icmp6RS), gotoChain("nd_rs"))
	// NS: type, code, checksum, reserved (4), target (16); options at 24.
	w.rule(ch["nd_ns"], load(nh, 4, 2), eq(be16(24)...), accept)
	w.rule(ch["nd_ns"], load(nh, 4, 2), eq(be16(32)...), load(th, 24, 2), eq(1, 1), w.pair(setPortMAC, th, 26, 6, false), accept)
	w.rule(ch["nd_ns"], dropFor("nd"))
	// NA: the target at 8 must be the VM's; options at 24.
	w.rule(ch["nd_na"], load(nh, 4, 2), eq(be16(24)...), w.pair(setPortIP6, th, 8, 16, false), accept)
	w.rule(ch["nd_na"], load(nh, 4, 2), eq(be16(32)...), load(th, 24, 2), eq(2, 1), w.pair(setPortIP6, th, 8, 16, false), w.pair(setPortMAC, th, 26, 6, false), accept)
	w.rule(ch["nd_na"], dropFor("nd"))
	// RS: type, code, checksum, reserved (4); options at 8.
	w.rule(ch["nd_rs"], load(nh, 4, 2), eq(be16(8)...), accept)
	w.rule(ch["nd_rs"], load(nh, 4, 2), eq(be16(16)...), load(th, 8, 2), eq(1, 1), w.pair(setPortMAC, th, 10, 6, false), accept)
	w.rule(ch["nd_rs"], dropFor("nd"))

	// v6_unspec: from :: only duplicate address detection of one of the
	// VM's own addresses (an NS whose target is the VM's; it carries no
	// link-layer option, RFC 4861 7.1.1), router solicitations and MLD
	// reports, which a host sends before it has an address.
	w.rule(ch["v6_unspec"], icmp6Type(icmp6NS), w.pair(setPortIP6, th, 8, 16, false), accept)
	w.rule(ch["v6_unspec"], icmp6Type(icmp6NS), dropFor("nd"))
	w.rule(ch["v6_unspec"], icmp6Type(icmp6RS), accept)
	w.rule(ch["v6_unspec"], icmp6Type(icmp6MLDReport), accept)
	w.rule(ch["v6_unspec"], icmp6Type(icmp6MLD2Report), accept)
	w.rule(ch["v6_unspec"], dropFor("ip"))

	// drop_<guard>: count the frame for its port (the lookup updates the
	// counter of the port's element; a port without one still drops),
	// then count it for the guard and drop it.
	for i, g := range guards {
		c := ch["drop_"+g]
		w.rule(c, iifname, []expr.Any{&expr.Immediate{Register: 2, Data: guardKey(i)}}, w.lookup(setDrops, false))
		w.rule(c, []expr.Any{&expr.Counter{}}, verdict(expr.VerdictDrop, ""))
	}
	return nil
}
