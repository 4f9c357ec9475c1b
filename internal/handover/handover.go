package handover

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Options say what moves where.
type Options struct {
	From, To string
	// Timeout bounds the wait for a router advertisement on To.
	Timeout time.Duration
	// Back says To is the uplink getting back what it had: its own IPv6
	// settings never changed, so From's are not copied onto it.
	Back bool
	// Log, when set, receives one line per step taken.
	Log func(format string, args ...any)
}

// Run hands the host's DHCP clients and IPv6 autoconfiguration over from
// o.From to o.To. It returns one line saying what moved ("" when nothing
// did) and an error naming what could not be moved; it goes on after a
// failure, so one client that cannot be moved does not strand the others.
func Run(o Options) (string, error) {
	logf := func(format string, args ...any) {
		if o.Log != nil {
			o.Log(format, args...)
		}
	}
	var done []string
	var errs []error
	clients, other, err := find(o.From)
	if err != nil {
		errs = append(errs, err)
	}
	for _, c := range other {
		done = append(done, fmt.Sprintf("warning: %s serves %q and is not moved (tapbridge moves dhclient and udhcpc): configure it for %q, see docs/dhcp.md", c, o.From, o.To))
	}
	for _, c := range clients {
		pid, err := Move(c, o.To)
		if err != nil {
			errs = append(errs, fmt.Errorf("handing the DHCP lease over to %q: %w", o.To, err))
			continue
		}
		logf("%s (pid %d) now serves %s as pid %d", c.Name, c.PID, o.To, pid)
		line := fmt.Sprintf("%s now renews the lease on %q (pid %d)", c.Name, o.To, pid)
		if c.Name == "udhcpc" {
			// udhcpc runs its script with "deconfig" when it starts.
			line += fmt.Sprintf(" (if its script flushes the interface on deconfig, %q was without its address until udhcpc bound again)", o.To)
		}
		done = append(done, line)
	}
	msg, err := moveRA(o.From, o.To, o.Timeout, !o.Back)
	if err != nil {
		errs = append(errs, err)
	} else if msg != "" {
		logf("%s", msg)
		done = append(done, msg)
	}
	return strings.Join(done, "; "), errors.Join(errs...)
}
