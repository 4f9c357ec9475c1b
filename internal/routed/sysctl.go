package routed

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/containernetworking/plugins/pkg/netlinksafe"

	"github.com/tapbridge/tapbridge/internal/state"
)

// procSys is where sysctls are read and written: /proc/sys/net shows the
// network namespace of the thread that opens it.
const procSys = "/proc/sys/"

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

func sysctlPath() string { return state.Path("routed", "sysctls.json") }

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

func readSysctl(key string) (string, error) {
	b, err := os.ReadFile(procSys + key)
	if err != nil {
		return "", fmt.Errorf("reading sysctl %s: %w", strings.ReplaceAll(key, "/", "."), err)
	}
	return strings.TrimSpace(string(b)), nil
}

func writeSysctl(key, v string) error {
	if err := os.WriteFile(procSys+key, []byte(v), 0o644); err != nil {
		return fmt.Errorf("setting sysctl %s=%s: %w", strings.ReplaceAll(key, "/", "."), v, err)
	}
	return nil
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

// acquire makes user a holder of key with value v (of interface link, ""
// for a global sysctl), setting it when it differs. only, when not nil,
// says whether the value found is one to change: a sysctl it refuses is
// not held. The record is written before the value is.
func (s sysctls) acquire(user, key, link, v string, only func(cur string) bool) (bool, error) {
	h := s[key]
	if h != nil && h.Link != "" && h.Index != linkIndex(h.Link) {
		delete(s, key) // the interface was made anew: the record is stale
		h = nil
	}
	if h == nil {
		cur, err := readSysctl(key)
		if err != nil {
			return false, err
		}
		if only != nil && !only(cur) {
			return false, nil
		}
		h = &held{Orig: cur, Set: v, Link: link, Index: linkIndex(link)}
		s[key] = h
	}
	if !slices.Contains(h.Users, user) {
		h.Users = append(h.Users, user)
	}
	if err := s.save(); err != nil {
		return false, err
	}
	if cur, err := readSysctl(key); err != nil || cur != h.Set {
		if err := writeSysctl(key, h.Set); err != nil {
			return false, err
		}
	}
	return true, nil
}

// release drops user as a holder of key; the last holder puts back the
// value found before, unless the interface is gone or was made anew, or
// someone changed the value since.
func (s sysctls) release(user, key string) error {
	h := s[key]
	if h == nil {
		return nil
	}
	h.Users = slices.DeleteFunc(h.Users, func(u string) bool { return u == user })
	if len(h.Users) > 0 {
		return s.save()
	}
	delete(s, key)
	if h.Orig != h.Set && (h.Link == "" || linkIndex(h.Link) == h.Index) {
		if cur, err := readSysctl(key); err == nil && cur == h.Set {
			if err := writeSysctl(key, h.Orig); err != nil {
				s[key] = h // keep the record: a later release tries again
				return err
			}
		}
	}
	return s.save()
}
