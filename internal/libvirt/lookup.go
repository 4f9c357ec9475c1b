package libvirt

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tapbridge/tapbridge/internal/state"
)

// StatusDir is where libvirt's QEMU driver (qemu:///system) keeps the live
// XML of its running domains. libvirt writes a domain's file only after the
// "start" hook, so a domain's interface scripts run before it exists.
const StatusDir = "/run/libvirt/qemu"

// SavedDir is where Hook saves the XML of the domains it has seen
// prepared: the state directory's "libvirt".
func SavedDir() string { return state.Path("libvirt") }

// Dir is a directory of domain XML files (*.xml) to search.
type Dir struct {
	Path string
	// Live says the files describe running domains whose interfaces have
	// their TAPs' names: a TAP is found by its target dev only. Otherwise
	// an interface libvirt has not named yet is also found by MAC.
	Live bool
}

// Dirs are the directories Find searches on a host: libvirt's status
// files, then what the hook saved.
func Dirs() []Dir {
	return []Dir{{Path: StatusDir, Live: true}, {Path: SavedDir()}}
}

// ErrNotFound matches a TAP that no domain in the directories claims.
var ErrNotFound = errors.New("no libvirt domain has this TAP")

// Found is a domain and the interface whose TAP was looked up.
type Found struct {
	Domain    *Domain
	Interface Interface
	File      string // the file it was found in
}

// Find returns the domain interface behind the TAP name, whose MAC is
// tapMAC, from the first directory that has one. In a directory that is
// not Live, an interface without a target dev matches a TAP whose MAC is
// the interface's with any first byte (libvirt gives the TAP of an
// <interface type='ethernet'> the guest's MAC with 0xFE first). Two
// matches in one directory are an error: tapbridge does not guess whose
// MAC a port gets. Files that are not domain XML are skipped.
func Find(dirs []Dir, name string, tapMAC net.HardwareAddr) (*Found, error) {
	for _, d := range dirs {
		files, err := xmlFiles(d.Path)
		if err != nil {
			return nil, err
		}
		var found []*Found
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue // the domain went away meanwhile
				}
				return nil, fmt.Errorf("reading %s: %w", f, err)
			}
			dom, err := Parse(data)
			if err != nil {
				continue
			}
			for _, i := range dom.Interfaces {
				if match(i, d.Live, name, tapMAC) {
					found = append(found, &Found{Domain: dom, Interface: i, File: f})
				}
			}
		}
		switch len(found) {
		case 0:
			continue
		case 1:
			return found[0], nil
		default:
			var where []string
			for _, f := range found {
				where = append(where, fmt.Sprintf("domain %q (%s)", f.Domain.Name, f.File))
			}
			return nil, fmt.Errorf("TAP %q (MAC %s) matches more than one interface: %s; give each interface its own <target dev>", name, tapMAC, strings.Join(where, ", "))
		}
	}
	return nil, fmt.Errorf("TAP %q: %w", name, ErrNotFound)
}

func match(i Interface, live bool, name string, tapMAC net.HardwareAddr) bool {
	if i.Target != "" || live {
		return i.Target == name
	}
	return i.Type == "ethernet" && len(i.MAC) == 6 && len(tapMAC) == 6 && bytes.Equal(i.MAC[1:], tapMAC[1:])
}

// xmlFiles lists dir's *.xml files, sorted; none when dir does not exist.
func xmlFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".xml") && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}
