package cniplugin

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/state"
)

// CollectVanished removes the attachments, of every network, whose sandbox
// network namespace is gone, or is another namespace now (the record's
// inode differs): a runtime that drops a sandbox without a DEL (`ctr run
// --cni` never sends one) leaves their host links, port policies, IPAM
// leases and records behind. Each is torn down as DEL would do it, with
// the network configuration the record kept for its IPAM plugin. It
// returns "NETWORK/CONTAINERID:IFNAME" of each attachment removed.
//
// An attachment whose record names no sandbox (host mode without
// CNI_NETNS) is never collected: nothing says it is gone. A namespace that
// cannot be opened for another reason than its absence counts as alive.
func CollectVanished() ([]string, error) {
	entries, err := os.ReadDir(state.Path("cni"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing CNI networks: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		recs, err := records(e.Name())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, r := range recs {
			if r.Netns == "" || !vanished(r.Netns, r.NetnsInode, r.NetnsCookie) {
				continue
			}
			if err := collect(r); err != nil {
				errs = append(errs, fmt.Errorf("network %q container %q interface %q: %w", r.Network, r.ContainerID, r.IfName, err))
				continue
			}
			removed = append(removed, r.Network+"/"+r.ContainerID+":"+r.IfName)
		}
	}
	sort.Strings(removed)
	return removed, errors.Join(errs...)
}

// vanished reports whether the namespace at path is gone or is not the one
// with inode ino and cookie ck (where they are not 0).
func vanished(path string, ino, ck uint64) bool {
	n, err := ns.GetNS(path)
	if err != nil {
		var nsErr ns.NSPathNotExistErr
		var notNS ns.NSPathNotNSErr
		return errors.As(err, &nsErr) || errors.As(err, &notNS)
	}
	defer n.Close()
	return !sameNS(n, ino, ck)
}

// collect tears down the attachment of r, whose sandbox is gone, releases
// its IPAM lease and removes the record.
func collect(r *record) error {
	c := &config.Conf{Bridge: r.Bridge, Mode: r.Mode}
	if err := teardown(c, r, "", 0, 0); err != nil {
		return err
	}
	if r.IPAM != "" && len(r.IPAMConf) > 0 {
		env := []string{"CNI_CONTAINERID=" + r.ContainerID, "CNI_IFNAME=" + r.IfName, "CNI_NETNS=", "CNI_ARGS="}
		if r.CNIPath != "" {
			env = append(env, "CNI_PATH="+r.CNIPath)
		}
		if _, err := delegate("DEL", r.IPAM, r.IPAMConf, env...); err != nil {
			return fmt.Errorf("ipam %q: %w", r.IPAM, err)
		}
	}
	return r.remove()
}
