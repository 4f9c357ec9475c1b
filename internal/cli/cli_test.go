package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tapbridge/tapbridge/internal/nstest"
)

// runCLI runs the command line and returns what it printed and its error.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(args, &out)
	return out.String(), err
}

// Boolean flags read as they are used: --no-probe, not
// --no-probe[=true|false]; one that is on by default says how to turn it
// off.
func TestHelpBooleanFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string // a regexp matching one line of the help
	}{
		{[]string{"up", "--help"}, `(?m)^      --no-probe +do not probe the default gateway`},
		{[]string{"tap", "--help"}, `(?m)^      --multi-queue +create a multi-queue TAP`},
		{[]string{"tap", "--help"}, `(?m)^      --dhcp-guard +drop DHCP server replies from the VM \("dhcpGuard"\) \(default true; --dhcp-guard=false turns it off\)$`},
		{[]string{"status", "--help"}, `(?m)^      --json +print JSON$`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, err := runCLI(t, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out, "[=") {
				t.Errorf("help shows a flag with an optional value:\n%s", out)
			}
			if !regexp.MustCompile(tt.want).MatchString(out) {
				t.Errorf("help has no line matching %q:\n%s", tt.want, out)
			}
		})
	}
}

// up --help names the state directory in effect.
func TestUpHelpRunDir(t *testing.T) {
	for _, tt := range []struct{ env, want string }{
		{"", "/run/tapbridge/uplink/BRIDGE.json"},
		{"/var/tmp/tb-state", "/var/tmp/tb-state/uplink/BRIDGE.json"},
	} {
		t.Setenv("TAPBRIDGE_RUN_DIR", tt.env)
		out, err := runCLI(t, "up", "--help")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, tt.want) {
			t.Errorf("TAPBRIDGE_RUN_DIR=%q: up --help does not name %s:\n%s", tt.env, tt.want, out)
		}
	}
}

// tap add takes --uplink and --uplink-vlans; bad values are refused, by
// the key's name, before anything is touched; tap del refuses them.
func TestTapUplinkVLANs(t *testing.T) {
	tests := []struct {
		args      []string
		wantErr   string
		wantUsage bool
	}{
		{[]string{"tap", "add", "vm1-0", "--uplink-vlans", "10,20"}, `config: "uplinkVlans": needs "uplink"`, false},
		{[]string{"tap", "add", "vm1-0", "--uplink", "eth0", "--uplink-vlans", "10,5000"}, `config: "uplinkVlans": must be between 1 and 4094, got 5000`, false},
		{[]string{"tap", "add", "vm1-0", "--uplink-vlans", "10,x"}, `invalid argument "10,x" for "--uplink-vlans"`, true},
		{[]string{"tap", "del", "vm1-0", "--uplink-vlans", "10"}, `--uplink-vlans is for 'tap add'`, true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := runCLI(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if got := errors.Is(err, ErrUsage); got != tt.wantUsage {
				t.Errorf("usage error (exit status 2): %v, want %v", got, tt.wantUsage)
			}
		})
	}
}

func TestPlural(t *testing.T) {
	got := []string{plural(0, "vanished port"), plural(1, "vanished port"), plural(2, "vanished port")}
	want := []string{"0 vanished ports", "1 vanished port", "2 vanished ports"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// The man page is made from the same flags as --help: every flag a
// command's --help lists is in it, and man renders it without a warning.
func TestManPage(t *testing.T) {
	page, err := runCLI(t, "man", "tapbridge")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	flagRE := regexp.MustCompile(`(?m)^ +(?:-\w, )?(--[a-z-]+)`)
	for _, c := range visible() {
		help, err := runCLI(t, c.name, "--help")
		if err != nil {
			t.Fatal(err)
		}
		if c.help != "" && !strings.Contains(page, `.SS "tapbridge `+roffEscape(c.name)) {
			t.Errorf("the man page has no section for %q", c.name)
		}
		for _, m := range flagRE.FindAllStringSubmatch(help, -1) {
			checked++
			if !strings.Contains(page, roffEscape(m[1])) {
				t.Errorf("tapbridge %s --help lists %s, the man page does not", c.name, m[1])
			}
		}
	}
	if checked < 20 {
		t.Errorf("only %d flags found in the --help texts", checked)
	}
	if strings.Contains(page, ".SS \"tapbridge man") {
		t.Error("the man page lists the hidden man command")
	}
	if _, err := exec.LookPath("groff"); err != nil {
		t.Skip("groff not installed: pages not rendered")
	}
	for _, name := range manPages {
		page, err := runCLI(t, "man", name)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("groff", "-man", "-ww", "-z")
		cmd.Stdin = strings.NewReader(page)
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("groff on the %s page: %v\n%s", name, err, out)
		}
	}
}

// What a bash user sees when pressing TAB.
func TestBashCompletion(t *testing.T) {
	script, err := runCLI(t, "completion", "bash")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	tests := []struct {
		line string // the words typed, the last one being completed
		want string
	}{
		{"tapbridge s", "status"},
		{"tapbridge up --no", "--no-probe"},
		{"tapbridge tap a", "add"},
		{"tapbridge tap add vm1-0 --uplink-v", "--uplink-vlans"},
		{"tapbridge completion f", "fish"},
		{"tapbridge status --j", "--json"},
		{"tapbridge m", "mac"}, // not the hidden man
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			words := strings.Fields(tt.line)
			prog := script + `
COMP_WORDS=(` + strings.Join(words, " ") + `)
COMP_CWORD=` + string(rune('0'+len(words)-1)) + `
_tapbridge
echo "${COMPREPLY[*]}"
`
			out, err := exec.Command("bash", "--norc", "-c", prog).CombinedOutput()
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, out)
			}
			if got := strings.TrimSpace(string(out)); got != tt.want {
				t.Errorf("completions %q, want %q", got, tt.want)
			}
		})
	}
}

// zsh and fish get the same commands and flags (the shells themselves are
// not installed on the test machines).
func TestZshFishCompletion(t *testing.T) {
	tests := []struct {
		shell string
		want  []string
	}{
		{"zsh", []string{"#compdef tapbridge", `'--no-probe[do not probe the default gateway (no rollback on an unreachable gateway)]' \`, `'2:tap:(add del)' \`}},
		{"fish", []string{"complete -c tapbridge -n __fish_use_subcommand -a gc -d 'remove the port policies of VM ports that no longer exist'", "complete -c tapbridge -n '__fish_seen_subcommand_from up' -l no-probe -d "}},
	}
	for _, tt := range tests {
		out, err := runCLI(t, "completion", tt.shell)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s completion lacks %q", tt.shell, w)
			}
		}
	}
}

// status --json starts with its schema version (docs/json.md).
func TestStatusJSONSchemaVersion(t *testing.T) {
	nstest.Run(t, func() {
		out, err := runCLI(t, "status", "--bridge", "br-none", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		want := map[string]any{
			"schemaVersion": float64(1), "bridge": "br-none", "exists": false, "up": false,
			"addresses": []any{}, "ports": []any{}, "consistent": true,
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("status --json (-want +got):\n%s", diff)
		}
		if !strings.HasPrefix(out, "{\n  \"schemaVersion\": 1,") {
			t.Errorf("schemaVersion is not the first field:\n%s", out)
		}
	})
}
