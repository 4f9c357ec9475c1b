package cniplugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/bridge"
	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/failpoint"
	"github.com/tapbridge/tapbridge/internal/front"
	"github.com/tapbridge/tapbridge/internal/link"
	"github.com/tapbridge/tapbridge/internal/mac"
	"github.com/tapbridge/tapbridge/internal/state"
	"github.com/tapbridge/tapbridge/internal/tap"
	"github.com/tapbridge/tapbridge/internal/vmport"
)

// undo is a stack of steps that reverse what a failed ADD did.
type undo []func()

func (u *undo) push(f func()) { *u = append(*u, f) }

func (u undo) run() {
	for i := len(u) - 1; i >= 0; i-- {
		u[i]()
	}
}

func cmdAdd(args *skel.CmdArgs) error {
	c, err := load(args)
	if err != nil {
		return err
	}
	if err := checkIfName(args.IfName); err != nil {
		return err
	}
	gm, err := guestMAC(c, args)
	if err != nil {
		return err
	}
	rec := newRecord(c, args.ContainerID, args.IfName)
	var sandbox ns.NetNS
	if c.Mode == config.ModeNetns {
		if sandbox, err = openSandbox(args.Netns); err != nil {
			return err
		}
		defer sandbox.Close()
		rec.Netns, rec.NetnsInode, rec.NetnsCookie = args.Netns, inode(sandbox), cookie(sandbox)
	} else {
		// QEMU runs in the plugin's namespace and CNI_NETNS is not used:
		// tell skel not to refuse a CNI_NETNS that is that namespace.
		args.NetnsOverride = "1"
		// Still, the sandbox's identity tells `tapbridge gc` when the
		// runtime has dropped the sandbox without a DEL (ctr never sends one).
		if sandbox, err := ns.GetNS(args.Netns); args.Netns != "" && err == nil {
			rec.Netns, rec.NetnsInode, rec.NetnsCookie = args.Netns, inode(sandbox), cookie(sandbox)
			sandbox.Close()
		}
	}
	if c.IPAM.Type != "" && json.Valid(args.StdinData) {
		rec.IPAMConf, rec.CNIPath = args.StdinData, os.Getenv("CNI_PATH")
	}
	if err := preflight(rec); err != nil {
		return err
	}
	var u undo
	res, err := add(c, args, rec, sandbox, gm, &u)
	if err != nil {
		u.run()
		return err
	}
	return types.PrintResult(res, c.CNIVersion)
}

// openSandbox opens CNI_NETNS and refuses the plugin's own namespace.
func openSandbox(path string) (ns.NetNS, error) {
	if path == "" {
		return nil, cniErr(types.ErrInvalidEnvironmentVariables, "CNI_NETNS is required in mode %q (QEMU runs inside it); use mode %q for a QEMU in the host namespace", config.ModeNetns, config.ModeHost)
	}
	sandbox, err := ns.GetNS(path)
	if err != nil {
		return nil, cniErr(types.ErrInvalidEnvironmentVariables, "CNI_NETNS %q: %v", path, err)
	}
	var self unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), &self); err == nil && self.Ino == inode(sandbox) {
		sandbox.Close()
		return nil, cniErr(types.ErrInvalidEnvironmentVariables, "CNI_NETNS %q is the plugin's own network namespace; use mode %q for a QEMU in the host namespace", path, config.ModeHost)
	}
	return sandbox, nil
}

func inode(n ns.NetNS) uint64 {
	var st unix.Stat_t
	if err := unix.Fstat(int(n.Fd()), &st); err != nil {
		return 0
	}
	return st.Ino
}

// cookie returns the network namespace's cookie, which the kernel never
// gives another namespace (unlike its inode number), or 0 when the kernel
// is older than 5.14 or it cannot be read.
func cookie(n ns.NetNS) uint64 { return state.NetNSCookieOf(int(n.Fd())) }

// sameNS reports whether n is the namespace with inode ino and cookie
// ck; a 0 in either is not compared.
func sameNS(n ns.NetNS, ino, ck uint64) bool {
	return (ino == 0 || inode(n) == ino) && (ck == 0 || cookie(n) == ck)
}

// preflight refuses, before anything changes, an attachment whose host
// port already exists (an earlier ADD not deleted). The names in the
// sandbox are checked as the links are made there (setupSandbox), which
// saves entering it once more.
func preflight(rec *record) error {
	return notExists(rec, "host port", rec.HostPort)
}

// notExists fails with ErrExists when the link name exists.
func notExists(rec *record, where, name string) error {
	_, err := link.Get(name)
	switch {
	case err == nil:
		return cniErr(ErrExists, "%s %q already exists (container %q, interface %q still attached? run DEL first)", where, name, rec.ContainerID, rec.IfName)
	case errors.Is(err, link.ErrNotFound):
		return nil
	}
	return asCNI(err, ErrLink)
}

// add makes the attachment; u collects how to undo each step.
func add(c *config.Conf, args *skel.CmdArgs, rec *record, sandbox ns.NetNS, gm net.HardwareAddr, u *undo) (*types100.Result, error) {
	if err := rec.save(); err != nil {
		return nil, asCNI(err, types.ErrIOFailure)
	}
	u.push(func() { _ = rec.remove() })
	failpoint.Hit("cni-add:record")

	var ipamRes *types100.Result
	var guestIPs []netip.Addr
	if c.IPAM.Type != "" {
		r, err := ipamAdd(c.IPAM.Type, args.StdinData)
		if err != nil {
			return nil, asCNI(fmt.Errorf("ipam %q: %w", c.IPAM.Type, err), ErrLink)
		}
		u.push(func() { _ = ipamDel(c.IPAM.Type, args.StdinData) })
		if ipamRes, err = types100.NewResultFromResult(r); err != nil {
			return nil, cniErr(types.ErrDecodingFailure, "ipam %q: %v", c.IPAM.Type, err)
		}
		if len(ipamRes.IPs) == 0 {
			return nil, cniErr(ErrLink, "ipam %q returned no IP address", c.IPAM.Type)
		}
		for _, ip := range ipamRes.IPs {
			if a, ok := netip.AddrFromSlice(ip.Address.IP); ok {
				guestIPs = append(guestIPs, a.Unmap())
			}
		}
	}

	port := vmport.Port{Name: rec.HostPort, GuestMAC: gm, GuestIPs: guestIPs}
	br, err := bridge.Get(c.Bridge)
	bridgeExisted := !errors.Is(err, link.ErrNotFound)
	// The veth is made with the bridge's MTU when the bridge exists, so
	// that attaching it changes nothing.
	mtu := c.MTU
	if err == nil {
		mtu = br.Attrs().MTU
	}
	var tapLink netlink.Link
	if c.Mode == config.ModeHost {
		if tapLink, err = tap.Create(rec.TAP, vmport.TAPOptions(c)); err != nil {
			return nil, asCNI(err, ErrLink)
		}
		u.push(func() { _ = tap.Delete(rec.TAP) })
	} else {
		if err := addVeth(rec, sandbox, mtu); err != nil {
			return nil, err
		}
		u.push(func() { _ = delVeth(rec.HostPort) })
	}
	if !bridgeExisted {
		u.push(func() { vmport.RemoveUnusedBridge(c) })
	}
	failpoint.Hit("cni-add:port")
	if err := vmport.Attach(c, port); err != nil {
		return nil, attachErr(err)
	}
	u.push(func() { _ = vmport.Detach(c, rec.HostPort) })
	failpoint.Hit("cni-add:attached")

	// The bridge port now has the bridge's MTU (and a 0xFE MAC).
	hostPort, err := link.Get(rec.HostPort)
	if err != nil {
		return nil, asCNI(err, ErrLink)
	}
	mtu = hostPort.Attrs().MTU
	if c.Mode == config.ModeHost {
		// The TAP joins the bridge through its front (package front).
		tapLink = hostPort
		if hostPort, err = link.Get(vmport.BridgePort(rec.TAP)); err != nil {
			return nil, asCNI(err, ErrLink)
		}
	} else {
		made := false
		err := sandbox.Do(func(ns.NetNS) error {
			var err error
			tapLink, made, err = setupSandbox(c, rec, mtu)
			return err
		})
		if made {
			u.push(func() { _ = sandbox.Do(func(ns.NetNS) error { return tap.Delete(rec.TAP) }) })
		}
		if err != nil {
			return nil, asCNI(err, ErrLink)
		}
	}
	if c.Routed && ipamRes != nil {
		ipamRes = routedIPAM(ipamRes)
	}
	return result(c, args, rec, hostPort, tapLink, mtu, gm, ipamRes)
}

// addVeth makes the veth pair, both ends with MTU mtu (0: the kernel's
// default): the host port in the plugin's namespace, the peer in the
// sandbox.
func addVeth(rec *record, sandbox ns.NetNS, mtu int) error {
	la := netlink.NewLinkAttrs()
	la.Name = rec.HostPort
	la.MTU = mtu
	// A 0xFE MAC from the start: bridge.Attach need not change it.
	la.HardwareAddr = mac.HostPort(mac.FromName(rec.HostPort))
	v := netlink.NewVeth(la)
	v.PeerName = rec.Peer
	v.PeerNamespace = netlink.NsFd(int(sandbox.Fd()))
	if err := netlink.LinkAdd(v); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return cniErr(ErrExists, "veth %q or its peer %q in CNI_NETNS already exists (container %q, interface %q still attached? run DEL first)", rec.HostPort, rec.Peer, rec.ContainerID, rec.IfName)
		}
		return cniErr(ErrLink, "creating veth %q with peer %q in CNI_NETNS: %v", rec.HostPort, rec.Peer, err)
	}
	return nil
}

// hostVeth returns the veth called name; nil, and no error, when it is
// gone or is not a veth (not the plugin's to touch).
func hostVeth(name string) (netlink.Link, error) {
	l, err := link.Get(name)
	if errors.Is(err, link.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if _, ok := l.(*netlink.Veth); !ok {
		return nil, nil
	}
	return l, nil
}

// delVeth deletes the host end of the plugin's veth (and so its peer). It
// succeeds when the link is gone and leaves anything but a veth alone.
func delVeth(name string) error {
	l, err := hostVeth(name)
	if l == nil {
		return err
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("deleting veth %q: %w", name, err)
	}
	return nil
}

// setupSandbox runs inside the sandbox: it makes the TAP, gives it and the
// veth peer the bridge's MTU, and joins them with redirects both ways.
// made reports whether the TAP was created.
func setupSandbox(c *config.Conf, rec *record, mtu int) (t netlink.Link, made bool, err error) {
	if err := notExists(rec, "interface in CNI_NETNS", rec.TAP); err != nil {
		return nil, false, err
	}
	peer, err := link.Get(rec.Peer)
	if err != nil {
		return nil, false, fmt.Errorf("veth peer in CNI_NETNS: %w", err)
	}
	if peer.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(peer, mtu); err != nil {
			return nil, false, fmt.Errorf("setting MTU of %q to %d: %w", rec.Peer, mtu, err)
		}
	}
	if t, err = tap.Create(rec.TAP, vmport.TAPOptions(c)); err != nil {
		return nil, false, err
	}
	if t.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(t, mtu); err != nil {
			return nil, true, fmt.Errorf("setting MTU of TAP %q to %d, the MTU of bridge %q: %w%s", rec.TAP, mtu, c.Bridge, err, tapMTUHint(mtu))
		}
	}
	g := Group(rec.ContainerID, rec.IfName)
	front.DisableIPv6(rec.Peer)
	front.DisableIPv6(rec.TAP)
	if err := front.Redirect(t, peer); err != nil {
		return nil, true, err
	}
	if err := front.Redirect(peer, t); err != nil {
		return nil, true, err
	}
	// Each joins the attachment's device group (so that DEL deletes them
	// in one unregistration) and comes up in one message.
	for _, l := range []netlink.Link{peer, t} {
		if err := front.SetLink(l, g, true); err != nil {
			return nil, true, fmt.Errorf("bringing %q up in device group %#x: %w", l.Attrs().Name, g, err)
		}
	}
	return t, true, nil
}

// tapMTUHint explains an MTU a TAP cannot take.
func tapMTUHint(mtu int) string {
	if mtu > maxTAPMTU {
		return fmt.Sprintf(" (a TAP takes at most %d; lower \"mtu\")", maxTAPMTU)
	}
	return ""
}

// maxTAPMTU is the largest MTU the kernel's TUN driver accepts
// (65535 - the size of its packet information header).
const maxTAPMTU = 65521

// result reports the host port, the TAP and the guest NIC, after those of
// a previous plugin in the chain, and the IPAM addresses on the guest NIC.
func result(c *config.Conf, args *skel.CmdArgs, rec *record, hostPort, tapLink netlink.Link, mtu int, gm net.HardwareAddr, ipamRes *types100.Result) (*types100.Result, error) {
	r := &types100.Result{CNIVersion: types100.ImplementedSpecVersion}
	if c.PrevResult != nil {
		prev, err := types100.NewResultFromResult(c.PrevResult)
		if err != nil {
			return nil, cniErr(types.ErrDecodingFailure, "prevResult: %v", err)
		}
		r = prev
	}
	r.Interfaces = append(r.Interfaces, &types100.Interface{Name: hostPort.Attrs().Name, Mac: hostPort.Attrs().HardwareAddr.String(), Mtu: mtu})
	guest := &types100.Interface{Name: args.IfName, Mac: gm.String(), Mtu: mtu}
	if c.Mode == config.ModeNetns {
		r.Interfaces = append(r.Interfaces, &types100.Interface{Name: rec.TAP, Mac: tapLink.Attrs().HardwareAddr.String(), Mtu: mtu, Sandbox: args.Netns})
		guest.Sandbox = args.Netns
	} else {
		r.Interfaces = append(r.Interfaces, &types100.Interface{Name: rec.TAP, Mac: tapLink.Attrs().HardwareAddr.String(), Mtu: mtu})
	}
	r.Interfaces = append(r.Interfaces, guest)
	if ipamRes != nil {
		idx := len(r.Interfaces) - 1
		for _, ip := range ipamRes.IPs {
			ip.Interface = types100.Int(idx)
			r.IPs = append(r.IPs, ip)
		}
		r.Routes = append(r.Routes, ipamRes.Routes...)
		if !ipamRes.DNS.IsEmpty() {
			r.DNS = ipamRes.DNS
		}
	}
	if !c.DNS.IsEmpty() {
		r.DNS = c.DNS
	}
	return r, nil
}
