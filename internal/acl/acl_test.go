package acl

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	got, err := Parse("bridge.conf", []byte(strings.Join([]string{
		"# tapbridge bridge ACL",
		"",
		"allow br0",
		"  deny\tbr1  ",
		"allow all # every bridge",
		"deny all",
		"include /etc/tapbridge/bridge.d/alice.conf",
		"include my acl.conf",
		"allow br-lan-0123456\r",
		"\t# indented comment",
	}, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	want := []Directive{
		{Allow, "br0", 3},
		{Deny, "br1", 4},
		{Allow, All, 5},
		{Deny, All, 6},
		{Include, "/etc/tapbridge/bridge.d/alice.conf", 7},
		{Include, "my acl.conf", 8},
		{Allow, "br-lan-0123456", 9},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
}

// A comment needs whitespace before it: "br0#x" is a bridge name (the
// kernel accepts '#' in names).
func TestParseHashInName(t *testing.T) {
	ds, err := Parse("f", []byte("allow br0#x"))
	if err != nil || len(ds) != 1 || ds[0].Arg != "br0#x" {
		t.Fatalf("Parse = %v, %v", ds, err)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ text, want string }{
		{"allow", `f:1: "allow" needs a bridge name or "all"`},
		{"\n\ndeny   ", `f:3: "deny" needs a bridge name`},
		{"alow br0", `f:1: unknown command "alow" (want allow, deny or include)`},
		{"allow br0 br1", `f:1: "allow" takes one bridge name, got "br0 br1"`},
		{"allow this-is-16-bytes!", `f:1: bridge "this-is-16-bytes!": invalid interface name: 17 bytes, at most 15 allowed`},
		{"allow br-lan-012345678", `bridge "br-lan-012345678": invalid interface name: 16 bytes`},
		{"deny br/0", `must not contain '/' or ':'`},
		{"include", `f:1: "include" needs a file name`},
		{"allow br\x000", "NUL byte"},
		{"BR0 allow", `unknown command "BR0"`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := Parse("f", []byte(tt.text))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse(%q) = %v, want error containing %s", tt.text, err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
		})
	}
}

// files is an in-memory file system for Load.
type files map[string]string

func (f files) read(path string) ([]byte, error) {
	s, ok := f[path]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
	}
	if s == "<unreadable>" {
		return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrPermission}
	}
	return []byte(s), nil
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name    string
		files   files
		allowed []string
		denied  map[string]string // bridge -> part of the reason
	}{
		{
			name:   "default deny",
			files:  files{"/a": "# nothing\n"},
			denied: map[string]string{"br0": `/a: no rule allows bridge "br0" (the default is deny)`},
		},
		{
			name:    "allow one",
			files:   files{"/a": "allow br0\n"},
			allowed: []string{"br0"},
			denied:  map[string]string{"br1": "no rule allows bridge"},
		},
		{
			name:   "deny wins over an earlier allow",
			files:  files{"/a": "allow br0\ndeny br0\n"},
			denied: map[string]string{"br0": "/a:2 (deny br0)"},
		},
		{
			name:   "deny wins over a later allow",
			files:  files{"/a": "deny br0\nallow br0\n"},
			denied: map[string]string{"br0": "/a:1 (deny br0)"},
		},
		{
			name:    "allow all, deny one",
			files:   files{"/a": "allow all\ndeny br1\n"},
			allowed: []string{"br0", "br2"},
			denied:  map[string]string{"br1": "/a:2 (deny br1)"},
		},
		{
			name:   "deny all beats allow",
			files:  files{"/a": "allow br0\ndeny all\n"},
			denied: map[string]string{"br0": "/a:2 (deny all)"},
		},
		{
			name:    "include, relative to the including file",
			files:   files{"/etc/tb/bridge.conf": "include users/alice.conf\n", "/etc/tb/users/alice.conf": "allow br0\n"},
			allowed: []string{"br0"},
		},
		{
			name:    "an unreadable include is skipped (per-user files)",
			files:   files{"/a": "allow br0\ninclude /bob.conf\ninclude /missing.conf\n", "/bob.conf": "<unreadable>"},
			allowed: []string{"br0"},
			denied:  map[string]string{"br9": "no rule allows bridge"},
		},
		{
			name:   "a deny in an include wins",
			files:  files{"/a": "allow all\ninclude /b\n", "/b": "deny br0\n"},
			denied: map[string]string{"br0": "/b:1 (deny br0)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			top := "/a"
			if _, ok := tt.files[top]; !ok {
				top = "/etc/tb/bridge.conf"
			}
			a, err := Load(top, tt.files.read)
			if err != nil {
				t.Fatal(err)
			}
			for _, br := range tt.allowed {
				if err := a.Check(br); err != nil {
					t.Errorf("Check(%q) = %v, want allowed", br, err)
				}
			}
			for br, want := range tt.denied {
				err := a.Check(br)
				if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), want) {
					t.Errorf("Check(%q) = %v, want ErrDenied naming %q", br, err, want)
				}
			}
		})
	}
}

func TestCheckRejectsBadNames(t *testing.T) {
	a, err := Load("/a", files{"/a": "allow all\n"}.read)
	if err != nil {
		t.Fatal(err)
	}
	for _, br := range []string{"", "br-lan-0123456789", "br 0", "../etc"} {
		if err := a.Check(br); err == nil || errors.Is(err, ErrDenied) {
			t.Errorf("Check(%q) = %v, want an invalid-name error", br, err)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name  string
		files files
		want  string
	}{
		{"missing top file", files{}, "reading ACL: open /a: file does not exist"},
		{"unreadable top file", files{"/a": "<unreadable>"}, "permission denied"},
		{"syntax error in an include fails closed", files{"/a": "allow all\ninclude /b\n", "/b": "deny br0 br1\n"}, `ACL /b:1: "deny" takes one bridge name`},
		{"include loop", files{"/a": "include /b\n", "/b": "include /a\n"}, "ACL /a: includes itself (through /a -> /b)"},
		{"self include", files{"/a": "include /a\n"}, "ACL /a: includes itself"},
		{"too deep", deep(20), "nested deeper than 8"},
		{"too large", files{"/a": strings.Repeat("#", MaxSize+1)}, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load("/a", tt.files.read)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func deep(n int) files {
	f := files{"/a": "include /f1\n"}
	for i := 1; i < n; i++ {
		f["/f"+itoa(i)] = "include /f" + itoa(i+1) + "\n"
	}
	return f
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

// TestLoadFromDisk reads real files with os.ReadFile, as qemu-ifup does.
func TestLoadFromDisk(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("bridge.conf", "allow br0\ninclude extra.conf\ninclude nowhere.conf\n")
	write("extra.conf", "deny br1\nallow br1\n")
	a, err := Load(filepath.Join(dir, "bridge.conf"), os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{filepath.Join(dir, "bridge.conf"), filepath.Join(dir, "extra.conf")}, a.Files); diff != "" {
		t.Errorf("Files (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{filepath.Join(dir, "nowhere.conf")}, a.Skipped); diff != "" {
		t.Errorf("Skipped (-want +got):\n%s", diff)
	}
	if err := a.Check("br0"); err != nil {
		t.Error(err)
	}
	if err := a.Check("br1"); !errors.Is(err, ErrDenied) {
		t.Errorf("Check(br1) = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"allow br0\n", "deny all\nallow all\n", "# c\n\tinclude /etc/x.conf\n",
		"allow br0 # c\r\n", "include a b\n", "deny  \t br-lan-0123456", "allow\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ds, err := Parse("f", data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		for _, d := range ds {
			if d.Cmd != Include && d.Arg != All && (len(d.Arg) == 0 || len(d.Arg) > 15) {
				t.Fatalf("accepted bridge name %q", d.Arg)
			}
		}
		// What Parse accepts survives a round trip through Format.
		again, err := Parse("f", format(ds))
		if err != nil {
			t.Fatalf("Format output does not parse: %v\n%s", err, format(ds))
		}
		strip := func(ds []Directive) []Directive {
			out := make([]Directive, len(ds))
			for i, d := range ds {
				out[i] = Directive{Cmd: d.Cmd, Arg: d.Arg}
			}
			return out
		}
		if diff := cmp.Diff(strip(ds), strip(again)); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
		// Checking never panics, whatever the rules.
		a := &ACL{Path: "f"}
		for _, d := range ds {
			if d.Cmd != Include {
				a.Rules = append(a.Rules, Rule{Cmd: d.Cmd, Bridge: d.Arg, File: "f", Line: d.Line})
			}
		}
		_ = a.Check("br0")
	})
}

// format writes directives back in the file format, for the round-trip
// test: the directives' String methods are what it exercises.
func format(ds []Directive) []byte {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString(d.String())
		b.WriteByte('\n')
	}
	return []byte(b.String())
}
