package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/state"
)

// Version is set at build time.
var Version = "dev"

// ErrUsage marks a command-line mistake: exit status 2 and a hint.
var ErrUsage = errors.New("usage")

type command struct {
	name    string
	hidden  bool // not listed in --help nor the man page (man)
	summary string
	usage   string   // after "tapbridge NAME"
	words   []string // what the first argument may be, for completion
	help    string   // description and examples
	run     func(args []string, out io.Writer) error
}

func commands() []command {
	return []command{
		upCommand(), downCommand(), statusCommand(), tapCommand(), macCommand(), gcCommand(), checkCommand(), portsCommand(), doctorCommand(),
		libvirtHookCommand(),
		completionCommand(), manCommand(),
		{name: "version", summary: "print the version", run: func(_ []string, out io.Writer) error {
			fmt.Fprintf(out, "tapbridge %s\n", Version)
			return nil
		}},
	}
}

const mainHelp = `tapbridge puts QEMU VMs on the LAN as if they were physical servers: each VM
gets its own MAC and its own IP through a Linux bridge that holds the host's
uplink and one TAP per VM NIC. Run without CNI_COMMAND it is this command line;
with CNI_COMMAND set it is the CNI plugin of type "tapbridge".

Usage:
  tapbridge COMMAND [flags]

Commands:
%s
Examples:
  tapbridge up --bridge br0 --uplink eth0      # move eth0 and its IPs into br0
  tapbridge status --bridge br0
  tapbridge tap add vm1-tap --owner qemu       # a TAP for script=no
  tapbridge mac vm1                            # the stable MAC of VM "vm1"
  tapbridge down --bridge br0                  # give eth0 its IPs back

Run 'tapbridge COMMAND --help' for the flags of a command.
`

// Main runs the CLI with args (without the program name) and returns the
// exit status.
func Main(args []string) int {
	if err := run(args, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "tapbridge: %v\n", err)
		if errors.Is(err, ErrUsage) {
			return 2
		}
		return 1
	}
	return 0
}

func run(args []string, out io.Writer) error {
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "--help" || args[0] == "-h" {
		var b strings.Builder
		for _, c := range cmds {
			if !c.hidden {
				fmt.Fprintf(&b, "  %-10s %s\n", c.name, c.summary)
			}
		}
		fmt.Fprintf(out, mainHelp, b.String())
		return nil
	}
	if args[0] == "--version" {
		args[0] = "version"
	}
	for _, c := range cmds {
		if c.name == args[0] {
			return c.run(args[1:], out)
		}
	}
	return fmt.Errorf("%w: unknown command %q; run 'tapbridge --help'", ErrUsage, args[0])
}

// flagSet returns a flag set whose --help prints the command's help.
func flagSet(c *command, out io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet(c.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage:\n  tapbridge %s %s\n\n%s\nFlags:\n%s", c.name, c.usage, c.help, formatFlags(fs))
	}
	if fc, ok := out.(*flagCapture); ok {
		fc.fs = fs
	}
	return fs
}

// parse parses args into fs; --help prints usage and returns errHelp.
func parse(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) { // pflag has printed the usage
			return errHelp
		}
		return fmt.Errorf("%w: %s %v; run 'tapbridge %s --help'", ErrUsage, fs.Name(), err, fs.Name())
	}
	return nil
}

var errHelp = errors.New("help shown")

// handled turns errHelp into success.
func handled(err error) error {
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

// confFlags are the flags shared by commands that read the configuration.
type confFlags struct {
	path        string
	bridge      string
	lockTimeout time.Duration
}

func (f *confFlags) register(fs *pflag.FlagSet) {
	fs.StringVarP(&f.path, "config", "c", "", "configuration file (the tapbridge CNI schema); flags override it")
	fs.StringVarP(&f.bridge, "bridge", "b", "", "bridge name (default \"br0\")")
	fs.DurationVar(&f.lockTimeout, "lock-timeout", 0, "how long to wait for a lock another tapbridge holds (default "+state.DefaultLockTimeout.String()+", or $"+state.EnvLockTimeout+")")
}

// load reads the configuration named by --config (or none) and applies the
// flags that override it.
func (f *confFlags) load(fs *pflag.FlagSet) (*config.Conf, error) {
	c := &config.Conf{}
	if f.path != "" {
		var err error
		if c, err = config.Load(f.path, false); err != nil {
			return nil, err
		}
	}
	if fs.Changed("bridge") {
		c.Bridge = f.bridge
	}
	if fs.Changed("lock-timeout") {
		if f.lockTimeout <= 0 {
			return nil, fmt.Errorf("%w: --lock-timeout must be positive, got %v", ErrUsage, f.lockTimeout)
		}
		state.SetLockTimeout(f.lockTimeout)
	} else if _, err := state.LockTimeout(); err != nil {
		return nil, err // a bad TAPBRIDGE_LOCK_TIMEOUT, before anything changes
	}
	return c, nil
}
