package cniplugin

import (
	"os"
	"path/filepath"
)

// Attachment is what an operator's view shows of a CNI attachment.
type Attachment struct {
	Network, ContainerID, IfName, Mode string
	TAP                                string // the TAP its QEMU opens
}

// Attachments returns the plugin's attachments of every network in this
// state directory, by the name of the host-side link that carries them
// (the host veth in netns mode, the TAP in host mode).
func Attachments() map[string]Attachment {
	out := map[string]Attachment{}
	dirs, _ := os.ReadDir(filepath.Dir(recordDir("x")))
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		recs, _ := records(d.Name())
		for _, r := range recs {
			out[r.HostPort] = Attachment{Network: r.Network, ContainerID: r.ContainerID, IfName: r.IfName, Mode: r.Mode, TAP: r.TAP}
		}
	}
	return out
}
