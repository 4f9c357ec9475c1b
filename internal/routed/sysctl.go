package routed

import (
	"errors"
	"io/fs"
	"slices"

	"github.com/containernetworking/plugins/pkg/netlinksafe"

	"github.com/tapbridge/tapbridge/internal/state"
	"github.com/tapbridge/tapbridge/internal/sysctl"
)

// held is one sysctl that routed ports hold: the value found before the
// first of them set it, the value they set, and who holds it.
type held struct {
	Orig  string   `json:"orig"`
	Set   string   `json:"set"`
	Link  string   `json:"link,omitempty"`  // the interface it belongs to, "" for a global one
	Index int      `json:"index,omitempty"` // that interface's ifindex when it was set
	Users []string `json:"users"`
}

// sysctls is the shared record of held sysctls, keyed by their path under
// /proc/sys (e.g. "net/ipv4/conf/eth0/forwarding").
type sysctls map[string]*held

func sysctlPath() string { return state.NetNSPath("routed", "sysctls.json") }

func loadSysctls() (sysctls, error) {
	s := sysctls{}
	err := state.ReadJSON(sysctlPath(), &s)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	return s, err
}

func (s sysctls) save() error {
	if len(s) == 0 {
		return state.Remove(sysctlPath())
	}
	return state.WriteJSON(sysctlPath(), s)
}

// linkIndex is the ifindex of link, 0 when it is gone or link is "".
func linkIndex(link string) int {
	if link == "" {
		return 0
	}
	l, err := netlinksafe.LinkByName(link)
	if err != nil {
		return 0
	}
	return l.Attrs().Index
}

// want is a sysctl a port needs: key (a path under /proc/sys) set to v.
// link is the interface it belongs to ("" for a global one); only, when
// not nil, says whether the value found is one to change: a sysctl it
// refuses is left alone and not held.
type want struct {
	key, link, v string
	only         func(cur string) bool
}

// acquire makes user a holder of each of ws, in order, and returns the
// keys it holds. The record is written once, before any value is.
func (s sysctls) acquire(user string, ws []want) ([]string, error) {
	var keys []string
	for _, w := range ws {
		h := s[w.key]
		if h != nil && h.Link != "" && h.Index != linkIndex(h.Link) {
			delete(s, w.key) // the interface was made anew: the record is stale
			h = nil
		}
		if h == nil {
			cur, err := sysctl.Read(w.key)
			if err != nil {
				return keys, err
			}
			if w.only != nil && !w.only(cur) {
				continue
			}
			h = &held{Orig: cur, Set: w.v, Link: w.link, Index: linkIndex(w.link)}
			s[w.key] = h
		}
		if !slices.Contains(h.Users, user) {
			h.Users = append(h.Users, user)
		}
		keys = append(keys, w.key)
	}
	if err := s.save(); err != nil {
		return keys, err
	}
	for _, k := range keys {
		if cur, err := sysctl.Read(k); err != nil || cur != s[k].Set {
			if err := sysctl.Write(k, s[k].Set); err != nil {
				return keys, err
			}
		}
	}
	return keys, nil
}

// release drops user as a holder of keys, in reverse order; the last
// holder of one puts back the value found before, unless the interface is
// gone or was made anew, or someone changed the value since. The record
// is written once, at the end; a value that cannot be put back stays in
// it, for a later release to try again.
func (s sysctls) release(user string, keys []string) error {
	var errs []error
	for i := len(keys) - 1; i >= 0; i-- {
		key := keys[i]
		h := s[key]
		if h == nil {
			continue
		}
		h.Users = slices.DeleteFunc(h.Users, func(u string) bool { return u == user })
		if len(h.Users) > 0 {
			continue
		}
		delete(s, key)
		if h.Orig != h.Set && (h.Link == "" || linkIndex(h.Link) == h.Index) {
			if cur, err := sysctl.Read(key); err == nil && cur == h.Set {
				err := sysctl.Write(key, h.Orig)
				if err != nil && h.Link != "" && errors.Is(err, fs.ErrNotExist) && linkIndex(h.Link) != h.Index {
					// The interface went away between the check and the
					// write (a DEL deletes the port while it releases):
					// nothing is left to put back.
					err = nil
				}
				if err != nil {
					h.Users = []string{user}
					s[key] = h
					errs = append(errs, err)
				}
			}
		}
	}
	if err := s.save(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
