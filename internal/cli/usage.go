package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"
)

// flagDoc is one flag as --help, the man page and the shell completions
// show it: the single description of a flag all three are made from.
type flagDoc struct {
	Short, Long string
	Arg         string // the value's placeholder ("string", "duration"); "" for a boolean
	Usage       string
	Default     string // shown when it is not the zero value
	Bool        bool
}

// flagDocs describes the visible flags of fs in their order.
func flagDocs(fs *pflag.FlagSet) []flagDoc {
	var docs []flagDoc
	if fs == nil {
		return nil
	}
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		arg, usage := pflag.UnquoteUsage(f)
		d := flagDoc{Short: f.Shorthand, Long: f.Name, Usage: usage, Bool: f.Value.Type() == "bool"}
		if !d.Bool {
			d.Arg = arg
		}
		switch {
		case d.Bool && f.DefValue == "true":
			// A boolean is given as plain --flag; one that is on by
			// default says how to turn it off.
			d.Default = fmt.Sprintf("true; --%s=false turns it off", f.Name)
		case d.Bool, f.DefValue == "", f.DefValue == "0", f.DefValue == "[]":
		case f.Value.Type() == "string":
			d.Default = fmt.Sprintf("%q", f.DefValue)
		default:
			d.Default = f.DefValue
		}
		docs = append(docs, d)
	})
	return docs
}

// names is the flag as written: "-c, --config string" or "    --no-probe".
func (d flagDoc) names() string {
	s := "    --" + d.Long
	if d.Short != "" {
		s = "-" + d.Short + ", --" + d.Long
	}
	if d.Arg != "" {
		s += " " + d.Arg
	}
	return s
}

// description is the usage with its default.
func (d flagDoc) description() string {
	if d.Default == "" {
		return d.Usage
	}
	return fmt.Sprintf("%s (default %s)", d.Usage, d.Default)
}

// formatFlags is the Flags: section of --help.
func formatFlags(fs *pflag.FlagSet) string {
	docs := flagDocs(fs)
	width := 0
	for _, d := range docs {
		width = max(width, len(d.names()))
	}
	var b strings.Builder
	for _, d := range docs {
		fmt.Fprintf(&b, "  %-*s   %s\n", width, d.names(), d.description())
	}
	return b.String()
}

// flagCapture is an output that, handed to a command run with --help,
// keeps the command's flag set: the man page and the completions are made
// from the very flags the command parses.
type flagCapture struct {
	io.Writer
	fs *pflag.FlagSet
}

// flagsOf returns the flags of c (nil when it has none).
func flagsOf(c command) *pflag.FlagSet {
	fc := &flagCapture{Writer: io.Discard}
	if c.run != nil {
		_ = c.run([]string{"--help"}, fc)
	}
	return fc.fs
}
