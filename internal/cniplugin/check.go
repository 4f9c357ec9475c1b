package cniplugin

import (
	"fmt"
	"net"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/front"
	"github.com/tapbridge/tapbridge/internal/link"
	"github.com/tapbridge/tapbridge/internal/tap"
	"github.com/tapbridge/tapbridge/internal/vmport"
)

// cmdCheck verifies that the attachment is as ADD made it: the host port
// on the bridge, the TAP with its owner, group and MTU, the redirects, the
// IPAM lease, and the result the runtime holds.
func cmdCheck(args *skel.CmdArgs) error {
	c, err := load(args)
	if err != nil {
		return err
	}
	if err := checkIfName(args.IfName); err != nil {
		return err
	}
	if c.PrevResult == nil {
		return cniErr(types.ErrInvalidNetworkConfig, "config: %q: required by CHECK (the result of ADD)", "prevResult")
	}
	gm, err := guestMAC(c, args)
	if err != nil {
		return err
	}
	rec := newRecord(c, args.ContainerID, args.IfName)
	if c.Mode == config.ModeHost {
		args.NetnsOverride = "1" // see cmdAdd
	}
	if c.IPAM.Type != "" {
		if err := ipamCheck(c.IPAM.Type, args.StdinData); err != nil {
			return asCNI(fmt.Errorf("ipam %q: %w", c.IPAM.Type, err), ErrCheck)
		}
	}
	if err := checkPrevResult(c, rec, gm); err != nil {
		return cniErr(ErrCheck, "%v", err)
	}
	if err := checkLinks(c, rec, args.Netns); err != nil {
		return cniErr(ErrCheck, "%v", err)
	}
	return nil
}

// checkPrevResult verifies that the runtime's result names the host port
// and the guest NIC with its MAC.
func checkPrevResult(c *config.Conf, rec *record, gm net.HardwareAddr) error {
	prev, err := types100.NewResultFromResult(c.PrevResult)
	if err != nil {
		return fmt.Errorf("prevResult: %w", err)
	}
	var port, guest bool
	for _, i := range prev.Interfaces {
		port = port || i.Name == rec.HostPort
		guest = guest || i.Name == rec.IfName && strings.EqualFold(i.Mac, gm.String())
	}
	switch {
	case !port:
		return fmt.Errorf("prevResult: no interface %q (the host port)", rec.HostPort)
	case !guest:
		return fmt.Errorf("prevResult: no guest NIC %q with MAC %s", rec.IfName, gm)
	}
	return nil
}

// checkLinks verifies the links of the attachment.
func checkLinks(c *config.Conf, rec *record, netnsPath string) error {
	if err := vmport.Check(c, rec.HostPort); err != nil {
		return fmt.Errorf("host port: %w", err)
	}
	mtu, err := portMTU(c, rec.HostPort)
	if err != nil {
		return err
	}
	if rec.Mode == config.ModeHost {
		return checkTAP(c, rec.TAP, mtu)
	}
	hostPort, err := link.Get(rec.HostPort)
	if err != nil {
		return fmt.Errorf("host port: %w", err)
	}
	if _, ok := hostPort.(*netlink.Veth); !ok {
		return fmt.Errorf("host port %q is a %s device, not a veth", rec.HostPort, hostPort.Type())
	}
	sandbox, err := ns.GetNS(netnsPath)
	if err != nil {
		return fmt.Errorf("CNI_NETNS %q: %w", netnsPath, err)
	}
	defer sandbox.Close()
	return sandbox.Do(func(ns.NetNS) error {
		if err := checkTAP(c, rec.TAP, mtu); err != nil {
			return err
		}
		l, err := link.Get(rec.Peer)
		if err != nil {
			return fmt.Errorf("veth peer in CNI_NETNS: %w", err)
		}
		peer, ok := l.(*netlink.Veth)
		if !ok {
			return fmt.Errorf("%q in CNI_NETNS is a %s device, not the veth peer of %q", rec.Peer, l.Type(), rec.HostPort)
		}
		if idx, err := netlink.VethPeerIndex(peer); err != nil || idx != hostPort.Attrs().Index {
			return fmt.Errorf("%q in CNI_NETNS is not the peer of host port %q", rec.Peer, rec.HostPort)
		}
		if err := checkUp("veth peer", peer, mtu, c.Bridge); err != nil {
			return err
		}
		t, err := link.Get(rec.TAP)
		if err != nil {
			return err
		}
		if err := front.CheckRedirect(t, peer); err != nil {
			return err
		}
		return front.CheckRedirect(peer, t)
	})
}

// checkTAP verifies the TAP name in the current namespace. Not vnet_hdr:
// the QEMU that opens the TAP sets that flag as it likes.
func checkTAP(c *config.Conf, name string, mtu int) error {
	info, err := tap.Inspect(name)
	if err != nil {
		return fmt.Errorf("TAP: %w", err)
	}
	switch {
	case info.Owner != c.OwnerID():
		return fmt.Errorf("TAP %q is owned by uid %s, want %s (\"owner\")", name, describeID(info.Owner), describeID(c.OwnerID()))
	case info.Group != c.GroupID():
		return fmt.Errorf("TAP %q has group %s, want %s (\"group\")", name, describeID(info.Group), describeID(c.GroupID()))
	case info.MultiQueue != c.MultiQueue:
		return fmt.Errorf("TAP %q has multi_queue %t, want %t (\"multiQueue\")", name, info.MultiQueue, c.MultiQueue)
	}
	l, err := link.Get(name)
	if err != nil {
		return err
	}
	return checkUp("TAP", l, mtu, c.Bridge)
}

// checkUp verifies that l (a kind, for messages) is up with the MTU of the
// bridge br.
func checkUp(kind string, l netlink.Link, mtu int, br string) error {
	a := l.Attrs()
	switch {
	case a.MTU != mtu:
		return fmt.Errorf("%s %q has MTU %d, bridge %q has %d", kind, a.Name, a.MTU, br, mtu)
	case a.Flags&net.FlagUp == 0:
		return fmt.Errorf("%s %q is down", kind, a.Name)
	}
	return nil
}
