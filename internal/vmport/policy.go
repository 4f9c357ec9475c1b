package vmport

import (
	"github.com/vishvananda/netlink"

	"github.com/tapbridge/tapbridge/internal/config"
)

// applyPolicy programs the port policy of the configuration on the port.
// TODO(issue 5): tenant safety lands here (package policy).
func applyPolicy(c *config.Conf, br *netlink.Bridge, p Port) error { return nil }

// removePolicy removes whatever applyPolicy added. Idempotent.
func removePolicy(name string) error { return nil }
