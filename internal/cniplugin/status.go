package cniplugin

import (
	"errors"
	"net"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/bridge"
	"github.com/tapbridge/tapbridge/internal/link"
)

// cmdStatus reports whether the plugin can serve ADDs: error 50 (plugin not
// available) when the bridge, or the configured uplink, is missing or down.
func cmdStatus(args *skel.CmdArgs) error {
	c, err := load(args)
	if err != nil {
		return err
	}
	br, err := bridge.Get(c.Bridge)
	switch {
	case errors.Is(err, link.ErrNotFound):
		return cniErr(types.ErrPluginNotAvailable, "bridge %q does not exist (run 'tapbridge up --bridge %s%s')", c.Bridge, c.Bridge, uplinkFlag(c.Uplink))
	case errors.Is(err, bridge.ErrNotBridge):
		return cniErr(types.ErrPluginNotAvailable, "%v", err)
	case err != nil:
		return cniErr(types.ErrPluginNotAvailable, "bridge %q: %v", c.Bridge, err)
	case br.Attrs().Flags&net.FlagUp == 0:
		return cniErr(types.ErrPluginNotAvailable, "bridge %q is down", c.Bridge)
	}
	if c.Uplink != "" {
		up, err := link.Get(c.Uplink)
		if err != nil {
			return cniErr(types.ErrPluginNotAvailable, "uplink: %v", err)
		}
		a := up.Attrs()
		switch {
		case a.Flags&net.FlagUp == 0:
			return cniErr(types.ErrPluginNotAvailable, "uplink %q is down", c.Uplink)
		// IFF_LOWER_UP is the carrier as the driver set it, at once. The
		// operstate follows only when linkwatch gets to it (up to a second
		// later, more on a loaded host): it would miss a cable pulled just
		// now, and call a link just brought up still down.
		case a.RawFlags&unix.IFF_LOWER_UP == 0:
			return cniErr(types.ErrPluginNotAvailable, "uplink %q has no carrier (cable or peer down)", c.Uplink)
		}
	}
	if c.IPAM.Type != "" {
		if err := ipamStatus(c.IPAM.Type, args.StdinData); err != nil {
			return asCNI(err, types.ErrPluginNotAvailable)
		}
	}
	return nil
}

func uplinkFlag(up string) string {
	if up == "" {
		return ""
	}
	return " --uplink " + up
}
