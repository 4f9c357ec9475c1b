package uplink

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path/filepath"

	"github.com/vishvananda/netlink"

	"github.com/tapbridge/tapbridge/internal/bridge"
	"github.com/tapbridge/tapbridge/internal/front"
	"github.com/tapbridge/tapbridge/internal/ifname"
	"github.com/tapbridge/tapbridge/internal/link"
	"github.com/tapbridge/tapbridge/internal/nldump"
)

// Status is what `tapbridge status` reports about one bridge.
type Status struct {
	Bridge  string   `json:"bridge"`
	Exists  bool     `json:"exists"`
	Up      bool     `json:"up"`
	MAC     string   `json:"mac,omitempty"`
	MTU     int      `json:"mtu,omitempty"`
	Addrs   []string `json:"addresses"`
	Uplink  string   `json:"uplink,omitempty"`
	Ports   []Port   `json:"ports"`
	Journal *struct {
		Path  string `json:"path"`
		Phase string `json:"phase"`
	} `json:"journal,omitempty"`
	// SetAside lists the journals of this bridge that were set aside
	// because they did not describe the live host (kept for inspection;
	// each says why in its "setAside" field).
	SetAside []string `json:"setAside,omitempty"`
	// Consistent is false when the journal and the live state disagree;
	// Problems says how.
	Consistent bool     `json:"consistent"`
	Problems   []string `json:"problems,omitempty"`
}

// Port is one port of the bridge.
type Port struct {
	Name string `json:"name"`
	Type string `json:"type"`
	MAC  string `json:"mac"`
	MTU  int    `json:"mtu"`
	Up   bool   `json:"up"`
}

// GetStatus reads the state of bridge br without changing anything.
func GetStatus(br string) (*Status, error) {
	if err := ifname.Validate("bridge", br); err != nil {
		return nil, err
	}
	s := &Status{Bridge: br, Addrs: []string{}, Ports: []Port{}, Consistent: true}
	s.SetAside, _ = filepath.Glob(journalPath(br) + ".stale-*")
	j, err := readJournal(br)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if j != nil {
		s.Uplink = j.Uplink
		s.Journal = &struct {
			Path  string `json:"path"`
			Phase string `json:"phase"`
		}{journalPath(br), j.Phase}
		why, err := j.identity()
		if err != nil {
			return nil, err
		}
		if why != "" {
			s.Problems = append(s.Problems, fmt.Sprintf("the journal does not describe this host: %s; the next 'tapbridge up' or attach sets it aside", why))
			j = nil // nothing below compares against it
		}
	}
	b, err := bridge.Get(br)
	switch {
	case errors.Is(err, link.ErrNotFound):
		if j != nil {
			s.Problems = append(s.Problems, fmt.Sprintf("journal says %q holds %q but the bridge does not exist", br, j.Uplink))
		}
	case err != nil:
		return nil, err
	default:
		a := b.Attrs()
		s.Exists, s.Up, s.MAC, s.MTU = true, a.Flags&net.FlagUp != 0, a.HardwareAddr.String(), a.MTU
		addrs, err := nldump.AddrList(b, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("listing addresses of %q: %w", br, err)
		}
		for _, ad := range addrs {
			s.Addrs = append(s.Addrs, ad.IPNet.String())
		}
		ports, err := bridge.Ports(b)
		if err != nil {
			return nil, err
		}
		for _, p := range ports {
			pa := p.Attrs()
			s.Ports = append(s.Ports, Port{pa.Name, p.Type(), pa.HardwareAddr.String(), pa.MTU, pa.Flags&net.FlagUp != 0})
			if msg := front.Problem(p); msg != "" {
				s.Problems = append(s.Problems, msg)
			}
		}
		if j != nil {
			if j.Phase != phaseUp {
				s.Problems = append(s.Problems, fmt.Sprintf("an earlier run stopped while %s; re-run 'tapbridge up' or 'tapbridge down'", j.Phase))
			} else {
				s.Problems = append(s.Problems, j.liveProblems()...)
			}
		}
	}
	s.Consistent = len(s.Problems) == 0
	return s, nil
}

// liveProblems compares the live state with a completed migration and lists what
// differs.
func (j *Journal) liveProblems() []string {
	var problems []string
	br, err := bridge.Get(j.Bridge)
	if err != nil {
		return []string{err.Error()}
	}
	up, err := link.Get(j.Uplink)
	if err != nil {
		return []string{fmt.Sprintf("uplink: %v", err)}
	}
	if up.Attrs().MasterIndex != br.Attrs().Index {
		problems = append(problems, fmt.Sprintf("%q is not a port of %q", j.Uplink, j.Bridge))
	}
	has := func(l netlink.Link) map[string]bool {
		m := map[string]bool{}
		addrs, _ := nldump.AddrList(l, netlink.FAMILY_ALL)
		for _, a := range addrs {
			m[a.IPNet.String()] = true
		}
		return m
	}
	onBr, onUp := has(br), has(up)
	for _, a := range j.Addrs {
		if !onBr[a.CIDR] {
			problems = append(problems, fmt.Sprintf("%s is missing from %q", a.CIDR, j.Bridge))
		}
		if onUp[a.CIDR] {
			problems = append(problems, fmt.Sprintf("%s is still on %q", a.CIDR, j.Uplink))
		}
	}
	for _, r := range j.Routes {
		n, err := r.netlink(br.Attrs().Index)
		if err != nil {
			continue
		}
		got, err := nldump.RouteListFiltered(r.Family, n, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST|netlink.RT_FILTER_PRIORITY)
		if err != nil || len(got) == 0 {
			problems = append(problems, fmt.Sprintf("route %s is not through %q", describe(r), j.Bridge))
		}
	}
	return problems
}
