package cli

import (
	"errors"

	"github.com/tapbridge/tapbridge/internal/acl"
	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/event"
	"github.com/tapbridge/tapbridge/internal/uplink"
)

// logEvent records the outcome of a command that changes the host in the
// system log: ok, unchanged, refused (bad input, an uplink that cannot be
// bridged, the ACL) or failed.
func logEvent(e event.Event, changed bool, err error) {
	var ce *config.Error
	switch {
	case err == nil && changed:
		e.Result = event.OK
	case err == nil:
		e.Result = event.Unchanged
	case errors.Is(err, ErrUsage), errors.As(err, &ce), errors.Is(err, acl.ErrDenied),
		errors.Is(err, uplink.ErrNotBridgeable), errors.Is(err, uplink.ErrNoUplink):
		e.Result = event.Refused
	default:
		e.Result = event.Failed
	}
	e.Err = err
	event.Log(e)
}
