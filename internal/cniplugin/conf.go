package cniplugin

import (
	"fmt"
	"net"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/ifname"
	"github.com/tapbridge/tapbridge/internal/mac"
	"github.com/tapbridge/tapbridge/internal/tap"
)

// load parses and validates the network configuration on stdin. A bad
// configuration is CNI error 7 naming the field.
func load(args *skel.CmdArgs) (*config.Conf, error) {
	c, err := config.Parse(args.StdinData)
	if err != nil {
		return nil, cniErr(types.ErrInvalidNetworkConfig, "%v", err)
	}
	if c.Type != "" && c.Type != Type {
		return nil, cniErr(types.ErrInvalidNetworkConfig, "config: %q: must be %q, got %q", "type", Type, c.Type)
	}
	if err := version.ParsePrevResult(&c.NetConf); err != nil {
		return nil, cniErr(types.ErrInvalidNetworkConfig, "config: %q: %v", "prevResult", err)
	}
	return c, nil
}

// checkIfName validates CNI_IFNAME (CNI error 4).
func checkIfName(name string) error {
	if err := ifname.Validate("CNI_IFNAME", name); err != nil {
		return cniErr(types.ErrInvalidEnvironmentVariables, "%v", err)
	}
	return nil
}

// argsMAC returns MAC= from CNI_ARGS ("K1=V1;K2=V2"); other keys are
// ignored, whatever IgnoreUnknown says, as runtimes add their own.
func argsMAC(cniArgs string) (string, error) {
	for _, kv := range strings.Split(cniArgs, ";") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return "", cniErr(types.ErrInvalidEnvironmentVariables, "CNI_ARGS: %q is not KEY=VALUE", kv)
		}
		if k == "MAC" {
			return v, nil
		}
	}
	return "", nil
}

// guestMAC returns the guest NIC's MAC: runtimeConfig.mac, CNI_ARGS MAC=,
// the config's "mac", else one derived from the container ID and ifname.
func guestMAC(c *config.Conf, args *skel.CmdArgs) (net.HardwareAddr, error) {
	s, err := argsMAC(args.Args)
	if err != nil {
		return nil, err
	}
	m, err := c.GuestMAC(s)
	if err != nil {
		return nil, cniErr(types.ErrInvalidEnvironmentVariables, "%v", err)
	}
	if m == nil {
		m = DerivedMAC(args.ContainerID, args.IfName)
	}
	return m, nil
}

// DerivedMAC is the guest MAC given to an attachment that asks for none:
// mac.FromName(containerID + "/" + ifname), the same on every ADD, so a VM
// keeps its DHCP lease across restarts of its sandbox.
func DerivedMAC(containerID, ifName string) net.HardwareAddr {
	return mac.FromName(containerID + "/" + ifName)
}

// describeID renders a uid/gid for messages.
func describeID(id int) string {
	if id == tap.NoID {
		return "none"
	}
	return fmt.Sprint(id)
}
