package routed

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

const (
	tableName = "tapbridge_routed"
	// Priority raw (NF_IP_PRI_RAW): before conntrack, so a packet from a
	// forged source does not even make a connection entry.
	priorityRaw = -300
	// IFNAMSIZ: meta iifname loads the name zero-padded to 16 bytes.
	ifNameSize = 16

	protoUDP    = 17
	protoICMPv6 = 58
)

// Registers: a concatenation is loaded into consecutive 32-bit registers,
// NFT_REG32_00 (8) onwards; a 16-byte name takes four of them.
const (
	regName = 8  // NFT_REG32_00..03: the interface name
	regAddr = 12 // NFT_REG32_04..: the address that follows it
)

var table = &nftables.Table{Name: tableName, Family: nftables.TableFamilyINet}

// setIDs numbers the sets of a batch; see internal/policy.
var setIDs atomic.Uint32

func nameSet(name string) *nftables.Set {
	return &nftables.Set{Table: table, Name: name, ID: setIDs.Add(1), KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian}
}

func addrSet(name string, t nftables.SetDatatype) *nftables.Set {
	return &nftables.Set{Table: table, Name: name, ID: setIDs.Add(1), Concatenation: true, KeyType: nftables.MustConcatSetType(nftables.TypeIFName, t)}
}

// The sets of the table.
func sets() (ports, isolated, dhcp, ra, v4, v6 *nftables.Set) {
	return nameSet("ports"), nameSet("isolated"), nameSet("dhcpguard"), nameSet("raguard"),
		addrSet("v4src", nftables.TypeIPAddr), addrSet("v6src", nftables.TypeIP6Addr)
}

func ifKey(name string) []byte {
	k := make([]byte, ifNameSize)
	copy(k, name)
	return k
}

// batch sends what build adds as one atomic batch, retrying a batch that
// lost a race with another change of the ruleset.
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
		if err = c.Flush(); err == nil || !(errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR)) {
			return err
		}
	}
	return err
}

// tableExists asks for the ports set, which is only ever made with the
// rest of the table, in one batch.
func tableExists(c *nftables.Conn) (bool, error) {
	_, err := c.GetSetByName(table, "ports")
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	return err == nil, err
}

// addBase adds the table, its sets, chains and rules to the batch.
func addBase(c *nftables.Conn) error {
	c.AddTable(table)
	ports, isolated, dhcp, ra, v4, v6 := sets()
	for _, s := range []*nftables.Set{ports, isolated, dhcp, ra, v4, v6} {
		if err := c.AddSet(s, nil); err != nil {
			return err
		}
	}
	accept := nftables.ChainPolicyAccept
	pre := c.AddChain(&nftables.Chain{
		Name: "prerouting", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(priorityRaw), Policy: &accept,
	})
	fwd := c.AddChain(&nftables.Chain{
		Name: "forward", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	})
	rule := func(ch *nftables.Chain, e ...[]expr.Any) {
		c.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: concat(e...)})
	}
	const (
		nh = expr.PayloadBaseNetworkHeader
		th = expr.PayloadBaseTransportHeader
	)
	iif := meta(expr.MetaKeyIIFNAME, 1)
	ipv4 := concat(meta(expr.MetaKeyNFPROTO, 1), eq(unix.NFPROTO_IPV4))
	ipv6 := concat(meta(expr.MetaKeyNFPROTO, 1), eq(unix.NFPROTO_IPV6))

	// iifname != @ports return: everything else is not ours.
	rule(pre, iif, lookup(1, ports, true), verdict(expr.VerdictReturn))
	// iifname @dhcpguard udp sport 67 udp dport 68 drop (and 547 -> 546)
	rule(pre, iif, lookup(1, dhcp, false), ipv4, l4(protoUDP), load(th, 0, 4), eq(0, 67, 0, 68), verdict(expr.VerdictDrop))
	rule(pre, iif, lookup(1, dhcp, false), ipv6, l4(protoUDP), load(th, 0, 4), eq(0x02, 0x23, 0x02, 0x22), verdict(expr.VerdictDrop))
	// iifname @raguard icmpv6 type { nd-router-advert, nd-redirect } drop
	for _, t := range []byte{134, 137} {
		rule(pre, iif, lookup(1, ra, false), ipv6, l4(protoICMPv6), load(th, 0, 1), eq(t), verdict(expr.VerdictDrop))
	}
	// meta nfproto ipv4 iifname . ip saddr != @v4src drop
	rule(pre, ipv4, meta(expr.MetaKeyIIFNAME, regName), loadTo(nh, 12, 4, regAddr), lookup(regName, v4, true), verdict(expr.VerdictDrop))
	// ip6 saddr fe80::/10 return (neighbour discovery with the gateway)
	rule(pre, ipv6, load(nh, 8, 2), []expr.Any{&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 2, Mask: []byte{0xff, 0xc0}, Xor: []byte{0, 0}}}, eq(0xfe, 0x80), verdict(expr.VerdictReturn))
	// ip6 saddr :: meta l4proto icmpv6 return (duplicate address detection)
	rule(pre, ipv6, load(nh, 8, 16), eq(make([]byte, 16)...), l4(protoICMPv6), verdict(expr.VerdictReturn))
	// meta nfproto ipv6 iifname . ip6 saddr != @v6src drop
	rule(pre, ipv6, meta(expr.MetaKeyIIFNAME, regName), loadTo(nh, 8, 16, regAddr), lookup(regName, v6, true), verdict(expr.VerdictDrop))

	// iifname @isolated oifname @ports drop; iifname @ports oifname @isolated drop
	oif := meta(expr.MetaKeyOIFNAME, 1)
	rule(fwd, iif, lookup(1, isolated, false), oif, lookup(1, ports, false), verdict(expr.VerdictDrop))
	rule(fwd, iif, lookup(1, ports, false), oif, lookup(1, isolated, false), verdict(expr.VerdictDrop))
	return nil
}

// elements returns the set elements of s, per set name.
func elements(s Spec) map[string][]nftables.SetElement {
	k := ifKey(s.Port)
	one := []nftables.SetElement{{Key: k}}
	els := map[string][]nftables.SetElement{"ports": one}
	if s.Isolated {
		els["isolated"] = one
	}
	if s.DHCPGuard {
		els["dhcpguard"] = one
	}
	if s.RAGuard {
		els["raguard"] = one
	}
	for _, ip := range s.IPs {
		key := append(append([]byte(nil), k...), ip.AsSlice()...)
		name := "v4src"
		if ip.Is6() {
			name = "v6src"
		}
		els[name] = append(els[name], nftables.SetElement{Key: key})
	}
	return els
}

// addElements adds the port's elements, making the table first if need
// be, in one batch.
func addElements(s Spec) error {
	return batch(func(c *nftables.Conn) error {
		exists, err := tableExists(c)
		if err != nil {
			return err
		}
		if !exists {
			if err := addBase(c); err != nil {
				return err
			}
		}
		ports, isolated, dhcp, ra, v4, v6 := sets()
		byName := map[string]*nftables.Set{"ports": ports, "isolated": isolated, "dhcpguard": dhcp, "raguard": ra, "v4src": v4, "v6src": v6}
		for name, els := range elements(s) {
			if err := c.SetAddElements(byName[name], els); err != nil {
				return err
			}
		}
		return nil
	})
}

// delElements removes the port's elements in one batch; last deletes the
// whole table instead. Elements are added before they are deleted, so the
// batch does not fail on one that is missing.
func delElements(s Spec, last bool) error {
	err := batch(func(c *nftables.Conn) error {
		exists, err := tableExists(c)
		if err != nil || !exists {
			return err
		}
		if last {
			c.DelTable(table)
			return nil
		}
		ports, isolated, dhcp, ra, v4, v6 := sets()
		byName := map[string]*nftables.Set{"ports": ports, "isolated": isolated, "dhcpguard": dhcp, "raguard": ra, "v4src": v4, "v6src": v6}
		for name, els := range elements(s) {
			if err := c.SetAddElements(byName[name], els); err != nil {
				return err
			}
			if err := c.SetDeleteElements(byName[name], els); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

func concat(exprs ...[]expr.Any) []expr.Any {
	var all []expr.Any
	for _, e := range exprs {
		all = append(all, e...)
	}
	return all
}

func meta(k expr.MetaKey, reg uint32) []expr.Any {
	return []expr.Any{&expr.Meta{Key: k, Register: reg}}
}

func load(base expr.PayloadBase, off, n uint32) []expr.Any { return loadTo(base, off, n, 1) }

func loadTo(base expr.PayloadBase, off, n, reg uint32) []expr.Any {
	return []expr.Any{&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: reg, Base: base, Offset: off, Len: n}}
}

func eq(data ...byte) []expr.Any {
	return []expr.Any{&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data}}
}

func l4(p byte) []expr.Any { return concat(meta(expr.MetaKeyL4PROTO, 1), eq(p)) }

func lookup(reg uint32, s *nftables.Set, invert bool) []expr.Any {
	return []expr.Any{&expr.Lookup{SourceRegister: reg, SetName: s.Name, SetID: s.ID, Invert: invert}}
}

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }
