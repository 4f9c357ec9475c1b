package policy

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

const (
	tableName   = "tapbridge"
	baseChain   = "prerouting"
	mapName     = "ports"
	chainPrefix = "port-"
	// NF_BR_PRI_FILTER_BRIDGED: what nft calls "priority filter" in the
	// bridge family.
	priorityFilter = -200
	// IFNAMSIZ: meta iifname loads the name zero-padded to 16 bytes.
	ifNameSize = 16
)

// Ethernet types, IP protocols and ICMPv6 types the rules look at.
const (
	etherIPv4   = 0x0800
	etherARP    = 0x0806
	etherIPv6   = 0x86dd
	ether8021Q  = 0x8100
	ether8021AD = 0x88a8

	protoUDP    = 17
	protoICMPv6 = 58

	icmp6RS       = 133
	icmp6RA       = 134
	icmp6NS       = 135
	icmp6NA       = 136
	icmp6Redirect = 137
)

var table = &nftables.Table{Name: tableName, Family: nftables.TableFamilyBridge}

func chainName(port string) string { return chainPrefix + port }

func portChain(port string) *nftables.Chain {
	return &nftables.Chain{Name: chainName(port), Table: table}
}

// setIDs numbers the sets of a batch. google/nftables numbers them with an
// unguarded global when ID is 0; ours is safe for concurrent Apply calls.
var setIDs atomic.Uint32

func portsMap() *nftables.Set {
	return &nftables.Set{
		Table: table, Name: mapName, ID: setIDs.Add(1),
		IsMap: true, KeyType: nftables.TypeIFName, DataType: nftables.TypeVerdict,
		// So that nft(8) prints the names rather than byte-swapped ones.
		KeyByteOrder: binaryutil.NativeEndian,
	}
}

func mapElement(port string) []nftables.SetElement {
	key := make([]byte, ifNameSize)
	copy(key, port)
	return []nftables.SetElement{{
		Key:         key,
		VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: chainName(port)},
	}}
}

// batch builds one netlink batch with build and sends it. Batches are
// atomic: on an error nothing of it is left. A batch that lost a race with
// another process changing the table (EEXIST, EBUSY, EAGAIN, EINTR) is
// built and sent again, a few times.
func batch(build func(c *nftables.Conn) error) error {
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 5 * time.Millisecond)
		}
		var c *nftables.Conn
		if c, err = nftables.New(); err != nil {
			return err
		}
		if err = build(c); err != nil {
			return err
		}
		if err = c.Flush(); err == nil || !retryable(err) {
			return err
		}
	}
	return err
}

func retryable(err error) bool {
	return errors.Is(err, unix.EEXIST) || errors.Is(err, unix.EBUSY) ||
		errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR)
}

// baseExists reports whether the table, its base chain and the port map
// are there. They are only ever created together, in one batch, so the map
// stands for all three.
func baseExists(c *nftables.Conn) (bool, error) {
	_, err := c.GetSetByName(table, mapName)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	return err == nil, err
}

// addBase adds the table, the dispatching base chain and the port map to
// the batch. Adding what exists is a no-op, and the base chain's one rule is
// flushed before it is added, so it is there exactly once however many
// processes race to create it. It is only sent when the map is missing:
// flushing a chain that holds rules, and re-adding a base chain, each make
// the kernel wait for an RCU grace period (about 12 ms here), which would
// cost every Apply.
func addBase(c *nftables.Conn) error {
	c.AddTable(table)
	accept := nftables.ChainPolicyAccept
	base := c.AddChain(&nftables.Chain{
		Name:     baseChain,
		Table:    table,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookPrerouting,
		Priority: nftables.ChainPriorityRef(priorityFilter),
		Policy:   &accept,
	})
	m := portsMap()
	if err := c.AddSet(m, nil); err != nil {
		return err
	}
	c.FlushChain(base)
	c.AddRule(&nftables.Rule{Table: table, Chain: base, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: m.Name, SetID: m.ID, IsDestRegSet: true, DestRegister: 0},
	}})
	return nil
}

// applyRules adds or replaces the port's chain and map element, creating
// the table first if need be, in one batch.
func applyRules(port string, s Spec) error {
	return batch(func(c *nftables.Conn) error {
		exists, err := baseExists(c)
		if err != nil {
			return fmt.Errorf("looking for table bridge %s: %w", tableName, err)
		}
		if !exists {
			if err := addBase(c); err != nil {
				return err
			}
		}
		ch := c.AddChain(portChain(port))
		c.FlushChain(ch)
		w := &chainWriter{c: c, ch: ch}
		w.portRules(s)
		return c.SetAddElements(portsMap(), mapElement(port))
	})
}

// removeRules deletes the port's map element and chain, in one batch, when
// the chain is there: a batch the kernel refuses costs an RCU grace period
// (see addBase), so "nothing to remove" is asked first. The element is added
// before it is deleted, so the batch does not fail when only the element is
// missing. ENOENT then means another process removed the chain, or the map
// went first; the chain alone is tried once more.
func removeRules(port string) error {
	exists, err := chainExists(chainName(port))
	if err != nil || !exists {
		return err
	}
	err = batch(func(c *nftables.Conn) error {
		m := portsMap()
		if err := c.SetAddElements(m, mapElement(port)); err != nil {
			return err
		}
		if err := c.SetDeleteElements(m, mapElement(port)); err != nil {
			return err
		}
		c.FlushChain(portChain(port))
		c.DelChain(portChain(port))
		return nil
	})
	if !errors.Is(err, unix.ENOENT) {
		return err
	}
	err = batch(func(c *nftables.Conn) error {
		c.FlushChain(portChain(port))
		c.DelChain(portChain(port))
		return nil
	})
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// chainExists asks the kernel for one chain of the table. google/nftables'
// ListChain drops the errno, so this speaks nfnetlink itself.
func chainExists(name string) (bool, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_CHAIN_TABLE, Data: []byte(tableName + "\x00")},
		{Type: unix.NFTA_CHAIN_NAME, Data: []byte(name + "\x00")},
	})
	if err != nil {
		return false, err
	}
	_, err = conn.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETCHAIN),
			Flags: netlink.Request,
		},
		// struct nfgenmsg: family, version, resource id
		Data: append([]byte{unix.NFPROTO_BRIDGE, unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
	switch {
	case errors.Is(err, unix.ENOENT):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("looking for chain %q: %w", name, err)
	}
	return true, nil
}

// Ports returns the names of the ports that have a chain in the current
// network namespace, sorted, so a garbage collector can remove those whose
// port is gone.
func Ports() ([]string, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, err
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyBridge)
	if err != nil {
		return nil, fmt.Errorf("listing nftables chains: %w", err)
	}
	var ports []string
	for _, ch := range chains {
		if ch.Table != nil && ch.Table.Name == tableName && strings.HasPrefix(ch.Name, chainPrefix) {
			ports = append(ports, strings.TrimPrefix(ch.Name, chainPrefix))
		}
	}
	sort.Strings(ports)
	return ports, nil
}

// chainWriter appends rules to a chain in a batch. Every rule loads into
// register 1; a rule's comparisons must all hold for its verdict to apply.
type chainWriter struct {
	c  *nftables.Conn
	ch *nftables.Chain
}

func (w *chainWriter) rule(exprs ...[]expr.Any) {
	w.c.AddRule(&nftables.Rule{Table: table, Chain: w.ch, Exprs: concat(exprs...)})
}

var (
	drop = []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}
	ret  = []expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}}
)

// load loads n bytes at off of the link layer, network or transport header.
func load(base expr.PayloadBase, off, n uint32) []expr.Any {
	return []expr.Any{&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: base, Offset: off, Len: n}}
}

func compare(op expr.CmpOp, data []byte) []expr.Any {
	return []expr.Any{&expr.Cmp{Op: op, Register: 1, Data: data}}
}

func eq(data ...byte) []expr.Any  { return compare(expr.CmpOpEq, data) }
func neq(data ...byte) []expr.Any { return compare(expr.CmpOpNeq, data) }

// proto matches the frame's protocol after the kernel took one VLAN tag
// off (skb->protocol): a tagged frame meets the same checks as an untagged
// one.
func proto(etherType uint16) []expr.Any {
	return append([]expr.Any{&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1}}, eq(be16(etherType)...)...)
}

func l4proto(p byte) []expr.Any {
	return append([]expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}}, eq(p)...)
}

// notLinkLocal matches an IPv6 address at off that is outside fe80::/10.
func notLinkLocal(base expr.PayloadBase, off uint32) []expr.Any {
	return append(load(base, off, 2),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 2, Mask: []byte{0xff, 0xc0}, Xor: []byte{0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0xfe, 0x80}})
}

// notIn matches register 1 against none of vals: a comparison per value,
// all of which must hold. A VM has a handful of addresses; anonymous sets
// would cost more, since the kernel names each one by scanning every set of
// the table (O(ports) per Apply).
func notIn(vals [][]byte) []expr.Any {
	var e []expr.Any
	for _, v := range vals {
		e = append(e, neq(v...)...)
	}
	return e
}

// portRules writes s as rules. Every check is a drop; the only other
// verdicts are the returns that let through what must stay allowed (DHCPv4
// from 0.0.0.0, duplicate address detection) before the drop that would
// catch it. What no rule drops returns to the base chain, which accepts.
func (w *chainWriter) portRules(s Spec) {
	var v4, v6 [][]byte
	for _, ip := range s.IPs {
		if ip = ip.Unmap(); ip.Is4() {
			a := ip.As4()
			v4 = append(v4, a[:])
		} else {
			a := ip.As16()
			v6 = append(v6, a[:])
		}
	}
	const (
		ll = expr.PayloadBaseLLHeader
		nh = expr.PayloadBaseNetworkHeader
		th = expr.PayloadBaseTransportHeader
	)
	zero4 := make([]byte, 4)
	zero6 := make([]byte, 16)
	ip6 := proto(etherIPv6)
	icmp6Type := func(t byte) []expr.Any {
		return concat(l4proto(protoICMPv6), load(th, 0, 1), eq(t))
	}

	if s.MACSpoofCheck {
		// ether saddr != MAC drop
		w.rule(load(ll, 6, 6), neq(s.MAC...), drop)
	}
	if s.IPSpoofCheck {
		// A second tag hides the IP header from every rule below.
		w.rule(proto(ether8021Q), drop)
		w.rule(proto(ether8021AD), drop)
	}
	if s.DHCPGuard {
		// udp sport 67 udp dport 68 drop; udp sport 547 udp dport 546 drop
		w.rule(proto(etherIPv4), l4proto(protoUDP), load(th, 0, 4), eq(0, 67, 0, 68), drop)
		w.rule(ip6, l4proto(protoUDP), load(th, 0, 4), eq(0x02, 0x23, 0x02, 0x22), drop)
	}
	if s.RAGuard {
		// icmpv6 type { nd-router-advert, nd-redirect } drop
		w.rule(ip6, icmp6Type(icmp6RA), drop)
		w.rule(ip6, icmp6Type(icmp6Redirect), drop)
	}
	if !s.IPSpoofCheck {
		return
	}

	// IPv4: a DHCP client without an address yet, then the source.
	w.rule(proto(etherIPv4), load(nh, 12, 4), eq(zero4...), l4proto(protoUDP), load(th, 0, 4), eq(0, 68, 0, 67), ret)
	w.rule(proto(etherIPv4), load(nh, 12, 4), notIn(v4), drop)

	// ARP: Ethernet/IPv4 only (so the offsets below hold), the sender MAC,
	// and the sender IP unless it is an ARP probe's 0.0.0.0.
	w.rule(proto(etherARP), load(nh, 0, 6), neq(0, 1, 0x08, 0x00, 6, 4), drop)
	if s.MAC != nil {
		w.rule(proto(etherARP), load(nh, 8, 6), neq(s.MAC...), drop)
	}
	w.rule(proto(etherARP), load(nh, 14, 4), neq(zero4...), notIn(v4), drop)

	// IPv6: the source must be the VM's, link-local or :: ...
	w.rule(ip6, load(nh, 8, 16), notIn(v6), neq(zero6...), notLinkLocal(nh, 8), drop)
	// ... a neighbour advertisement's target the VM's or link-local ...
	w.rule(ip6, icmp6Type(icmp6NA), load(th, 8, 16), notIn(v6), notLinkLocal(th, 8), drop)
	// ... and from :: only ICMPv6 (duplicate address detection, router
	// solicitations, MLD reports), DAD only for the VM's own or a link-local
	// address.
	unspec := concat(load(nh, 8, 16), eq(zero6...))
	w.rule(ip6, unspec, icmp6Type(icmp6NS), load(th, 8, 16), notIn(v6), notLinkLocal(th, 8), drop)
	w.rule(ip6, unspec, l4proto(protoICMPv6), ret)
	w.rule(ip6, unspec, drop)
}

func concat(exprs ...[]expr.Any) []expr.Any {
	var all []expr.Any
	for _, e := range exprs {
		all = append(all, e...)
	}
	return all
}

func be16(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }
