package doctor

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Status is the outcome of one check.
type Status string

// Outcomes of a check. Only Fail makes the report fail.
const (
	OK   Status = "ok"
	Fail Status = "fail"
	Skip Status = "skip" // not applicable here, or could not be checked
)

// Check is one line of the report.
type Check struct {
	Name    string `json:"name"`
	Status  Status `json:"status"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// SchemaVersion is the version of Report's JSON (docs/json.md).
const SchemaVersion = 1

// Report is what doctor found.
type Report struct {
	SchemaVersion int      `json:"schemaVersion"`
	Bridge        string   `json:"bridge"`
	Uplink        string   `json:"uplink,omitempty"`
	Manager       *Manager `json:"manager,omitempty"`
	Checks        []Check  `json:"checks"`
}

// Failed reports whether any check failed.
func (r *Report) Failed() int {
	n := 0
	for _, c := range r.Checks {
		if c.Status == Fail {
			n++
		}
	}
	return n
}

// DefaultHelper is where 'make install' puts the bridge helper.
const DefaultHelper = "/usr/local/libexec/tapbridge/tapbridge-bridge-helper"

// Options say what to inspect.
type Options struct {
	// Root is prefixed to every file doctor reads; "" means "/".
	Root   string
	Bridge string
	// Uplink is the bridge's uplink; "" means the journal's, if any.
	Uplink string
	// Helper is the installed bridge helper (under Root); "" means
	// DefaultHelper.
	Helper string
	// QEMUGroup is the group of QEMU's users, for the helper's locks; ""
	// means "kvm".
	QEMUGroup string
}

func (o *Options) path(p string) string { return filepath.Join(o.Root, p) }

// Run runs every check and returns the report. It changes nothing.
func Run(o Options) *Report {
	if o.Root == "" {
		o.Root = "/"
	}
	if o.Helper == "" {
		o.Helper = DefaultHelper
	}
	if o.QEMUGroup == "" {
		o.QEMUGroup = "kvm"
	}
	if o.Uplink == "" {
		o.Uplink = journalUplink(o.Bridge)
	}
	r := &Report{SchemaVersion: SchemaVersion, Bridge: o.Bridge, Uplink: o.Uplink, Checks: []Check{}}
	add := func(cs ...Check) { r.Checks = append(r.Checks, cs...) }
	var mc Check
	r.Manager, mc = checkManager(o)
	add(mc)
	add(checkNetfilter(o))
	add(checkWireless(o))
	add(checkBridge(o)...)
	add(checkDevices(o)...)
	add(checkHelper(o)...)
	add(checkQEMUIfup(o))
	add(checkPolicies(o)...)
	add(checkState(o)...)
	return r
}

// Print writes the report for people: one line a check, then the network
// manager's configuration.
func (r *Report) Print(w io.Writer) {
	for _, c := range r.Checks {
		line := fmt.Sprintf("%-4s  %-12s %s", strings.ToUpper(string(c.Status)), c.Name, c.Message)
		if c.Fix != "" {
			line += "; fix: " + c.Fix
		}
		fmt.Fprintln(w, line)
	}
	if m := r.Manager; m != nil && m.Config != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimRight(m.Config, "\n"))
	}
}

// readTrim returns a file's content without surrounding space, "" when it
// cannot be read.
func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
