package cniplugin

import (
	"errors"
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/bridge"
	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/front"
	"github.com/tapbridge/tapbridge/internal/nldump"
	"github.com/tapbridge/tapbridge/internal/tap"
	"github.com/tapbridge/tapbridge/internal/vmport"
)

// cmdDel removes an attachment. It succeeds when the sandbox or the links
// are already gone, and still removes the host-side state: the bridge port
// and its policy, the host veth or TAP, the IPAM lease and the record.
func cmdDel(args *skel.CmdArgs) error {
	c, err := load(args)
	if err != nil {
		return err
	}
	if err := checkIfName(args.IfName); err != nil {
		return err
	}
	rec, err := readRecord(c.Name, args.ContainerID, args.IfName)
	if err != nil || rec == nil || !rec.ours() {
		rec = newRecord(c, args.ContainerID, args.IfName)
	}
	if rec.Mode == config.ModeHost {
		args.NetnsOverride = "1" // see cmdAdd
	}
	// Without CNI_NETNS (the runtime lost it), the record's sandbox is
	// still cleaned, if it is still the same namespace.
	netnsPath, ino, ck := args.Netns, uint64(0), uint64(0)
	if netnsPath == "" {
		netnsPath, ino, ck = rec.Netns, rec.NetnsInode, rec.NetnsCookie
	}
	var errs []error
	if err := teardown(c, rec, netnsPath, ino, ck); err != nil {
		errs = append(errs, err)
	}
	if c.IPAM.Type != "" {
		if err := ipamDel(c.IPAM.Type, args.StdinData); err != nil {
			errs = append(errs, fmt.Errorf("ipam %q: %w", c.IPAM.Type, err))
		}
	}
	if len(errs) > 0 {
		return asCNI(errors.Join(errs...), ErrLink)
	}
	if err := rec.remove(); err != nil {
		return asCNI(err, types.ErrIOFailure)
	}
	return nil
}

// teardown removes the links of an attachment, then its bridge port's
// policy. In netns mode it deletes the TAP and the veth peer in the sandbox
// at netnsPath (when that still exists and, when inode or cookie is not 0,
// is still the namespace the record names) as one device group, which takes the
// host veth with them; what is left (the sandbox is gone, or the links are
// not grouped) goes one by one. Deleting the port takes it off the bridge,
// so vmport.Detach finds it gone and only removes the policy; in this
// order the guest is never on the bridge without its policy.
func teardown(c *config.Conf, rec *record, netnsPath string, inode, cookie uint64) error {
	var errs []error
	cc := *c
	cc.Bridge = rec.Bridge
	if rec.Mode == config.ModeHost {
		if err := tap.Delete(rec.HostPort); err != nil && !errors.Is(err, tap.ErrNotTAP) {
			errs = append(errs, err)
		}
		if err := vmport.Detach(&cc, rec.HostPort); err != nil {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	// The host veth goes down and off the bridge first; from then on its
	// policy may go, so the policy's removal (an nftables commit, which
	// waits for an RCU grace period) overlaps the deletion of the links
	// in the sandbox (an unregistration, which waits for more) instead of
	// following it.
	if err := releaseHostPort(rec.HostPort); err != nil {
		return err
	}
	grouped := false
	sandboxDone := make(chan error, 1)
	go func() {
		if netnsPath == "" {
			sandboxDone <- nil
			return
		}
		sandboxDone <- inSandbox(netnsPath, inode, cookie, func() (err error) {
			grouped, err = deleteSandboxLinks(rec)
			return err
		})
	}()
	detachErr := vmport.Detach(&cc, rec.HostPort)
	if err := <-sandboxDone; err != nil {
		errs = append(errs, err)
	}
	if !grouped {
		if err := delVeth(rec.HostPort); err != nil {
			errs = append(errs, err)
		}
	}
	if detachErr != nil {
		errs = append(errs, detachErr)
	}
	return errors.Join(errs...)
}

// releaseHostPort takes the host veth of a netns-mode attachment down and
// off its bridge. It does nothing when the link is gone or is not a veth.
func releaseHostPort(name string) error {
	l, err := hostVeth(name)
	if l == nil {
		return err
	}
	if l.Attrs().Flags&net.FlagUp != 0 {
		if err := netlink.LinkSetDown(l); err != nil && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("taking %q down: %w", name, err)
		}
	}
	return bridge.Detach(name)
}

// deleteSandboxLinks runs in the sandbox: it deletes the attachment's TAP
// and veth peer together, and with the peer the host veth, when they are
// the only members of their device group (grouped); else the TAP alone
// (the peer then goes with the host veth).
func deleteSandboxLinks(rec *record) (grouped bool, err error) {
	g := Group(rec.ContainerID, rec.IfName)
	links, err := nldump.LinkList() // a partial dump could hide a third member of the group
	if err != nil {
		return false, fmt.Errorf("listing the links of CNI_NETNS: %w", err)
	}
	members, ours := 0, true
	for _, l := range links {
		if l.Attrs().Group != g {
			continue
		}
		members++
		_, isTAP := l.(*netlink.Tuntap)
		_, isVeth := l.(*netlink.Veth)
		if !(isTAP && l.Attrs().Name == rec.TAP || isVeth && l.Attrs().Name == rec.Peer) {
			ours = false
		}
	}
	if members == 2 && ours && front.DeleteGroup(g) == nil {
		return true, nil
	}
	if err := tap.Delete(rec.TAP); err != nil && !errors.Is(err, tap.ErrNotTAP) {
		return false, err
	}
	return false, nil
}

// inSandbox runs f inside the namespace at path. It does nothing when the
// namespace is gone, or is not the one whose inode and cookie are given.
func inSandbox(path string, ino, ck uint64, f func() error) error {
	sandbox, err := ns.GetNS(path)
	if err != nil {
		return nil // gone: so is everything in it
	}
	defer sandbox.Close()
	if !sameNS(sandbox, ino, ck) {
		return nil
	}
	return sandbox.Do(func(ns.NetNS) error { return f() })
}
