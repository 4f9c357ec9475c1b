package qemuhook

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/tapbridge/tapbridge/internal/acl"
	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/event"
)

// errElevated refuses to run a privileged copy as qemu-ifup/qemu-ifdown.
var errElevated = errors.New("refused")

// logDone records a successful attach or detach in the system log.
func logDone(action, bridge, port string, guest net.HardwareAddr) {
	e := event.Event{Action: action, Result: event.OK, Bridge: bridge, Port: port, VM: qemuName()}
	if guest != nil {
		e.MAC = guest.String()
	}
	event.Log(e)
}

// logFailed records a hook's failure in the system log; the user sees it
// on stderr as well.
func logFailed(mode Mode, args []string, err error) {
	e := event.Event{Action: "attach", Result: event.Failed, VM: qemuName(), Err: err}
	if mode == ModeIfdown {
		e.Action = "detach"
	}
	if mode != ModeHelper && len(args) == 1 {
		e.Port = args[0]
	}
	var he *Error
	if errors.As(err, &he) {
		e.Bridge, e.Port, e.Err = he.Bridge, he.TAP, he.Err
	}
	var ce *config.Error
	if errors.Is(err, acl.ErrDenied) || errors.Is(err, ErrUsage) || errors.Is(err, errElevated) || errors.As(err, &ce) {
		e.Result = event.Refused
	}
	event.Log(e)
}

// qemuName is the -name of the QEMU that runs the hook (its parent), so
// that the log says which VM a port belongs to; "" when there is none.
func qemuName() string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", os.Getppid()))
	if err != nil {
		return ""
	}
	args := strings.Split(string(bytes.TrimRight(data, "\x00")), "\x00")
	for i, a := range args {
		if (a == "-name" || a == "--name") && i+1 < len(args) {
			return nameOption(args[i+1])
		}
	}
	return ""
}

// nameOption takes the guest name from QEMU's -name value:
// "vm1", "guest=vm1,debug-threads=on" or "vm1,process=...".
func nameOption(v string) string {
	for i, part := range strings.Split(v, ",") {
		if k, val, ok := strings.Cut(part, "="); ok {
			if k == "guest" {
				return val
			}
		} else if i == 0 {
			return part
		}
	}
	return ""
}
