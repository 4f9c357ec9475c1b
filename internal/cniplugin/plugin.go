package cniplugin

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/tapbridge/tapbridge/internal/bridge"
	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/nldump"
	"github.com/tapbridge/tapbridge/internal/state"
	"github.com/tapbridge/tapbridge/internal/uplink"
)

// Type is the plugin's CNI type, the "type" of its network configurations.
const Type = "tapbridge"

// Versions are the CNI specification versions the plugin speaks.
var Versions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// The plugin's own error codes (the CNI specification reserves 0-99).
const (
	// ErrBridge: the bridge cannot be used (the name belongs to another kind
	// of device) or cannot be made.
	ErrBridge uint = 100
	// ErrUplink: the configured uplink cannot be enslaved to the bridge.
	ErrUplink uint = 101
	// ErrLink: making or configuring the host port, TAP or redirect failed.
	ErrLink uint = 102
	// ErrExists: an interface the attachment needs already exists.
	ErrExists uint = 103
	// ErrCheck: CHECK found the attachment differs from what ADD made.
	ErrCheck uint = 104
	// ErrGC: GC could not remove some stale attachments.
	ErrGC uint = 105
)

// Funcs are the plugin's verbs, for skel.
func Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: logged("attach", cmdAdd), Del: logged("detach", cmdDel), Check: cmdCheck, Status: cmdStatus, GC: logged("gc", cmdGC)}
}

// Main runs the plugin: it reads CNI_* and the configuration on stdin,
// prints the result or a CNI error on stdout, and exits non-zero on error.
// about names the build ("tapbridge v1.2.3").
func Main(about string) {
	skel.PluginMainFuncs(Funcs(), version.PluginSupports(Versions...), about)
}

// cniErr returns a CNI error with code and a one-line message.
func cniErr(code uint, format string, args ...any) *types.Error {
	return types.NewError(code, fmt.Sprintf(format, args...), "")
}

// asCNI turns err into a CNI error: an error that already is one (from a
// delegated IPAM plugin, or made here) passes unchanged, otherwise code is
// used.
func asCNI(err error, code uint) error {
	if err == nil {
		return nil
	}
	var e *types.Error
	if errors.As(err, &e) {
		return e
	}
	return types.NewError(code, err.Error(), "")
}

// attachErr classifies an error of vmport.Attach by its type, never by
// its text.
func attachErr(err error) error {
	var ce *config.Error
	switch {
	case errors.As(err, &ce):
		return asCNI(err, types.ErrInvalidNetworkConfig)
	case errors.Is(err, bridge.ErrNotBridge):
		return asCNI(err, ErrBridge)
	case errors.Is(err, state.ErrLockTimeout), errors.Is(err, nldump.ErrInterrupted):
		return asCNI(err, types.ErrTryAgainLater)
	case errors.Is(err, uplink.ErrNotBridgeable), errors.Is(err, uplink.ErrGatewayUnreachable), errors.Is(err, uplink.ErrNoUplink):
		return asCNI(err, ErrUplink)
	}
	return asCNI(err, ErrLink)
}
