package uplink

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/tapbridge/tapbridge/internal/bridge"
	"github.com/tapbridge/tapbridge/internal/failpoint"
	"github.com/tapbridge/tapbridge/internal/ifname"
	"github.com/tapbridge/tapbridge/internal/link"
	"github.com/tapbridge/tapbridge/internal/state"
)

// DefaultProbeTimeout is how long Up waits for the default gateway to answer
// on the bridge before it rolls back.
const DefaultProbeTimeout = 5 * time.Second

// Options say which uplink goes into which bridge.
type Options struct {
	Bridge string
	Uplink string
	// MTU of the bridge, if it is created; 0 means the uplink's MTU. It may
	// not exceed the uplink's MTU.
	MTU int
	// ProbeTimeout bounds the gateway probe; 0 means DefaultProbeTimeout.
	ProbeTimeout time.Duration
	NoProbe      bool
	// Force lets Down go ahead while VM ports remain on the bridge.
	Force bool
	// Log, when set, receives one line per step taken.
	Log func(format string, args ...any)
}

func (o Options) logf(format string, args ...any) {
	if o.Log != nil {
		o.Log(format, args...)
	}
}

// ErrNotBridgeable matches every refusal to enslave an uplink.
var ErrNotBridgeable = errors.New("cannot be bridged")

// ErrNoUplink matches an uplink that does not exist.
var ErrNoUplink = errors.New("no such uplink")

// missingError is the lookup error of a missing uplink, also matching
// ErrNoUplink.
type missingError struct{ err error }

func (e missingError) Error() string   { return "uplink: " + e.err.Error() }
func (e missingError) Unwrap() []error { return []error{e.err, ErrNoUplink} }

// Result says what Up or Down did.
type Result struct {
	Changed bool
	// Started is true only when this run took the snapshot and started the
	// migration: only such a run may undo it (a run that resumed one must
	// not tear down a bridge VMs may be using).
	Started bool
	// SetAside, when not empty, is the one line that reports a journal
	// that did not describe the live host and was set aside.
	SetAside string
	// Message is one line for the user: what happened, or why nothing did.
	Message string
}

// Up puts o.Uplink into o.Bridge with its addresses, routes and rules. It is
// idempotent and, after a crash at any step, finishes the job from the
// journal.
func Up(o Options) (Result, error) {
	if err := o.validate(); err != nil {
		return Result{}, err
	}
	if o.Bridge == o.Uplink {
		return Result{}, fmt.Errorf("uplink %q: cannot be its own bridge", o.Uplink)
	}
	lk, err := state.LockBridge(o.Bridge)
	if err != nil {
		return Result{}, err
	}
	defer lk.Unlock()
	return upLocked(o)
}

// validate checks the bridge and uplink names before anything is touched.
func (o Options) validate() error {
	if err := ifname.Validate("bridge", o.Bridge); err != nil {
		return err
	}
	return ifname.Validate("uplink", o.Uplink)
}

// UpLocked is Up for a caller that already holds the bridge lock (the CNI
// plugin and qemu-ifup, which go on to attach a port under the same lock).
func UpLocked(o Options) (Result, error) {
	if err := o.validate(); err != nil {
		return Result{}, err
	}
	return upLocked(o)
}

func upLocked(o Options) (Result, error) {
	ulk, err := state.LockUplink(o.Uplink)
	if err != nil {
		return Result{}, err
	}
	defer ulk.Unlock()
	var aside string
	j, err := readJournal(o.Bridge)
	if err == nil {
		if j, aside, err = trusted(o, j); err != nil {
			return Result{}, err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Result{}, err
	}
	fresh := j == nil
	if j != nil {
		if j.Uplink != o.Uplink {
			return Result{}, fmt.Errorf("bridge %q already holds uplink %q; run 'tapbridge down --bridge %s' first", o.Bridge, j.Uplink, o.Bridge)
		}
		if j.Phase == phaseUp {
			if problems := j.liveProblems(); len(problems) == 0 {
				// A DHCP client (re)started on the uplink since is still
				// handed over: a re-run of up fixes it.
				return handOver(o, Result{SetAside: aside, Message: fmt.Sprintf("bridge %q already holds uplink %q; nothing changed", o.Bridge, o.Uplink)})
			} else if j.uplinkInBridge() {
				// The migration is complete; what differs is the admin's
				// business since (an address added or removed on the
				// bridge). Replaying the snapshot would undo it.
				return handOver(o, Result{SetAside: aside, Message: fmt.Sprintf("bridge %q already holds uplink %q; nothing changed (differs from the snapshot: %s)", o.Bridge, o.Uplink, strings.Join(problems, "; "))})
			}
		}
		o.logf("resuming from journal %s (phase %s)", journalPath(o.Bridge), j.Phase)
	} else if j, err = preflight(o); err != nil {
		if aside != "" {
			err = fmt.Errorf("%w (%s)", err, aside)
		}
		return Result{}, err
	}
	j.Phase = phaseMigrating
	if err := j.save(); err != nil {
		return Result{}, err
	}
	failpoint.Hit("up:journal")
	// Only a run that started the migration undoes it on failure. A run
	// that resumes one (after a crash, or a front end finding the uplink
	// out of its bridge) must not tear down a bridge VMs may be using
	// because, say, the gateway is briefly away: it reports and keeps the
	// journal.
	fail := func(err error) error {
		if fresh {
			return j.rollback(o, err)
		}
		return fmt.Errorf("%w; nothing rolled back: the journal %s is kept (fix the cause and re-run 'tapbridge up', or restore with 'tapbridge down --bridge %s')", err, journalPath(o.Bridge), o.Bridge)
	}
	if err := j.migrate(o); err != nil {
		return Result{}, fail(err)
	}
	if !o.NoProbe {
		if err := j.probe(o); err != nil {
			return Result{}, fail(err)
		}
	}
	j.Phase = phaseUp
	if err := j.save(); err != nil {
		return Result{}, err
	}
	return handOver(o, Result{Changed: true, Started: fresh, SetAside: aside, Message: fmt.Sprintf("bridge %q now holds uplink %q with %d addresses, %d routes and %d rules", o.Bridge, o.Uplink, len(j.Addrs), len(j.Routes), len(j.Rules))})
}

// trusted returns j when it describes the live host and its snapshot still
// matches what is live; else it sets j aside and returns nil and the line
// that reports it.
func trusted(o Options, j *Journal) (*Journal, string, error) {
	why, err := j.identity()
	if err != nil {
		return nil, "", err
	}
	if why == "" && !(j.Phase == phaseUp && j.uplinkInBridge()) {
		// A snapshot about to be replayed must match the live state.
		if why, err = j.snapshotMatches(); err != nil {
			return nil, "", err
		}
		if why != "" {
			why = "its snapshot no longer matches the live state: " + why
		}
	}
	if why == "" {
		return j, "", nil
	}
	aside, err := j.setAside(o, why)
	return nil, aside, err
}

// uplinkInBridge reports whether the uplink is a port of the bridge now.
func (j *Journal) uplinkInBridge() bool {
	up, err1 := link.Get(j.Uplink)
	br, err2 := bridge.Get(j.Bridge)
	return err1 == nil && err2 == nil && up.Attrs().MasterIndex == br.Attrs().Index
}

// rollback restores the snapshot after a failed Up and returns the error
// that caused it, with what the rollback did.
func (j *Journal) rollback(o Options, cause error) error {
	o.logf("rolling back: %v", cause)
	if _, err := j.restoreLive(o); err != nil {
		return fmt.Errorf("%w; rollback failed too: %v (journal kept in %s; re-run 'tapbridge down --bridge %s')", cause, err, journalPath(j.Bridge), j.Bridge)
	}
	return fmt.Errorf("%w; rolled back, %q holds its addresses again", cause, j.Uplink)
}

// Down restores the uplink of bridge from the journal. It is idempotent.
func Down(o Options) (Result, error) {
	if err := ifname.Validate("bridge", o.Bridge); err != nil {
		return Result{}, err
	}
	lk, err := state.LockBridge(o.Bridge)
	if err != nil {
		return Result{}, err
	}
	defer lk.Unlock()
	return DownLocked(o)
}

// DownLocked is Down for a caller that already holds the bridge lock (a
// front end undoing the migration its own failed attach started).
//
// It acts only on a journal that describes the live host; one that does
// not is set aside and Down refuses, naming the difference. It refuses
// while VM ports remain on the bridge, unless o.Force.
func DownLocked(o Options) (Result, error) {
	j, err := readJournal(o.Bridge)
	if errors.Is(err, fs.ErrNotExist) {
		return Result{Message: fmt.Sprintf("bridge %q holds no uplink put there by tapbridge; nothing changed", o.Bridge)}, nil
	}
	if err != nil {
		return Result{}, err
	}
	o.Uplink = j.Uplink
	why, err := j.identity()
	if err != nil {
		return Result{}, err
	}
	if why == "" && j.Phase == phaseUp {
		if _, err := bridge.Get(j.Bridge); errors.Is(err, link.ErrNotFound) {
			why = fmt.Sprintf("bridge %q no longer exists: the migration was undone without tapbridge", j.Bridge)
		}
	}
	if why != "" && j.otherLiveNetNS() {
		// With /run shared, it may be the journal of a namespace that is
		// alive and will want it for its own down: refuse, keep it.
		return Result{}, fmt.Errorf("the journal %s does not describe this host: %s; nothing changed (it is left for that namespace)", journalPath(j.Bridge), why)
	}
	if why != "" {
		aside, err := j.setAside(o, why)
		if err != nil {
			return Result{}, err
		}
		return Result{SetAside: aside}, fmt.Errorf("%s; nothing changed", aside)
	}
	if !o.Force {
		if br, err := bridge.Get(j.Bridge); err == nil {
			ports, err := bridge.Ports(br)
			if err != nil {
				return Result{}, err
			}
			var vms []string
			for _, p := range ports {
				if p.Attrs().Name != j.Uplink {
					vms = append(vms, p.Attrs().Name)
				}
			}
			if len(vms) > 0 {
				return Result{}, fmt.Errorf("bridge %q still has %d VM ports (%s): they would lose the LAN; stop or detach them first, or run 'tapbridge down --force'", j.Bridge, len(vms), strings.Join(vms, ", "))
			}
		}
	}
	msg, err := j.restoreLive(o)
	if err != nil {
		return Result{}, err
	}
	return Result{Changed: true, Message: msg}, nil
}

// sysfs is where the Wi-Fi check looks; tests point it elsewhere.
var sysfs = "/sys/class/net"

// Ensure is the front ends' fast path: when the journal says the migration
// is complete and the uplink is still a port of the bridge, it returns at
// once (two reads, no dumps, nothing replayed); otherwise it runs
// UpLocked, which acts on the journal only when it describes the live host
// and its snapshot matches what is live, and else sets it aside and starts
// afresh from what is live now. Only when Result.Started did this call
// start the migration. The caller holds the bridge lock.
func Ensure(o Options) (Result, error) {
	if j, err := readJournal(o.Bridge); err == nil && j.Phase == phaseUp && j.Uplink == o.Uplink {
		up, err1 := link.Get(o.Uplink)
		br, err2 := bridge.Get(o.Bridge)
		if err1 == nil && err2 == nil && up.Attrs().MasterIndex == br.Attrs().Index {
			return Result{}, nil
		}
	}
	return UpLocked(o)
}
