package acl

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/tapbridge/tapbridge/internal/ifname"
)

// DefaultPath is the ACL tapbridge's bridge helper reads when the
// configuration names none (qemu-bridge-helper's is /etc/qemu/bridge.conf).
const DefaultPath = "/etc/tapbridge/bridge.conf"

// All is the argument of "allow all" and "deny all". It is always the
// keyword, never a bridge called "all", as in qemu-bridge-helper.
const All = "all"

// MaxSize is the largest ACL file accepted.
const MaxSize = 1 << 20

// maxDepth bounds include nesting.
const maxDepth = 8

// ErrDenied matches every refusal by Check. Its text is
// qemu-bridge-helper's, which tools look for.
var ErrDenied = errors.New("access denied by acl file")

// Command is the first word of a line.
type Command string

// The commands of the format.
const (
	Allow   Command = "allow"
	Deny    Command = "deny"
	Include Command = "include"
)

// Directive is one meaningful line of one file, as written.
type Directive struct {
	Cmd  Command
	Arg  string // a bridge name, All, or a file (include)
	Line int
}

func (d Directive) String() string { return string(d.Cmd) + " " + d.Arg }

// Parse parses the text of one ACL file; name is used in messages.
// Includes are returned, not followed.
func Parse(name string, data []byte) ([]Directive, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("ACL %s: larger than %d bytes", name, MaxSize)
	}
	var out []Directive
	for i, line := range strings.Split(string(data), "\n") {
		d, ok, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("ACL %s:%d: %w", name, i+1, err)
		}
		if ok {
			d.Line = i + 1
			out = append(out, d)
		}
	}
	return out, nil
}

// isSpace is the whitespace of the format (C isspace in the C locale).
func isSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\r' || r == '\v' || r == '\f'
}

func parseLine(line string) (Directive, bool, error) {
	line = strings.TrimFunc(line, isSpace)
	if line == "" || line[0] == '#' {
		return Directive{}, false, nil
	}
	if strings.IndexByte(line, 0) >= 0 {
		return Directive{}, false, errors.New("NUL byte in line")
	}
	cmd, arg := line, ""
	if i := strings.IndexFunc(line, isSpace); i >= 0 {
		cmd, arg = line[:i], strings.TrimLeftFunc(line[i:], isSpace)
	}
	// A comment may follow the argument after whitespace.
	for i := 1; i < len(arg); i++ {
		if arg[i] == '#' && isSpace(rune(arg[i-1])) {
			arg = strings.TrimRightFunc(arg[:i], isSpace)
			break
		}
	}
	d := Directive{Cmd: Command(cmd), Arg: arg}
	switch d.Cmd {
	case Allow, Deny:
		if arg == "" {
			return d, false, fmt.Errorf("%q needs a bridge name or %q", cmd, All)
		}
		if arg == All {
			return d, true, nil
		}
		if strings.IndexFunc(arg, isSpace) >= 0 {
			return d, false, fmt.Errorf("%q takes one bridge name, got %q", cmd, arg)
		}
		if err := ifname.Validate("bridge", arg); err != nil {
			return d, false, err
		}
	case Include:
		if arg == "" {
			return d, false, errors.New(`"include" needs a file name`)
		}
	default:
		return d, false, fmt.Errorf("unknown command %q (want allow, deny or include)", truncate(cmd, 32))
	}
	return d, true, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Rule is an allow or deny rule and where it was written.
type Rule struct {
	Cmd    Command // Allow or Deny
	Bridge string  // a bridge name or All
	File   string
	Line   int
}

func (r Rule) String() string {
	return fmt.Sprintf("%s:%d (%s %s)", r.File, r.Line, r.Cmd, r.Bridge)
}

func (r Rule) matches(bridge string) bool { return r.Bridge == All || r.Bridge == bridge }

// ACL is a loaded access list: the rules of a file and of every file it
// includes, in order.
type ACL struct {
	Path    string   // the top file
	Rules   []Rule   // allow and deny rules of every file read
	Files   []string // the files read, the top file first
	Skipped []string // includes skipped because they are missing or unreadable
}

// ReadFunc reads one ACL file. An error matching fs.ErrNotExist or
// fs.ErrPermission makes an include be skipped; any other error fails.
type ReadFunc func(path string) ([]byte, error)

// Load reads the ACL file path with read, following includes. The top file
// must be readable.
func Load(path string, read ReadFunc) (*ACL, error) {
	a := &ACL{Path: path}
	if err := a.load(path, read, nil); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *ACL) load(path string, read ReadFunc, stack []string) error {
	clean := filepath.Clean(path)
	for _, p := range stack {
		if p == clean {
			return fmt.Errorf("ACL %s: includes itself (through %s)", path, strings.Join(stack, " -> "))
		}
	}
	if len(stack) >= maxDepth {
		return fmt.Errorf("ACL %s: includes nested deeper than %d (through %s)", path, maxDepth, strings.Join(stack, " -> "))
	}
	data, err := read(path)
	if err != nil {
		if len(stack) > 0 && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission)) {
			a.Skipped = append(a.Skipped, path)
			return nil
		}
		return fmt.Errorf("reading ACL: %w", err)
	}
	ds, err := Parse(path, data)
	if err != nil {
		return err
	}
	a.Files = append(a.Files, path)
	stack = append(stack, clean)
	for _, d := range ds {
		if d.Cmd == Include {
			inc := d.Arg
			if !filepath.IsAbs(inc) {
				inc = filepath.Join(filepath.Dir(path), inc)
			}
			if err := a.load(inc, read, stack); err != nil {
				return err
			}
			continue
		}
		a.Rules = append(a.Rules, Rule{Cmd: d.Cmd, Bridge: d.Arg, File: path, Line: d.Line})
	}
	return nil
}

// Check says whether bridge may be used: nil when a rule allows it and no
// rule denies it, else an error matching ErrDenied that names the rule
// that decided.
func (a *ACL) Check(bridge string) error {
	if err := ifname.Validate("bridge", bridge); err != nil {
		return err
	}
	var allow *Rule
	for i, r := range a.Rules {
		if !r.matches(bridge) {
			continue
		}
		if r.Cmd == Deny {
			return fmt.Errorf("%w %s", ErrDenied, r)
		}
		if allow == nil {
			allow = &a.Rules[i]
		}
	}
	if allow == nil {
		return fmt.Errorf("%w %s: no rule allows bridge %q (the default is deny)", ErrDenied, a.Path, bridge)
	}
	return nil
}
