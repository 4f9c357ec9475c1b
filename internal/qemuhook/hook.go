package qemuhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/config"
)

// Mode is what the binary has been asked to be.
type Mode int

// The three personalities of the binary.
const (
	ModeIfup Mode = iota
	ModeIfdown
	ModeHelper
)

// ModeOf says what the binary is from its name (os.Args[0]) and arguments:
// a name ending in "ifdown" is qemu-ifdown, a name containing
// "bridge-helper" or any of the helper's flags is the bridge helper, and
// anything else is qemu-ifup.
func ModeOf(args []string) Mode {
	name := ""
	if len(args) > 0 {
		name = filepath.Base(args[0])
	}
	switch {
	case strings.Contains(name, "bridge-helper"):
		return ModeHelper
	case strings.HasSuffix(name, "ifdown"):
		return ModeIfdown
	}
	for _, a := range args[min(1, len(args)):] {
		if a == "--use-vnet" || strings.HasPrefix(a, "--br=") || strings.HasPrefix(a, "--fd=") {
			return ModeHelper
		}
	}
	return ModeIfup
}

// ErrUsage marks a command-line mistake (exit status 2).
var ErrUsage = errors.New("usage")

// Main runs the binary with args (os.Args) and returns the exit status.
// Errors are printed to stderr as one line prefixed with the program name.
func Main(args []string, stderr io.Writer) int {
	prog := "qemu-ifup"
	if len(args) > 0 {
		prog = filepath.Base(args[0])
	}
	var rest []string
	if len(args) > 1 {
		rest = args[1:]
	}
	var err error
	mode := ModeOf(args)
	if mode != ModeHelper && Elevated() {
		// A setuid or file-capability install exists for the bridge helper
		// only: run under another name by an ordinary user, the hooks would
		// act with root's power on a user's environment and arguments.
		err := fmt.Errorf("%w: this binary runs with privileges the invoking user (uid %d) does not have, so it acts only as the bridge helper; install qemu-ifup/qemu-ifdown without the setuid bit or file capability", errElevated, unix.Getuid())
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		logFailed(mode, rest, err)
		return 1
	}
	switch mode {
	case ModeHelper:
		// First of all, before a flag is even read: keep CAP_NET_ADMIN only.
		if err = DropPrivileges(); err == nil {
			err = Helper(rest, os.Getenv)
		}
	case ModeIfdown:
		err = runHook(rest, Ifdown)
	default:
		err = runHook(rest, Ifup)
	}
	if err == nil {
		return 0
	}
	if errors.Is(err, errHelp) {
		fmt.Fprint(stderr, config.HookUsage)
		return 0
	}
	fmt.Fprintf(stderr, "%s: %s\n", prog, oneLine(err.Error()))
	logFailed(mode, rest, err)
	if errors.Is(err, ErrUsage) {
		return 2
	}
	return 1
}

var errHelp = errors.New("help")

func runHook(args []string, hook func(string, func(string) string) error) error {
	if len(args) == 1 && (args[0] == "--help" || args[0] == "-h") {
		return errHelp
	}
	if len(args) != 1 {
		return fmt.Errorf("%w: want exactly one argument, the TAP name (QEMU passes it), got %d; run with --help", ErrUsage, len(args))
	}
	return hook(args[0], os.Getenv)
}

// oneLine keeps a message on one line: QEMU users see only that.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// Error is a hook failure: what was attempted on which TAP and bridge, and
// why.
type Error struct {
	Op     string // "attach" or "detach"
	TAP    string // may be empty when the helper failed before creating it
	Bridge string
	Routed bool // attached routed ("routed"): no bridge
	Err    error
}

func (e *Error) Error() string {
	tap := "a TAP"
	if e.TAP != "" {
		tap = fmt.Sprintf("TAP %q", e.TAP)
	}
	switch {
	case e.Op == "attach" && e.Routed:
		return fmt.Sprintf("cannot attach %s routed: %v", tap, e.Err)
	case e.Op == "detach":
		return fmt.Sprintf("cannot detach %s from bridge %q: %v", tap, e.Bridge, e.Err)
	default:
		return fmt.Sprintf("cannot attach %s to bridge %q: %v", tap, e.Bridge, e.Err)
	}
}

func (e *Error) Unwrap() error { return e.Err }

// loaded is a configuration read for a hook.
type loaded struct {
	conf *config.Conf
	path string // the file read, or "" when none exists
	// fileBridge is the bridge the file names (default br0): a bridge
	// given per VM (TAPBRIDGE_BRIDGE, --br=) that differs from it does not
	// get the file's uplink.
	fileBridge string
}

// loadConf reads TAPBRIDGE_CONF, else the default file if it exists, and
// applies the per-VM environment when perVM is true. On failure it still
// returns the best guess of the bridge, for the error line.
// environ is the process environment; a variable so that tests can set it.
var environ = os.Environ

func loadConf(getenv func(string) string, perVM bool) (*loaded, string, error) {
	path, optional := getenv(config.EnvConf), false
	if path == "" {
		path, optional = config.DefaultPath, true
	}
	guess := guessBridge(path, getenv, perVM)
	c, err := config.Load(path, optional)
	if err != nil {
		return nil, guess, err
	}
	l := &loaded{conf: c, fileBridge: c.Bridge}
	if _, err := os.Stat(path); err == nil {
		l.path = path
	}
	if perVM {
		if err := config.CheckEnv(environ()); err != nil {
			return nil, guess, err
		}
		if err := c.ApplyEnv(getenv); err != nil {
			return nil, guess, err
		}
	}
	l.rebridge(c.Bridge)
	return l, c.Bridge, nil
}

// rebridge points the configuration at bridge. The uplink the file names
// belongs to the file's bridge: another bridge, chosen per VM, gets none.
func (l *loaded) rebridge(bridge string) {
	l.conf.Bridge = bridge
	if bridge != l.fileBridge {
		l.conf.Uplink, l.conf.UplinkVLANs = "", nil
	}
}

// guessBridge is the bridge a broken configuration most likely meant, for
// the error message.
func guessBridge(path string, getenv func(string) string, perVM bool) string {
	if v := getenv(config.EnvBridge); perVM && v != "" {
		return v
	}
	var partial struct {
		Bridge string `json:"bridge"`
	}
	if data, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(data, &partial)
	}
	if partial.Bridge != "" {
		return partial.Bridge
	}
	return config.DefaultBridge
}
