package cniplugin

import (
	"encoding/json"
	"errors"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/event"
)

// logged records the outcome of a verb that changes the host (ADD, DEL)
// in the system log, with the container ID as the VM.
func logged(action string, verb func(*skel.CmdArgs) error) func(*skel.CmdArgs) error {
	return func(args *skel.CmdArgs) error {
		err := verb(args)
		var partial struct {
			Bridge string `json:"bridge"`
		}
		_ = json.Unmarshal(args.StdinData, &partial)
		if partial.Bridge == "" {
			partial.Bridge = config.DefaultBridge
		}
		e := event.Event{Action: action, Result: event.OK, Bridge: partial.Bridge, Port: args.IfName, VM: args.ContainerID, Err: err}
		var ce *types.Error
		switch {
		case err == nil:
		case errors.As(err, &ce) && (ce.Code == types.ErrInvalidEnvironmentVariables || ce.Code == types.ErrInvalidNetworkConfig):
			e.Result = event.Refused
		default:
			e.Result = event.Failed
		}
		event.Log(e)
		return err
	}
}
