package front

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/link"
	"github.com/tapbridge/tapbridge/internal/mac"
	"github.com/tapbridge/tapbridge/internal/sysctl"
)

// Name prefixes. The letters are not hex digits, so these names never
// collide with the CNI plugin's ("tb", "tbt", "tbp" followed by hex).
const (
	PortPrefix = "tbv" // the bridge end of a front
	PeerPrefix = "tbw" // the end joined to the TAP
)

// aliasPrefix starts the alias of every front's port.
const aliasPrefix = "tapbridge-front "

// ErrNotFront matches a link that has a front's name but is not tapbridge's
// front of the TAP asked for.
var ErrNotFront = errors.New("not a tapbridge front")

// Names returns the port and peer names of tap's front: the prefixes and
// the first 10 hex digits of sha256(tap).
func Names(tap string) (port, peer string) {
	sum := sha256.Sum256([]byte("tapbridge-front\x00" + tap))
	h := hex.EncodeToString(sum[:5])
	return PortPrefix + h, PeerPrefix + h
}

// Info is what a front's alias records.
type Info struct {
	TAP        string // the TAP the front stands for
	TAPIndex   int    // its ifindex when the front was made
	Persistent bool   // whether it was persistent then
}

func (i Info) alias() string {
	p := 0
	if i.Persistent {
		p = 1
	}
	return fmt.Sprintf("%stap=%s ifindex=%d persistent=%d", aliasPrefix, i.TAP, i.TAPIndex, p)
}

// Of reads the front's record from a port's alias; ok is false for any
// link that is not a front's port.
func Of(port netlink.Link) (i Info, ok bool) {
	a := port.Attrs()
	if !strings.HasPrefix(a.Name, PortPrefix) || !strings.HasPrefix(a.Alias, aliasPrefix) {
		return Info{}, false
	}
	if _, isVeth := port.(*netlink.Veth); !isVeth {
		return Info{}, false
	}
	for _, f := range strings.Fields(strings.TrimPrefix(a.Alias, aliasPrefix)) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "tap":
			i.TAP = v
		case "ifindex":
			i.TAPIndex, _ = strconv.Atoi(v)
		case "persistent":
			i.Persistent = v == "1"
		}
	}
	if i.TAP == "" || i.TAPIndex <= 0 {
		return Info{}, false
	}
	if want, _ := Names(i.TAP); want != a.Name {
		return Info{}, false
	}
	return i, true
}

// Port returns the port of tap's front, or an error matching
// link.ErrNotFound when there is none. A link that has the name but is
// not tap's front fails with ErrNotFront.
func Port(tap string) (netlink.Link, Info, error) {
	name, _ := Names(tap)
	l, err := link.Get(name)
	if err != nil {
		return nil, Info{}, err
	}
	i, ok := Of(l)
	if !ok || i.TAP != tap {
		return nil, Info{}, fmt.Errorf("%q: %w of TAP %q (alias %q)", name, ErrNotFront, tap, l.Attrs().Alias)
	}
	return l, i, nil
}

// Create makes the front of the TAP t: a veth pair with MTU mtu, the port
// down with a 0xFE MAC derived from its name, the peer and the TAP up and
// joined by redirects both ways. IPv6 is turned off on the TAP and the
// peer, so the host sends nothing of its own to the guest through them.
// The port is left down and on no bridge: the caller enslaves it, programs
// its policy, and only then brings it up.
//
// A front left from an earlier TAP of the same name (a QEMU that exited
// without its down script, or the helper's tap%d, which the kernel hands
// out again) is rewired to t rather than deleted and made anew (see
// rewire): deleting a veth pair costs the kernel an unregistration and an
// RCU barrier, tens of ms on a busy host, on QEMU's critical path. The
// front of this very TAP is reused (created is false), so Create is
// idempotent. On failure nothing new is left.
func Create(t netlink.Link, mtu int) (port netlink.Link, created bool, err error) {
	ta := t.Attrs()
	tt, ok := t.(*netlink.Tuntap)
	if !ok || tt.Mode != netlink.TUNTAP_MODE_TAP {
		return nil, false, fmt.Errorf("%q is a %s link, not a TAP", ta.Name, t.Type())
	}
	portName, peerName := Names(ta.Name)
	if old, i, err := Port(ta.Name); err == nil {
		if i.TAPIndex == ta.Index && joined(t, peerName) == nil {
			// A run killed before the end of join left them down, or
			// out of their device group.
			peer, err := link.Get(peerName)
			if err == nil {
				err = finish(t, old, peer)
			}
			if err != nil {
				return nil, false, err
			}
			return old, false, nil
		}
		if i.TAPIndex != ta.Index {
			if port, err := rewire(old, tt, mtu); err == nil {
				return port, true, nil
			}
			// whatever went wrong, a new front replaces it below
		}
		if err := netlink.LinkDel(old); err != nil && !errors.Is(err, unix.ENODEV) {
			return nil, false, fmt.Errorf("deleting the stale front %q of TAP %q: %w", portName, ta.Name, err)
		}
	} else if errors.Is(err, ErrNotFront) {
		// A veth of this name without an alias is a front that a killed
		// run made but never named (the alias is set after the link
		// exists); anything else is not ours to replace.
		l, lerr := link.Get(portName)
		if _, isVeth := l.(*netlink.Veth); lerr != nil || !isVeth || l.Attrs().Alias != "" {
			return nil, false, err
		}
		if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			return nil, false, fmt.Errorf("deleting the unfinished front %q of TAP %q: %w", portName, ta.Name, err)
		}
	} else if !errors.Is(err, link.ErrNotFound) {
		return nil, false, err
	}
	if mtu > 0 && ta.MTU != mtu {
		if err := netlink.LinkSetMTU(t, mtu); err != nil {
			return nil, false, fmt.Errorf("setting MTU of TAP %q to %d: %w", ta.Name, mtu, err)
		}
	}
	// Like every host-side device, the TAP gets a 0xFE MAC. Nothing depends
	// on it (its tenant may change it); it keeps the host's view uniform.
	if len(ta.HardwareAddr) == 6 && ta.HardwareAddr[0] != 0xFE {
		if err := netlink.LinkSetHardwareAddr(t, mac.HostPort(ta.HardwareAddr)); err != nil {
			return nil, false, fmt.Errorf("setting MAC of TAP %q: %w", ta.Name, err)
		}
	}
	la := netlink.NewLinkAttrs()
	la.Name = portName
	la.MTU = mtu
	la.HardwareAddr = mac.HostPort(mac.FromName(portName))
	v := &netlink.Veth{LinkAttrs: la, PeerName: peerName, PeerHardwareAddr: mac.HostPort(mac.FromName(peerName))}
	if mtu > 0 {
		v.PeerMTU = uint32(mtu)
	}
	if err := netlink.LinkAdd(v); err != nil {
		return nil, false, fmt.Errorf("creating the front of TAP %q (veth %q, peer %q): %w", ta.Name, portName, peerName, err)
	}
	// The kernel ignores IFLA_IFALIAS when it creates a link: name it now.
	alias := Info{TAP: ta.Name, TAPIndex: ta.Index, Persistent: !tt.NonPersist}.alias()
	if err := netlink.LinkSetAlias(v, alias); err != nil {
		_ = netlink.LinkDel(v)
		return nil, false, fmt.Errorf("naming the front %q of TAP %q: %w", portName, ta.Name, err)
	}
	if port, err = join(t, portName, peerName); err != nil {
		_ = Delete(ta.Name)
		return nil, false, err
	}
	return port, true, nil
}

// rewire points the front port of an earlier TAP of the same name at t:
// the port goes down first (it forwards nothing, and the bridge forgets
// the addresses it learnt on it, so the new tenant receives none of the
// old one's frames), the alias names t, the peer's redirect is replaced
// and t gets its own. The caller enslaves the port, applies the policy of
// the new VM (which replaces the old one's) and brings it up, as for a new
// front. The caller must hold the policy lock, so that a Prune that found
// the front stale cannot delete it once it stands for t.
func rewire(port netlink.Link, t *netlink.Tuntap, mtu int) (netlink.Link, error) {
	ta := t.Attrs()
	portName, peerName := Names(ta.Name)
	peer, err := link.Get(peerName)
	if err != nil {
		return nil, err
	}
	if v, ok := peer.(*netlink.Veth); !ok || v.Attrs().ParentIndex != port.Attrs().Index {
		return nil, fmt.Errorf("%q is not the peer of %q", peerName, portName)
	}
	if port.Attrs().Flags&net.FlagUp != 0 {
		if err := netlink.LinkSetDown(port); err != nil {
			return nil, fmt.Errorf("taking the front %q of an earlier TAP %q down: %w", portName, ta.Name, err)
		}
	}
	alias := Info{TAP: ta.Name, TAPIndex: ta.Index, Persistent: !t.NonPersist}.alias()
	if err := netlink.LinkSetAlias(port, alias); err != nil {
		return nil, fmt.Errorf("naming the front %q of TAP %q: %w", portName, ta.Name, err)
	}
	if mtu > 0 {
		for _, l := range []netlink.Link{t, peer} {
			if l.Attrs().MTU != mtu {
				if err := netlink.LinkSetMTU(l, mtu); err != nil {
					return nil, fmt.Errorf("setting MTU of %q to %d: %w", l.Attrs().Name, mtu, err)
				}
			}
		}
	}
	// The peer's ingress qdisc goes with its redirect to the earlier TAP.
	q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: peer.Attrs().Index, Handle: ingressParent, Parent: netlink.HANDLE_INGRESS}}
	if err := netlink.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return nil, fmt.Errorf("removing the redirect of %q to an earlier TAP %q: %w", peerName, ta.Name, err)
	}
	if _, err := join(t, portName, peerName); err != nil {
		return nil, err
	}
	return link.Get(portName)
}

// join redirects the TAP and the peer to each other and brings both up.
func join(t netlink.Link, portName, peerName string) (netlink.Link, error) {
	port, err := link.Get(portName)
	if err != nil {
		return nil, err
	}
	peer, err := link.Get(peerName)
	if err != nil {
		return nil, err
	}
	DisableIPv6(t.Attrs().Name)
	DisableIPv6(peerName)
	if err := Redirect(t, peer); err != nil {
		return nil, err
	}
	if err := Redirect(peer, t); err != nil {
		return nil, err
	}
	return port, finish(t, port, peer)
}

// finish puts the front into its device group and brings the peer and the
// TAP up: the last steps of join, which a run killed before them leaves to
// the next.
func finish(t, port, peer netlink.Link) error {
	// One device group for the port, the peer and a TAP that QEMU (or the
	// helper) made, which goes with its last descriptor anyway: Delete
	// removes them in one kernel operation. A persistent TAP is not the
	// front's to delete.
	g := Group(port)
	members := []netlink.Link{port, peer}
	if tt, ok := t.(*netlink.Tuntap); ok && tt.NonPersist {
		members = append(members, t)
	}
	for _, l := range members {
		if l.Attrs().Group != g {
			if err := netlink.LinkSetGroup(l, int(g)); err != nil {
				return fmt.Errorf("setting the device group of %q: %w", l.Attrs().Name, err)
			}
		}
	}
	return upAll(t, peer.Attrs().Name)
}

// upAll brings the peer and the TAP up.
func upAll(t netlink.Link, peerName string) error {
	peer, err := link.Get(peerName)
	if err != nil {
		return err
	}
	t, err = link.Get(t.Attrs().Name)
	if err != nil {
		return err
	}
	for _, l := range []netlink.Link{peer, t} {
		if l.Attrs().Flags&net.FlagUp == 0 {
			if err := netlink.LinkSetUp(l); err != nil {
				return fmt.Errorf("bringing %q up: %w", l.Attrs().Name, err)
			}
		}
	}
	return nil
}

// joined says whether the TAP and the peer redirect to each other.
func joined(t netlink.Link, peerName string) error {
	peer, err := link.Get(peerName)
	if err != nil {
		return err
	}
	if err := CheckRedirect(t, peer); err != nil {
		return err
	}
	return CheckRedirect(peer, t)
}

// Check says whether tap's front is whole: the port exists, records this
// TAP, and the TAP and the peer redirect to each other.
func Check(t netlink.Link) (netlink.Link, error) {
	port, i, err := Port(t.Attrs().Name)
	if err != nil {
		return nil, err
	}
	if i.TAPIndex != t.Attrs().Index {
		return nil, fmt.Errorf("front %q stands for an earlier TAP %q (ifindex %d, now %d)", port.Attrs().Name, i.TAP, i.TAPIndex, t.Attrs().Index)
	}
	_, peerName := Names(t.Attrs().Name)
	return port, joined(t, peerName)
}

// Delete removes tap's front (the peer goes with the port) and, when QEMU
// or the helper made the TAP (it is not persistent), the TAP with it: all
// in one kernel operation, the deletion of the front's device group. Each
// deletion costs the kernel an unregistration with its RCU grace periods
// (tens of ms on a busy host), so one for the three instead of one for the
// front and another when QEMU closes the TAP right after its down script
// is most of what qemu-ifdown can save. It succeeds when there is no
// front, and leaves alone a link of that name that is not tap's front.
func Delete(tap string) error {
	return DeleteWhile(tap, func() error { return nil })
}

// DeleteWhile is Delete that runs f on the calling thread while the kernel
// deletes the front: vmport removes the port's policy meanwhile (an
// nftables commit, which waits for a grace period of its own), once the
// port has left its bridge. f runs also when there is no front. The
// deletion is sent from a socket opened on the calling thread, so it acts
// in the calling thread's network namespace whichever thread sends it.
func DeleteWhile(tap string, f func() error) error {
	port, _, err := Port(tap)
	if errors.Is(err, link.ErrNotFound) {
		return f()
	}
	if err != nil {
		return err
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("deleting the front %q of TAP %q: %w", port.Attrs().Name, tap, err)
	}
	defer h.Close()
	var group *nl.NetlinkSocket
	if g := Group(port); port.Attrs().Group == g {
		if group, err = nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_ROUTE); err != nil {
			group = nil // the port alone, below
		} else {
			defer group.Close()
		}
	}
	done := make(chan error, 1)
	go func() {
		if group != nil && deleteGroupWith(group, Group(port)) == nil {
			done <- nil
			return
		}
		if err := h.LinkDel(port); err != nil && !errors.Is(err, unix.ENODEV) {
			done <- fmt.Errorf("deleting the front %q of TAP %q: %w", port.Attrs().Name, tap, err)
			return
		}
		done <- nil
	}()
	ferr := f()
	return errors.Join(<-done, ferr)
}

// groupBase marks the device groups of fronts: between 2^29 and 2^30-1,
// apart from the CNI plugin's (2^30 and up) and from groups in common use.
const groupBase = 1 << 29

// Group is the device group of the front whose port is port (and of its
// peer and a non-persistent TAP): derived from the port's ifindex, so no
// two live fronts share one.
func Group(port netlink.Link) uint32 {
	return groupBase | uint32(port.Attrs().Index)&(groupBase-1)
}

// DeleteGroup deletes every link of device group g in the calling thread's
// network namespace in one RTM_DELLINK, so the kernel unregisters them in
// one batch.
func DeleteGroup(g uint32) error { return deleteGroupWith(nil, g) }

// deleteGroupWith is DeleteGroup through the socket s (nil: a socket of
// the calling thread's namespace).
func deleteGroupWith(s *nl.NetlinkSocket, g uint32) error {
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	if s != nil {
		req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}}
	}
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(g)))
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// DisableIPv6 keeps the kernel from giving the link a link-local address
// and sending router solicitations and MLD reports through it: the TAP and
// the peer carry the guest's frames only. Best effort: a kernel without
// IPv6 has nothing to disable.
func DisableIPv6(name string) {
	_ = sysctl.Write(sysctl.Iface("ipv6", name, "disable_ipv6"), "1")
}

// Leftover is a front that stands for no live VM: its TAP is gone, or its
// TAP was not persistent when the front was made, is persistent now (its
// tenant made it so with TUNSETPERSIST) and nobody holds it.
type Leftover struct {
	Port netlink.Link
	Info Info
	// TAP is the persisted TAP to delete with the front; nil when the TAP
	// is gone.
	TAP netlink.Link
}

// iffLowerUp is IFF_LOWER_UP: the kernel reports carrier in the link flags.
const iffLowerUp = 0x10000

// Stale finds the leftover fronts among links (one complete link dump).
// A TAP that nobody holds has no carrier: tun turns it off when the last
// queue is detached and on when one is attached, so "up without carrier"
// means no process has the TAP open. A TAP that is down says nothing and
// is left alone.
func Stale(links []netlink.Link) []Leftover {
	byName := make(map[string]netlink.Link, len(links))
	for _, l := range links {
		byName[l.Attrs().Name] = l
	}
	var out []Leftover
	for _, l := range links {
		i, ok := Of(l)
		if !ok {
			continue
		}
		t := byName[i.TAP]
		if t == nil || t.Attrs().Index != i.TAPIndex {
			out = append(out, Leftover{Port: l, Info: i})
			continue
		}
		tt, isTAP := t.(*netlink.Tuntap)
		a := t.Attrs()
		if isTAP && !i.Persistent && !tt.NonPersist && a.Flags&net.FlagUp != 0 && a.RawFlags&iffLowerUp == 0 {
			out = append(out, Leftover{Port: l, Info: i, TAP: t})
		}
	}
	return out
}

// Remove deletes a leftover front, and its persisted TAP, by ifindex: a
// front or TAP made meanwhile under the same name has another ifindex and
// is never touched.
func Remove(l Leftover) error {
	if err := delIndex(l.Port); err != nil {
		return fmt.Errorf("deleting the leftover front %q of TAP %q: %w", l.Port.Attrs().Name, l.Info.TAP, err)
	}
	if l.TAP != nil {
		if err := delIndex(l.TAP); err != nil {
			return fmt.Errorf("deleting TAP %q, persisted by its tenant and held by nobody: %w", l.Info.TAP, err)
		}
	}
	return nil
}

func delIndex(l netlink.Link) error {
	cur, err := netlink.LinkByIndex(l.Attrs().Index)
	if err != nil || cur.Attrs().Name != l.Attrs().Name {
		return nil // gone, or the index now names another link
	}
	if err := netlink.LinkDel(cur); err != nil && !errors.Is(err, unix.ENODEV) {
		return err
	}
	return nil
}

// Problem says what is wrong with a port of a bridge, "" when nothing is:
// a TAP that is a port itself (whoever holds it can change the MAC the
// bridge knows the port by, and so claim any MAC on the LAN for the host),
// or a front whose MAC is not the one Create gave it.
func Problem(port netlink.Link) string {
	a := port.Attrs()
	if t, ok := port.(*netlink.Tuntap); ok && t.Mode == netlink.TUNTAP_MODE_TAP {
		return fmt.Sprintf("TAP %q is a port of the bridge itself: whoever holds it can change the MAC the bridge knows it by (detach it and attach it with tapbridge, which puts a front before it)", a.Name)
	}
	if i, ok := Of(port); ok {
		if want := mac.HostPort(mac.FromName(a.Name)); a.HardwareAddr.String() != want.String() {
			return fmt.Sprintf("port %q (the front of TAP %q) has MAC %s, not the %s tapbridge gave it", a.Name, i.TAP, a.HardwareAddr, want)
		}
	}
	return ""
}
