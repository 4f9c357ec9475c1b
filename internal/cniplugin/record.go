package cniplugin

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/state"
)

// Prefixes of the host-side names the plugin derives. Hex digits never
// include 't' or 'p', so the three kinds never collide.
const (
	HostPortPrefix = "tb"  // host end of the veth (netns mode): "tb" + 11 hex
	HostTAPPrefix  = "tbt" // the TAP (host mode): "tbt" + 10 hex
	PeerPrefix     = "tbp" // veth peer inside the sandbox (netns mode): "tbp" + 10 hex
)

func digest(containerID, ifName string) string {
	sum := sha256.Sum256([]byte(containerID + "/" + ifName))
	return hex.EncodeToString(sum[:])
}

// HostPortName is the host end of the veth of an attachment in netns mode:
// "tb" and the first 11 hex digits of sha256(containerID + "/" + ifname).
func HostPortName(containerID, ifName string) string {
	return HostPortPrefix + digest(containerID, ifName)[:11]
}

// HostTAPName is the TAP of an attachment in host mode: "tbt" and the first
// 10 hex digits of sha256(containerID + "/" + ifname).
func HostTAPName(containerID, ifName string) string {
	return HostTAPPrefix + digest(containerID, ifName)[:10]
}

// PeerName is the veth peer inside the sandbox in netns mode.
func PeerName(containerID, ifName string) string {
	return PeerPrefix + digest(containerID, ifName)[:10]
}

// Group is the device group of the TAP and the veth peer of an attachment
// in netns mode, inside the sandbox: DEL deletes both, and with the peer
// the host veth, in one kernel operation (RTM_DELLINK of the group), which
// costs one unregistration instead of two. Derived from the container ID
// and ifname, between 2^30 and 2^31-1: never a group in common use (0 is
// the default), and positive where ip(8) prints it as a signed number.
func Group(containerID, ifName string) uint32 {
	sum := sha256.Sum256([]byte(containerID + "/" + ifName))
	return binary.BigEndian.Uint32(sum[:4])&(1<<30-1) | 1<<30
}

// recordVersion is the schema version of the records this plugin writes.
const recordVersion = 1

// record is what DEL and GC need to find an attachment's host-side state.
// It is written before the first link is made. It is acted on only when it
// describes the live host (Version, Host); else it is set aside.
type record struct {
	Version     int        `json:"version"`
	Host        state.Host `json:"host"`
	Network     string     `json:"network"`
	ContainerID string     `json:"containerID"`
	IfName      string     `json:"ifname"`
	Mode        string     `json:"mode"`
	Bridge      string     `json:"bridge"`
	HostPort    string     `json:"hostPort"`       // the bridge port: host veth or host TAP
	TAP         string     `json:"tap"`            // the TAP QEMU opens
	Peer        string     `json:"peer,omitempty"` // veth peer in the sandbox (netns mode)
	Netns       string     `json:"netns,omitempty"`
	// NetnsInode and NetnsCookie identify the sandbox, so that GC never
	// touches another namespace mounted later at the same path. The inode
	// alone does not: the kernel gives a new namespace the inode number of
	// one already freed (the 6.1 test guest showed it), while the cookie
	// (SO_NETNS_COOKIE, 5.14) is never reused; 0 where the kernel has none.
	NetnsInode  uint64 `json:"netnsInode,omitempty"`
	NetnsCookie uint64 `json:"netnsCookie,omitempty"`
	IPAM        string `json:"ipam,omitempty"`
	// IPAMConf and CNIPath are the network configuration and the plugin
	// path of an attachment with IPAM, so that its address can be released
	// when its sandbox vanishes without a DEL (CollectVanished).
	IPAMConf json.RawMessage `json:"ipamConf,omitempty"`
	CNIPath  string          `json:"cniPath,omitempty"`
}

// newRecord derives the names of an attachment.
func newRecord(c *config.Conf, containerID, ifName string) *record {
	host, _ := state.CurrentHost() // an empty Host is never trusted later
	r := &record{Version: recordVersion, Host: host, Network: c.Name, ContainerID: containerID, IfName: ifName, Mode: c.Mode, Bridge: c.Bridge, IPAM: c.IPAM.Type}
	if c.Mode == config.ModeHost {
		r.HostPort = HostTAPName(containerID, ifName)
		r.TAP = r.HostPort
	} else {
		r.HostPort = HostPortName(containerID, ifName)
		r.TAP = ifName
		r.Peer = PeerName(containerID, ifName)
	}
	return r
}

// ours says whether the record's names are the ones the plugin derives for
// its attachment: a record edited or corrupted by hand is never acted on.
func (r *record) ours() bool {
	d := newRecord(&config.Conf{Mode: r.Mode}, r.ContainerID, r.IfName)
	return r.HostPort == d.HostPort && r.TAP == d.TAP && r.Peer == d.Peer
}

func recordDir(network string) string { return state.Path("cni", network) }

// recordPath is the record of one attachment. Neither a container ID nor
// an interface name may contain ':', so the name is unambiguous.
func recordPath(network, containerID, ifName string) string {
	return state.Path("cni", network, containerID+":"+ifName)
}

func (r *record) path() string { return recordPath(r.Network, r.ContainerID, r.IfName) }

func (r *record) save() error { return state.WriteJSON(r.path(), r) }

// remove deletes the record. The network's directory stays: removing it
// could race with a concurrent ADD about to write into it.
func (r *record) remove() error { return state.Remove(r.path()) }

// readRecord returns the record of an attachment, or nil when there is none
// or when it does not describe the live host (written in another network
// namespace sharing the state directory, before a reboot, or by another
// schema): such a record is set aside (renamed NAME.stale-TIME, kept for
// inspection), never acted on.
func readRecord(network, containerID, ifName string) (*record, error) {
	r := &record{}
	path := recordPath(network, containerID, ifName)
	err := state.ReadJSON(path, r)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	live, err := state.CurrentHost()
	if err != nil {
		return nil, err
	}
	if r.Version != recordVersion || r.Host.Differs(live) != "" {
		if _, err := state.SetAside(path); err != nil {
			return nil, err
		}
		return nil, nil
	}
	return r, nil
}

// records lists the records of network, skipping files that are not
// records (temporary files of an interrupted write).
func records(network string) ([]*record, error) {
	entries, err := os.ReadDir(recordDir(network))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing attachments of network %q: %w", network, err)
	}
	var out []*record
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") || !strings.Contains(e.Name(), ":") || strings.Contains(e.Name(), ".stale-") {
			continue
		}
		cid, ifn, _ := strings.Cut(e.Name(), ":")
		r, err := readRecord(network, cid, ifn)
		if err != nil || r == nil {
			continue // a corrupt record is left for a human; it names nothing we would trust
		}
		if r.Network != network || r.ContainerID != cid || r.IfName != ifn || !r.ours() {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}
