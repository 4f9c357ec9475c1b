package macguard

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync/atomic"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/ifname"
	"github.com/tapbridge/tapbridge/internal/link"
	"github.com/tapbridge/tapbridge/internal/state"
)

const (
	tableName = "tapbridge_uplink"
	// NF_BR_PRI_FILTER_BRIDGED, "priority filter" in the bridge family.
	priorityFilter = -200
	ifNameSize     = 16
	// Registers of the concatenation oifname . ether saddr.
	regName = 8
	regMAC  = 12
)

var table = &nftables.Table{Name: tableName, Family: nftables.TableFamilyBridge}

var setIDs atomic.Uint32

func uplinksSet() *nftables.Set {
	return &nftables.Set{Table: table, Name: "uplinks", ID: setIDs.Add(1), KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian}
}

func knownSet() *nftables.Set {
	return &nftables.Set{Table: table, Name: "known", ID: setIDs.Add(1), Concatenation: true, KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeEtherAddr)}
}

func ifKey(name string) []byte {
	k := make([]byte, ifNameSize)
	copy(k, name)
	return k
}

// knownKey is uplink . mac, the MAC padded to a whole register.
func knownKey(uplink string, mac net.HardwareAddr) []byte {
	k := append(ifKey(uplink), mac...)
	return append(k, 0, 0)
}

// entry is one port's record.
type entry struct {
	Port   string   `json:"port"`
	Uplink string   `json:"uplink"`
	MAC    string   `json:"mac,omitempty"`
	Keep   []string `json:"keep,omitempty"` // host and listed MACs, never removed
}

func entryPath(port string) string { return state.NetNSPath("uplinkmacs", port+".json") }

// Allow makes sure frames leaving uplink are checked, and lets the host's
// MAC (the uplink's, and its bridge's), the listed MACs and guest (when
// not nil) leave through it, on behalf of port. One batch; idempotent.
func Allow(uplink, port string, guest net.HardwareAddr, listed []net.HardwareAddr) error {
	if err := ifname.Validate("uplink", uplink); err != nil {
		return err
	}
	if err := ifname.Validate("port", port); err != nil {
		return err
	}
	lk, err := state.LockRouted()
	if err != nil {
		return err
	}
	defer lk.Unlock()
	keep := append([]net.HardwareAddr(nil), listed...)
	up, err := netlinksafe.LinkByName(uplink)
	if err != nil {
		return fmt.Errorf("uplink %q: %w", uplink, err)
	}
	keep = append(keep, up.Attrs().HardwareAddr)
	if br, err := link.Master(up); err == nil && br != nil {
		keep = append(keep, br.Attrs().HardwareAddr)
	}
	e := entry{Port: port, Uplink: uplink}
	if guest != nil {
		e.MAC = guest.String()
	}
	for _, m := range keep {
		e.Keep = append(e.Keep, m.String())
	}
	if err := state.WriteJSON(entryPath(port), e); err != nil {
		return err
	}
	var els []nftables.SetElement
	for _, m := range append(keep, guest) {
		if len(m) == 6 {
			els = append(els, nftables.SetElement{Key: knownKey(uplink, m)})
		}
	}
	err = batch(func(c *nftables.Conn) error {
		_, err := c.GetSetByName(table, "known")
		switch {
		case errors.Is(err, unix.ENOENT):
			if err := addBase(c); err != nil {
				return err
			}
		case err != nil:
			return err
		}
		if err := c.SetAddElements(uplinksSet(), []nftables.SetElement{{Key: ifKey(uplink)}}); err != nil {
			return err
		}
		return c.SetAddElements(knownSet(), els)
	})
	if err != nil {
		_ = state.Remove(entryPath(port))
		return fmt.Errorf("uplink %q: allowing the MAC of %q: %w", uplink, port, err)
	}
	return nil
}

// Forget withdraws what Allow let out for port: its guest MAC, unless
// another port's record or a kept MAC names it. It succeeds when port has
// no record.
func Forget(port string) error {
	if err := ifname.Validate("port", port); err != nil {
		return err
	}
	lk, err := state.LockRouted()
	if err != nil {
		return err
	}
	defer lk.Unlock()
	var e entry
	err = state.ReadJSON(entryPath(port), &e)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if e.MAC != "" && !stillNeeded(e) {
		m, err := net.ParseMAC(e.MAC)
		if err == nil {
			err = batch(func(c *nftables.Conn) error {
				if _, err := c.GetSetByName(table, "known"); err != nil {
					return err
				}
				s, el := knownSet(), []nftables.SetElement{{Key: knownKey(e.Uplink, m)}}
				if err := c.SetAddElements(s, el); err != nil {
					return err
				}
				return c.SetDeleteElements(s, el)
			})
		}
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("uplink %q: withdrawing the MAC of %q: %w", e.Uplink, port, err)
		}
	}
	return state.Remove(entryPath(port))
}

// stillNeeded reports whether e's MAC is kept, or another port has it.
func stillNeeded(e entry) bool {
	for _, k := range e.Keep {
		if strings.EqualFold(k, e.MAC) {
			return true
		}
	}
	dir := state.NetNSPath("uplinkmacs")
	entries, _ := os.ReadDir(dir)
	for _, de := range entries {
		name, ok := strings.CutSuffix(de.Name(), ".json")
		if !ok || name == e.Port || strings.HasPrefix(name, ".") {
			continue
		}
		var o entry
		if state.ReadJSON(entryPath(name), &o) != nil {
			continue
		}
		if o.Uplink == e.Uplink && (strings.EqualFold(o.MAC, e.MAC) || containsFold(o.Keep, e.MAC)) {
			return true
		}
	}
	return false
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// addBase adds the table, its sets, chain and rule to the batch.
func addBase(c *nftables.Conn) error {
	c.AddTable(table)
	uplinks, known := uplinksSet(), knownSet()
	if err := c.AddSet(uplinks, nil); err != nil {
		return err
	}
	if err := c.AddSet(known, nil); err != nil {
		return err
	}
	accept := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{
		Name: "postrouting", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityRef(priorityFilter), Policy: &accept,
	})
	// oifname @uplinks oifname . ether saddr != @known counter drop
	c.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: uplinks.Name, SetID: uplinks.ID},
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: regName},
		&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: regMAC, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6},
		&expr.Lookup{SourceRegister: regName, SetName: known.Name, SetID: known.ID, Invert: true},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	return nil
}

// batch sends what build adds as one atomic batch.
func batch(build func(c *nftables.Conn) error) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	if err := build(c); err != nil {
		return err
	}
	return c.Flush()
}

// Known returns the MACs allowed out of uplink, for status and tests.
func Known(uplink string) ([]net.HardwareAddr, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, err
	}
	s, err := c.GetSetByName(table, "known")
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	els, err := c.GetSetElements(s)
	if err != nil {
		return nil, err
	}
	var out []net.HardwareAddr
	k := ifKey(uplink)
	for _, e := range els {
		if len(e.Key) >= ifNameSize+6 && bytes.Equal(e.Key[:ifNameSize], k) {
			out = append(out, net.HardwareAddr(e.Key[ifNameSize:ifNameSize+6]))
		}
	}
	return out, nil
}
