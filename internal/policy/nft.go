package policy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"golang.org/x/sys/unix"
)

// The ruleset is fixed: its chains and rules are written once, when the
// table is created, and never again. What differs from port to port lives
// in plain sets keyed by the port's name, so adding a port adds elements
// and nothing else. That matters: the kernel re-validates every chain of a
// table (nft_chain_validate) when a batch adds a rule or a map element
// that jumps, so a chain per port made every attach cost O(ports); set
// elements without verdicts are not validated at all.
//
// A frame from a port named in policies goes through chain vm; every drop
// is a jump to drop_<guard>, which counts the frame for the port and the
// guard in the drops set and drops it. The checks that allow (source
// address, ND options) are written the other way round where a short
// packet could hide a field: the rule that lets the frame through must
// match, and what matches no such rule is dropped (a payload load past the
// end of the packet makes its rule fail: NFT_BREAK).

const (
	tableName = "tapbridge"
	baseChain = "prerouting"
	// NF_BR_PRI_FILTER_BRIDGED: what nft calls "priority filter" in the
	// bridge family.
	priorityFilter = -200
	// IFNAMSIZ: meta iifname loads the name zero-padded to 16 bytes.
	ifNameSize = 16
)

// The sets. Membership sets hold port names; the port_* sets hold a port's
// name concatenated with an address it may use.
const (
	setPolicies = "policies"     // every port with a policy; the comment is its record
	setSpoof    = "spoof_check"  // MACSpoofCheck or IPSpoofCheck
	setMACCheck = "mac_check"    // MACSpoofCheck
	setIPCheck  = "ip_check"     // IPSpoofCheck
	setDHCP     = "dhcp_guard"   // DHCPGuard
	setRA       = "ra_guard"     // RAGuard
	setBPDU     = "bpdu_guard"   // BPDUGuard
	setChaddr   = "chaddr_check" // MAC known and MACSpoofCheck or IPSpoofCheck
	setHasMAC   = "has_mac"      // MAC known
	setPortMAC  = "port_mac"     // iifname . ether_addr
	setPortIP4  = "port_ip4"     // iifname . ipv4_addr, with IPSpoofCheck
	setPortIP6  = "port_ip6"     // iifname . ipv6_addr, with IPSpoofCheck
	setDrops    = "drops"        // iifname . guard id, each with a counter
	setFast4    = "fast4"        // iifname . ether_addr . ipv4_addr, both spoof checks
	setFast6    = "fast6"        // iifname . ether_addr . ipv6_addr, both spoof checks
)

// setVersion is an empty set that names the version of the fixed rules.
// It is created in the batch that writes them, and baseExists looks for
// it: a table whose rules are of another version gets its chains
// rewritten (flushed and written again, in one batch) by the next Filter
// that gives a port its first policy, while its sets and their elements,
// the ports' policies, stay.
const setVersion = "ruleset_1"

var setNames = []string{
	setPolicies, setSpoof, setMACCheck, setIPCheck, setDHCP, setRA, setBPDU, setChaddr, setHasMAC,
	setPortMAC, setPortIP4, setPortIP6, setDrops, setFast4, setFast6, setVersion,
}

// guards are the reasons a frame is dropped, each counted per port (the
// keys of Counters). Their ids (index + 1) are the second half of a drops
// key: append only.
var guards = []string{"bpdu", "tagged", "mac", "ip", "nd", "dhcp", "chaddr", "ra", "fragment"}

// guardKey is the id of guards[i] as the second half of a drops key: a
// mark, which nft(8) reads in host byte order.
func guardKey(i int) []byte { return binary.NativeEndian.AppendUint32(nil, uint32(i+1)) }

var (
	ifnameMAC  = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeEtherAddr)
	ifnameIP4  = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIPAddr)
	ifnameIP6  = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIP6Addr)
	ifnameMark = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeMark)
	fast4Type  = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeEtherAddr, nftables.TypeIPAddr)
	fast6Type  = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeEtherAddr, nftables.TypeIP6Addr)
)

var table = &nftables.Table{Name: tableName, Family: nftables.TableFamilyBridge}

// setIDs numbers the sets of a batch. google/nftables numbers them with an
// unguarded global when ID is 0; ours is safe for concurrent calls.
var setIDs atomic.Uint32

// sets returns the table's sets with fresh IDs, by name, for one batch:
// rules and elements added in the batch that creates a set find it by ID.
func sets() map[string]*nftables.Set {
	m := map[string]*nftables.Set{}
	for _, name := range []string{setPolicies, setSpoof, setMACCheck, setIPCheck, setDHCP, setRA, setBPDU, setChaddr, setHasMAC, setVersion} {
		// KeyByteOrder: so that nft(8) prints names, not byte-swapped ones.
		m[name] = &nftables.Set{Table: table, Name: name, ID: setIDs.Add(1), KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian}
	}
	for name, t := range map[string]nftables.SetDatatype{setPortMAC: ifnameMAC, setPortIP4: ifnameIP4, setPortIP6: ifnameIP6, setDrops: ifnameMark, setFast4: fast4Type, setFast6: fast6Type} {
		m[name] = &nftables.Set{Table: table, Name: name, ID: setIDs.Add(1), KeyType: t, Concatenation: true}
	}
	// Every element of drops gets a counter; a lookup that finds an
	// element updates it (kernel 5.13+, nft_set_elem_update_expr).
	m[setDrops].Counter = true
	return m
}

// elem is one set element of a port: its set and key.
type elem struct {
	set string
	key string // bytes
}

func ifKey(port string) []byte {
	k := make([]byte, ifNameSize)
	copy(k, port)
	return k
}

// concatKey is a concatenation's key: each part padded to 4 bytes, as the
// kernel lays the parts out in its 32-bit registers.
func concatKey(parts ...[]byte) []byte {
	var k []byte
	for _, p := range parts {
		k = append(k, p...)
		for len(k)%4 != 0 {
			k = append(k, 0)
		}
	}
	return k
}

// elements lists the set elements that carry r for port, except its
// element in policies (which carries the record itself).
func elements(port string, r record) []elem {
	name := ifKey(port)
	var els []elem
	add := func(set string, parts ...[]byte) {
		els = append(els, elem{set, string(concatKey(append([][]byte{name}, parts...)...))})
	}
	if r.corrupt {
		// Every element keyed by the name alone. Without the record the
		// port's MAC and addresses are unknown: their elements stay, and
		// are never consulted, since every rule that looks at them is
		// reached only from a port in policies.
		for _, set := range []string{setSpoof, setMACCheck, setIPCheck, setDHCP, setRA, setBPDU, setChaddr, setHasMAC} {
			add(set)
		}
		for i := range guards {
			add(setDrops, guardKey(i))
		}
		return els
	}
	for _, m := range []struct {
		on  bool
		set string
	}{
		{r.MACCheck || r.IPCheck, setSpoof}, {r.MACCheck, setMACCheck}, {r.IPCheck, setIPCheck}, {r.DHCP, setDHCP}, {r.RA, setRA}, {r.BPDU, setBPDU},
		{r.MAC != nil && (r.MACCheck || r.IPCheck), setChaddr}, {r.MAC != nil, setHasMAC},
	} {
		if m.on {
			add(m.set)
		}
	}
	if r.MAC != nil {
		add(setPortMAC, r.MAC)
	}
	if r.IPCheck {
		seen := map[netip.Addr]bool{}
		v6 := r.IPs
		if r.MAC != nil {
			// The VM's own link-local address: the one its MAC gives it.
			v6 = append([]netip.Addr{eui64(r.MAC)}, v6...)
		}
		for _, ip := range v6 {
			if ip = ip.Unmap(); seen[ip] {
				continue
			}
			seen[ip] = true
			// fast4 and fast6: what passes both checks, for one lookup.
			fast := r.MACCheck && r.MAC != nil
			if ip.Is4() {
				a := ip.As4()
				add(setPortIP4, a[:])
				if fast {
					add(setFast4, r.MAC, a[:])
				}
			} else {
				a := ip.As16()
				add(setPortIP6, a[:])
				if fast {
					add(setFast6, r.MAC, a[:])
				}
			}
		}
	}
	for i := range guards {
		add(setDrops, guardKey(i))
	}
	return els
}

// minus is a without the elements of b.
func minus(a, b []elem) []elem {
	in := map[elem]bool{}
	for _, e := range b {
		in[e] = true
	}
	var out []elem
	for _, e := range a {
		if !in[e] {
			out = append(out, e)
		}
	}
	return out
}

// batch builds one netlink batch with build and sends it. Batches are
// atomic: on an error nothing of it is left. A batch that lost a race with
// another process changing the table (EEXIST, EBUSY, EAGAIN, EINTR) is
// built and sent again, a few times. ENOENT means an element the batch
// deletes is gone (another process removed it, or someone by hand): the
// batch is built again with careful set, so that build asks the kernel for
// each element before it deletes it. The kernel of Debian 12 (6.1) has no
// NFT_MSG_DESTROYSETELEM (6.3), which would not fail on a missing element.
// build returns false when there is nothing to send.
func batch(build func(c *nftables.Conn, careful bool) (bool, error)) error {
	var err error
	careful := false
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 5 * time.Millisecond)
		}
		var c *nftables.Conn
		if c, err = nftables.New(); err != nil {
			return err
		}
		send, err2 := build(c, careful)
		if err2 != nil || !send {
			return err2
		}
		if err = c.Flush(); err == nil {
			return nil
		}
		switch {
		case errors.Is(err, unix.ENOENT) && !careful:
			careful = true
		case !retryable(err):
			return err
		}
	}
	return err
}

func retryable(err error) bool {
	return errors.Is(err, unix.EEXIST) || errors.Is(err, unix.EBUSY) ||
		errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR)
}

// existing keeps the elements that are in the kernel, asking for each.
func existing(els []elem) ([]elem, error) {
	var out []elem
	for _, e := range els {
		_, found, err := getElement(e.set, []byte(e.key))
		if err != nil {
			return nil, err
		}
		if found {
			out = append(out, e)
		}
	}
	return out, nil
}

// change adds the deletions and additions to the batch, one message per
// set and kind.
func change(c *nftables.Conn, s map[string]*nftables.Set, del, add []elem) error {
	group := func(els []elem) (map[string][]nftables.SetElement, []string) {
		g := map[string][]nftables.SetElement{}
		var order []string
		for _, e := range els {
			if _, ok := g[e.set]; !ok {
				order = append(order, e.set)
			}
			g[e.set] = append(g[e.set], nftables.SetElement{Key: []byte(e.key)})
		}
		return g, order
	}
	g, order := group(del)
	for _, name := range order {
		if err := c.SetDeleteElements(s[name], g[name]); err != nil {
			return err
		}
	}
	g, order = group(add)
	for _, name := range order {
		if err := c.SetAddElements(s[name], g[name]); err != nil {
			return err
		}
	}
	return nil
}

// readRecord reads port's record: found is false when the port has no
// policy (or there is no table). A record that does not parse (edited by
// hand) is found but corrupt: elements then lists what can be found by the
// port's name alone.
func readRecord(port string) (record, bool, error) {
	e, found, err := getElement(setPolicies, ifKey(port))
	if err != nil || !found {
		return record{}, false, err
	}
	r, err := parseRecord(e.Comment)
	if err != nil {
		return record{corrupt: true}, true, nil
	}
	return r, true, nil
}

// applyRules gives port the nftables data of s, in one batch: the
// elements of its old record that s no longer has go, the new ones come,
// and its record is replaced. The table is created first if need be. A
// port whose record already says s costs one read and no batch.
func applyRules(port string, s Spec) error {
	want := recordOf(s)
	comment := want.String() // Validate saw that it fits
	return batch(func(c *nftables.Conn, careful bool) (bool, error) {
		old, found, err := readRecord(port)
		if err != nil {
			return false, err
		}
		if found && !old.corrupt && old.String() == comment {
			return false, nil
		}
		st := sets()
		if !found {
			exists, err := baseExists(c)
			if err != nil {
				return false, fmt.Errorf("looking for table bridge %s: %w", tableName, err)
			}
			if !exists {
				if err := refuseLegacy(c); err != nil {
					return false, err
				}
				if err := addBase(c, st); err != nil {
					return false, err
				}
			}
		}
		add := elements(port, want)
		var del []elem
		if found {
			oldEls := elements(port, old)
			del = append(minus(oldEls, add), elem{setPolicies, string(ifKey(port))})
			add = minus(add, oldEls)
		}
		if careful || old.corrupt {
			if del, err = existing(del); err != nil {
				return false, err
			}
		}
		if err := change(c, st, del, add); err != nil {
			return false, err
		}
		return true, c.SetAddElements(st[setPolicies], []nftables.SetElement{{Key: ifKey(port), Comment: comment}})
	})
}

// removeRules deletes port's elements and record in one batch. Nothing to
// remove (no record, no table) costs one read and no batch.
func removeRules(port string) error {
	return batch(func(c *nftables.Conn, careful bool) (bool, error) {
		old, found, err := readRecord(port)
		if err != nil || !found {
			return false, err
		}
		del := append(elements(port, old), elem{setPolicies, string(ifKey(port))})
		if careful || old.corrupt {
			if del, err = existing(del); err != nil {
				return false, err
			}
		}
		return len(del) > 0, change(c, sets(), del, nil)
	})
}

// baseExists reports whether the table with its sets and chains, in this
// version, is there. They are only ever created together, in one batch, so
// the version set stands for all of them.
func baseExists(c *nftables.Conn) (bool, error) {
	_, err := c.GetSetByName(table, setVersion)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	return err == nil, err
}

// ErrLegacyTable is wrapped when the table holds the per-port chains of an
// older tapbridge.
var ErrLegacyTable = errors.New("table bridge " + tableName + " has the per-port chains of an older tapbridge (map ports)")

// refuseLegacy fails when the table is an older tapbridge's: one chain per
// port, jumped to from the verdict map ports. Writing the fixed ruleset
// over it would flush the old dispatch rule and leave the ports attached
// before the upgrade unfiltered; refusing keeps them filtered until the
// operator detaches them (or deletes the table) and attaches them again.
func refuseLegacy(c *nftables.Conn) error {
	_, err := c.GetSetByName(table, "ports")
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil
	case err != nil:
		return fmt.Errorf("looking for the map ports of an older tapbridge: %w", err)
	}
	return fmt.Errorf("%w: detach its VM ports, or run `nft delete table bridge %s` with them stopped, then attach them again", ErrLegacyTable, tableName)
}

// Ports returns the names of the ports that have a policy in the current
// network namespace, sorted, so a garbage collector can remove those whose
// port is gone. A listing the kernel marks as interrupted is an error:
// never fewer names than there are.
func Ports() ([]string, error) {
	els, err := dumpElements(setPolicies)
	if err != nil {
		return nil, fmt.Errorf("listing port policies: %w", err)
	}
	var ports []string
	for _, e := range els {
		ports = append(ports, strings.TrimRight(string(e.Key), "\x00"))
	}
	sort.Strings(ports)
	return ports, nil
}

// Counters returns how many frames from port each guard dropped since the
// port got its policy, by guard: "bpdu" (reserved group addresses),
// "tagged" (VLAN tags), "mac" (source MAC), "ip" (source address, ARP
// sender), "nd" (neighbour discovery target or link-layer option, DAD for
// another's address), "dhcp" (server messages), "chaddr" (DHCP client
// address), "ra" (router advertisements, redirects) and "fragment"
// (fragments that could hide DHCP, ND or RA). A port without a policy is
// ErrNoPolicy.
func Counters(port string) (map[string]uint64, error) {
	if _, found, err := getElement(setPolicies, ifKey(port)); err != nil {
		return nil, fmt.Errorf("port %q: %w", port, err)
	} else if !found {
		return nil, fmt.Errorf("port %q: %w", port, ErrNoPolicy)
	}
	counts := map[string]uint64{}
	for i, g := range guards {
		e, found, err := getElement(setDrops, concatKey(ifKey(port), guardKey(i)))
		if err != nil {
			return nil, fmt.Errorf("port %q: %w", port, err)
		}
		if found {
			counts[g] = e.Packets
		}
	}
	return counts, nil
}

// Get returns the policy port's filters were made from, as recorded with
// them: the guest's MAC and addresses and which of the MAC, IP, DHCP, RA
// and BPDU guards are on. Isolation and the VLAN are the bridge port's own
// settings and are not in it. A port without a policy is ErrNoPolicy.
func Get(port string) (Spec, error) {
	e, found, err := getElement(setPolicies, ifKey(port))
	if err != nil {
		return Spec{}, fmt.Errorf("port %q: %w", port, err)
	}
	if !found {
		return Spec{}, fmt.Errorf("port %q: %w", port, ErrNoPolicy)
	}
	r, err := parseRecord(e.Comment)
	if err != nil {
		return Spec{}, fmt.Errorf("port %q: its policy record %q: %w", port, e.Comment, err)
	}
	return Spec{MAC: r.MAC, IPs: r.IPs, MACSpoofCheck: r.MACCheck, IPSpoofCheck: r.IPCheck, DHCPGuard: r.DHCP, RAGuard: r.RA, BPDUGuard: r.BPDU}, nil
}
