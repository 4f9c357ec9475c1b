package cniplugin

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
)

// cmdGC removes the host-side links and records of the network's
// attachments that are not in cni.dev/valid-attachments, then lets the
// IPAM plugin release their addresses. It acts only on attachments it has
// a record for, and only on the links that record names: without valid
// attachments every attachment of the network goes (as the spec says), but
// nothing that is not the plugin's.
func cmdGC(args *skel.CmdArgs) error {
	c, err := load(args)
	if err != nil {
		return err
	}
	valid := map[types.GCAttachment]bool{}
	for _, a := range c.ValidAttachments {
		valid[a] = true
	}
	recs, err := records(c.Name)
	if err != nil {
		return asCNI(err, types.ErrIOFailure)
	}
	var errs []error
	for _, r := range recs {
		if valid[types.GCAttachment{ContainerID: r.ContainerID, IfName: r.IfName}] {
			continue
		}
		if err := teardown(c, r, r.Netns, r.NetnsInode, r.NetnsCookie); err != nil {
			errs = append(errs, fmt.Errorf("container %q interface %q: %w", r.ContainerID, r.IfName, err))
			continue
		}
		if err := r.remove(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.IPAM.Type != "" {
		if err := ipamGC(c.IPAM.Type, args.StdinData); err != nil {
			errs = append(errs, fmt.Errorf("ipam %q: %w", c.IPAM.Type, err))
		}
	}
	if len(errs) > 0 {
		return asCNI(errors.Join(errs...), ErrGC)
	}
	return nil
}
