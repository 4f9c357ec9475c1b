package libvirt

import (
	"testing"

	"github.com/tapbridge/tapbridge/internal/config"
)

// FuzzParse: no domain XML makes Parse, For or Apply panic, and metadata
// Parse accepts yields settings that either apply or fail with an error.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"prepare.xml", "start.xml", "status.xml"} {
		f.Add(read(f, name))
	}
	f.Add(domainXML(`<tapbridge:port ` + ns + ` mac-spoof-check="yes" ips="192.0.2.50" vlan="7"><tapbridge:interface mac="52:54:00:00:00:02" isolated="no"/></tapbridge:port>`))
	f.Add(domainXML(`<tapbridge:port ` + ns + ` isolate="yes"/>`))
	f.Add([]byte(`<domstatus><domain><name>x</name></domain></domstatus>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err != nil {
			return
		}
		for _, i := range d.Interfaces {
			s, err := d.For(i)
			if err != nil {
				if d.PortErr == nil {
					t.Fatalf("For failed without PortErr: %v", err)
				}
				continue
			}
			c := &config.Conf{}
			_ = s.Apply(c, i.MAC)
		}
	})
}
