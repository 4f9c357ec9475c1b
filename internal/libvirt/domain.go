package libvirt

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/mac"
)

// Namespace is the XML namespace of tapbridge's domain metadata.
const Namespace = "https://tapbridge.dev/libvirt/1"

// Domain is what tapbridge reads of a libvirt domain XML.
type Domain struct {
	Name       string
	UUID       string
	Interfaces []Interface
	// Port is the tapbridge metadata, nil when the domain has none.
	Port *Port
	// PortErr is why the metadata is invalid. It is kept apart so that a
	// broken domain stops only its own interfaces, not every lookup.
	PortErr error
}

// Interface is one <interface> of a domain.
type Interface struct {
	Type   string           // "ethernet", "bridge", "network", ...
	MAC    net.HardwareAddr // nil when the XML has none
	Target string           // <target dev=...>; "" until libvirt has named the TAP
	Bridge string           // <source bridge=...> (type='bridge')
	Script string           // <script path=...> (type='ethernet')
}

// Port is the <tapbridge:port> element: settings for every interface of
// the domain, and per-interface overrides.
type Port struct {
	Settings
	Interfaces []Settings // each with MAC set
}

// Settings are the per-VM keys of the metadata. A nil pointer or an empty
// value is a key that is not given.
type Settings struct {
	MAC           net.HardwareAddr // <tapbridge:interface mac=...>: which interface
	Bridge        string
	MACSpoofCheck *bool
	IPSpoofCheck  *bool
	IPs           []string
	DHCPGuard     *bool
	RAGuard       *bool
	Isolated      *bool
	VLAN          int
	BPDUGuard     *bool
}

// Attributes returns the attribute names <tapbridge:port> knows, sorted.
func Attributes() []string {
	return []string{"bpdu-guard", "bridge", "dhcp-guard", "ip-spoof-check", "ips", "isolated", "mac-spoof-check", "ra-guard", "vlan"}
}

// The XML as encoding/xml sees it.
type xmlDomain struct {
	XMLName    xml.Name
	Name       string         `xml:"name"`
	UUID       string         `xml:"uuid"`
	Metadata   xmlAny         `xml:"metadata"`
	Interfaces []xmlInterface `xml:"devices>interface"`
	Domain     *xmlDomain     `xml:"domain"` // inside <domstatus>
}

type xmlInterface struct {
	Type string `xml:"type,attr"`
	MAC  struct {
		Address string `xml:"address,attr"`
	} `xml:"mac"`
	Source struct {
		Bridge string `xml:"bridge,attr"`
	} `xml:"source"`
	Target struct {
		Dev string `xml:"dev,attr"`
	} `xml:"target"`
	Script struct {
		Path string `xml:"path,attr"`
	} `xml:"script"`
}

type xmlAny struct {
	XMLName  xml.Name
	Attrs    []xml.Attr `xml:",any,attr"`
	Children []xmlAny   `xml:",any"`
	Text     string     `xml:",chardata"`
}

// ErrNotDomain matches XML that is neither a <domain> nor libvirt's
// <domstatus>.
var ErrNotDomain = errors.New("not a libvirt domain")

// Parse reads a domain XML: a <domain> (what `virsh dumpxml` prints and
// what libvirt passes to its hooks) or a <domstatus> (libvirt's status
// files). Invalid tapbridge metadata is reported in PortErr, not as an
// error.
func Parse(data []byte) (*Domain, error) {
	var x xmlDomain
	if err := xml.NewDecoder(bytes.NewReader(data)).Decode(&x); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotDomain, err)
	}
	switch {
	case x.XMLName.Local == "domstatus" && x.Domain != nil:
		x = *x.Domain
	case x.XMLName.Local != "domain":
		return nil, fmt.Errorf("%w: root element is <%s>", ErrNotDomain, x.XMLName.Local)
	}
	d := &Domain{Name: x.Name, UUID: x.UUID}
	for _, xi := range x.Interfaces {
		i := Interface{Type: xi.Type, Target: xi.Target.Dev, Bridge: xi.Source.Bridge, Script: xi.Script.Path}
		if xi.MAC.Address != "" {
			m, err := mac.Parse(xi.MAC.Address)
			if err != nil {
				return nil, fmt.Errorf("domain %q: interface MAC %q: %w", d.Name, xi.MAC.Address, err)
			}
			i.MAC = m
		}
		d.Interfaces = append(d.Interfaces, i)
	}
	d.Port, d.PortErr = parseMetadata(x.Metadata.Children, d.Interfaces)
	if d.PortErr != nil {
		d.PortErr = fmt.Errorf("domain %q: <metadata> in %s: %w", d.Name, Namespace, d.PortErr)
	}
	return d, nil
}

// parseMetadata finds tapbridge's element among the metadata's and parses
// it strictly.
func parseMetadata(elems []xmlAny, ifaces []Interface) (*Port, error) {
	var p *Port
	for _, e := range elems {
		if e.XMLName.Space != Namespace {
			continue // another application's
		}
		if e.XMLName.Local != "port" {
			return nil, fmt.Errorf("<%s>: unknown element; did you mean <port>?", e.XMLName.Local)
		}
		if p != nil {
			return nil, errors.New("<port> given twice (libvirt keeps one element per namespace)")
		}
		s, err := parseSettings("port", e.Attrs, false)
		if err != nil {
			return nil, err
		}
		p = &Port{Settings: s}
		for _, c := range e.Children {
			if c.XMLName.Local != "interface" || c.XMLName.Space != Namespace {
				return nil, fmt.Errorf("<port><%s>: unknown element; did you mean <interface>?", c.XMLName.Local)
			}
			cs, err := parseSettings("interface", c.Attrs, true)
			if err != nil {
				return nil, err
			}
			if !hasMAC(ifaces, cs.MAC) {
				return nil, fmt.Errorf("<interface mac=%q>: the domain has no interface with this MAC", cs.MAC)
			}
			for _, o := range p.Interfaces {
				if bytes.Equal(o.MAC, cs.MAC) {
					return nil, fmt.Errorf("<interface mac=%q> given twice", cs.MAC)
				}
			}
			p.Interfaces = append(p.Interfaces, cs)
		}
	}
	return p, nil
}

func hasMAC(ifaces []Interface, m net.HardwareAddr) bool {
	for _, i := range ifaces {
		if bytes.Equal(i.MAC, m) {
			return true
		}
	}
	return false
}

// parseSettings parses the attributes of <port> or (withMAC) <interface>.
func parseSettings(elem string, attrs []xml.Attr, withMAC bool) (Settings, error) {
	var s Settings
	known := Attributes()
	if withMAC {
		known = append([]string{"mac"}, known...)
	}
	seen := map[string]bool{}
	for _, a := range attrs {
		if a.Name.Space == "xmlns" || a.Name.Local == "xmlns" && a.Name.Space == "" {
			continue // a namespace declaration
		}
		name := a.Name.Local
		if a.Name.Space != "" && a.Name.Space != Namespace {
			return s, fmt.Errorf("<%s %s:%s>: attribute of another namespace", elem, a.Name.Space, name)
		}
		if seen[name] {
			return s, fmt.Errorf("<%s %s>: given twice", elem, name)
		}
		seen[name] = true
		v := strings.TrimSpace(a.Value)
		bad := func(format string, args ...any) error {
			return fmt.Errorf("<%s %s=%q>: %s", elem, name, a.Value, fmt.Sprintf(format, args...))
		}
		var err error
		switch name {
		case "mac":
			if !withMAC {
				return s, fmt.Errorf("<%s mac>: not an attribute of <port>; the guest MAC is the interface's <mac address>, and <interface mac=...> inside <port> selects one interface", elem)
			}
			if s.MAC, err = mac.Parse(v); err != nil {
				return s, bad("%v", err)
			}
			continue
		case "bridge":
			s.Bridge = v
			continue
		case "ips":
			if _, err := config.ParseIPs("ips", []string{v}); err != nil {
				return s, bad("not a comma-separated list of IP addresses")
			}
			s.IPs = []string{v}
			continue
		case "vlan":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 4094 {
				return s, bad("must be a number between 1 and 4094")
			}
			s.VLAN = n
			continue
		case "mac-spoof-check":
			s.MACSpoofCheck, err = yesNo(v)
		case "ip-spoof-check":
			s.IPSpoofCheck, err = yesNo(v)
		case "dhcp-guard":
			s.DHCPGuard, err = yesNo(v)
		case "ra-guard":
			s.RAGuard, err = yesNo(v)
		case "isolated":
			s.Isolated, err = yesNo(v)
		case "bpdu-guard":
			s.BPDUGuard, err = yesNo(v)
		default:
			return s, fmt.Errorf("<%s %s>: unknown attribute; did you mean %q?", elem, name, config.Nearest(name, known))
		}
		if err != nil {
			return s, bad("%v", err)
		}
	}
	if withMAC && s.MAC == nil {
		return s, fmt.Errorf("<%s>: needs mac, the MAC of the interface it is for", elem)
	}
	return s, nil
}

// yesNo parses libvirt's booleans: yes/no (also on/off, true/false, 1/0).
func yesNo(v string) (*bool, error) {
	var b bool
	switch strings.ToLower(v) {
	case "yes", "on", "true", "1":
		b = true
	case "no", "off", "false", "0":
	default:
		return nil, errors.New(`must be "yes" or "no"`)
	}
	return &b, nil
}

// For returns the settings of interface i: the <port>'s, overridden by the
// <interface> child with i's MAC. It returns PortErr when the metadata is
// invalid; without metadata, no settings.
func (d *Domain) For(i Interface) (Settings, error) {
	if d.PortErr != nil {
		return Settings{}, d.PortErr
	}
	if d.Port == nil {
		return Settings{}, nil
	}
	s := d.Port.Settings
	for _, o := range d.Port.Interfaces {
		if !bytes.Equal(o.MAC, i.MAC) {
			continue
		}
		if o.Bridge != "" {
			s.Bridge = o.Bridge
		}
		for _, p := range []struct{ dst, src **bool }{
			{&s.MACSpoofCheck, &o.MACSpoofCheck}, {&s.IPSpoofCheck, &o.IPSpoofCheck},
			{&s.DHCPGuard, &o.DHCPGuard}, {&s.RAGuard, &o.RAGuard},
			{&s.Isolated, &o.Isolated}, {&s.BPDUGuard, &o.BPDUGuard},
		} {
			if *p.src != nil {
				*p.dst = *p.src
			}
		}
		if len(o.IPs) > 0 {
			s.IPs = o.IPs
		}
		if o.VLAN != 0 {
			s.VLAN = o.VLAN
		}
	}
	s.MAC = nil
	return s, nil
}

// Apply sets the configuration keys s gives, and the guest MAC, then
// validates c.
func (s Settings) Apply(c *config.Conf, guestMAC net.HardwareAddr) error {
	if guestMAC != nil {
		c.MAC = guestMAC.String()
	}
	if s.Bridge != "" {
		c.Bridge = s.Bridge
	}
	set := func(dst *bool, src *bool) {
		if src != nil {
			*dst = *src
		}
	}
	set(&c.MACSpoofCheck, s.MACSpoofCheck)
	set(&c.IPSpoofCheck, s.IPSpoofCheck)
	set(&c.Isolated, s.Isolated)
	for _, p := range []struct {
		dst **bool
		src *bool
	}{{&c.DHCPGuard, s.DHCPGuard}, {&c.RAGuard, s.RAGuard}, {&c.BPDUGuard, s.BPDUGuard}} {
		if p.src != nil {
			b := *p.src
			*p.dst = &b
		}
	}
	if len(s.IPs) > 0 {
		c.IPs = s.IPs
	}
	if s.VLAN != 0 {
		c.VLAN = s.VLAN
	}
	return c.Validate()
}
