package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tapbridge/tapbridge/internal/ifname"
	"github.com/tapbridge/tapbridge/internal/mac"
)

// DefaultPath is the file the QEMU hooks read when TAPBRIDGE_CONF is unset.
const DefaultPath = "/etc/tapbridge/tapbridge.conf"

// DefaultBridge is the bridge used when the configuration names none.
const DefaultBridge = "br0"

// Attach modes of the CNI plugin.
const (
	ModeNetns = "netns" // QEMU runs inside CNI_NETNS
	ModeHost  = "host"  // QEMU runs in the host namespace
)

// Conf is a tapbridge network configuration.
type Conf struct {
	types.NetConf

	Bridge       string `json:"bridge,omitempty"`
	Uplink       string `json:"uplink,omitempty"`
	MTU          int    `json:"mtu,omitempty"`
	ProbeTimeout string `json:"probeTimeout,omitempty"`
	Mode         string `json:"mode,omitempty"`
	Owner        *ID    `json:"owner,omitempty"`
	Group        *ID    `json:"group,omitempty"`
	MultiQueue   bool   `json:"multiQueue,omitempty"`
	VnetHdr      bool   `json:"vnetHdr,omitempty"`
	MAC          string `json:"mac,omitempty"`
	ACL          string `json:"acl,omitempty"`

	// Port policy (tenant safety).
	MACSpoofCheck bool     `json:"macSpoofCheck,omitempty"`
	IPSpoofCheck  bool     `json:"ipSpoofCheck,omitempty"`
	IPs           []string `json:"ips,omitempty"`
	DHCPGuard     *bool    `json:"dhcpGuard,omitempty"`
	RAGuard       *bool    `json:"raGuard,omitempty"`
	Isolated      bool     `json:"isolated,omitempty"`
	VLAN          int      `json:"vlan,omitempty"`
	UplinkVLANs   []int    `json:"uplinkVlans,omitempty"`
	BPDUGuard     *bool    `json:"bpduGuard,omitempty"`

	RuntimeConfig struct {
		MAC string `json:"mac,omitempty"`
	} `json:"runtimeConfig,omitempty"`
}

// ID is a uid or gid given as a number or a name.
type ID struct {
	Value int
	Name  string // as written, for messages
}

// MaxID is the largest uid or gid: ids are 32-bit, and (uid_t)-1,
// 4294967295, means "no change" to the kernel.
const MaxID = 1<<32 - 2

// parseID parses a numeric uid or gid; ok is false when s is not a number.
// A number the kernel would truncate (4294967296 becomes uid 0 at
// TUNSETOWNER) is an error, never an id.
func parseID(s string) (id int, ok bool, err error) {
	if s == "" || strings.TrimLeft(s, "-0123456789") != "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > MaxID {
		return 0, true, fmt.Errorf("%s is not a valid id (0 to %d)", s, MaxID)
	}
	return int(n), true, nil
}

// UnmarshalJSON accepts 1000, "1000" or "nobody".
func (id *ID) UnmarshalJSON(b []byte) error {
	// A number is resolved by Validate, like a name, so that its error
	// names the field.
	var num json.Number
	if err := json.Unmarshal(b, &num); err == nil {
		id.Name, id.Value = num.String(), -1
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("must be a number or a name")
	}
	id.Name, id.Value = s, -1
	return nil
}

// MarshalJSON writes the ID as it was given.
func (id ID) MarshalJSON() ([]byte, error) {
	if n, err := strconv.Atoi(id.Name); err == nil {
		return json.Marshal(n)
	}
	return json.Marshal(id.Name)
}

// ParseUser resolves s (a uid or a user name) to a uid.
func ParseUser(s string) (int, error) {
	if n, ok, err := parseID(s); ok || err != nil {
		return n, err
	}
	if strings.ContainsAny(s, "0123456789.eE+-") && strings.Trim(s, "0123456789.eE+-") == "" {
		return 0, fmt.Errorf("%s is not a valid id (0 to %d)", s, MaxID)
	}
	u, err := user.Lookup(s)
	if err != nil {
		return 0, fmt.Errorf("no user %q", s)
	}
	return strconv.Atoi(u.Uid)
}

// ParseGroup resolves s (a gid or a group name) to a gid.
func ParseGroup(s string) (int, error) {
	if n, ok, err := parseID(s); ok || err != nil {
		return n, err
	}
	if strings.ContainsAny(s, "0123456789.eE+-") && strings.Trim(s, "0123456789.eE+-") == "" {
		return 0, fmt.Errorf("%s is not a valid id (0 to %d)", s, MaxID)
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		return 0, fmt.Errorf("no group %q", s)
	}
	return strconv.Atoi(g.Gid)
}

// Parse decodes and validates a configuration; defaults are applied.
func Parse(data []byte) (*Conf, error) {
	c := &Conf{}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("config: %s", jsonError(err))
	}
	if err := checkKeys(data); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func jsonError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("%q: must be %s, got %s", te.Field, te.Type, te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at byte %d: %v", se.Offset, err)
	}
	if strings.Contains(err.Error(), "json: cannot unmarshal") || strings.Contains(err.Error(), "must be") {
		return err.Error()
	}
	return "invalid JSON: " + err.Error()
}

// Load reads the configuration file at path. A missing file yields the
// defaults when optional is true.
func Load(path string, optional bool) (*Conf, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && optional {
		c := &Conf{}
		return c, c.Validate()
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Error is an invalid or missing configuration value; front ends match it
// with errors.As (the CNI plugin answers it with code 7).
type Error struct {
	Field string // the key, as written in the JSON
	Msg   string
	Err   error // the cause, if any
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("config: %q: %s", e.Field, e.Msg)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// FieldError returns an *Error for field.
func FieldError(field string, cause error, format string, args ...any) error {
	return &Error{Field: field, Msg: fmt.Sprintf(format, args...), Err: cause}
}

func fieldErr(field, format string, args ...any) error {
	return FieldError(field, nil, format, args...)
}

// Validate checks every field, fills in defaults and resolves names.
func (c *Conf) Validate() error {
	if c.Bridge == "" {
		c.Bridge = DefaultBridge
	}
	if err := ifname.Validate("bridge", c.Bridge); err != nil {
		return err
	}
	if c.Uplink != "" {
		if err := ifname.Validate("uplink", c.Uplink); err != nil {
			return err
		}
		if c.Uplink == c.Bridge {
			return fieldErr("uplink", "must differ from the bridge %q", c.Bridge)
		}
	}
	if c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535) {
		return fieldErr("mtu", "must be between 68 and 65535, got %d", c.MTU)
	}
	if c.ProbeTimeout != "" {
		if _, err := c.ProbeDuration(); err != nil {
			return err
		}
	}
	switch c.Mode {
	case "":
		c.Mode = ModeNetns
	case ModeNetns, ModeHost:
	default:
		return fieldErr("mode", "must be %q or %q, got %q", ModeNetns, ModeHost, c.Mode)
	}
	if c.Owner != nil && c.Owner.Value < 0 {
		uid, err := ParseUser(c.Owner.Name)
		if err != nil {
			return fieldErr("owner", "%v", err)
		}
		c.Owner.Value = uid
	}
	if c.Group != nil && c.Group.Value < 0 {
		gid, err := ParseGroup(c.Group.Name)
		if err != nil {
			return fieldErr("group", "%v", err)
		}
		c.Group.Value = gid
	}
	if c.MAC != "" {
		if _, err := mac.Parse(c.MAC); err != nil {
			return fieldErr("mac", "%v", err)
		}
	}
	if c.RuntimeConfig.MAC != "" {
		if _, err := mac.Parse(c.RuntimeConfig.MAC); err != nil {
			return fieldErr("runtimeConfig.mac", "%v", err)
		}
	}
	if _, err := ParseIPs("ips", c.IPs); err != nil {
		return err
	}
	if c.VLAN < 0 || c.VLAN > 4094 {
		return fieldErr("vlan", "must be between 1 and 4094 (0 for none), got %d", c.VLAN)
	}
	for _, v := range c.UplinkVLANs {
		if v < 1 || v > 4094 {
			return fieldErr("uplinkVlans", "must be between 1 and 4094, got %d", v)
		}
	}
	if len(c.UplinkVLANs) > 0 && c.Uplink == "" {
		return fieldErr("uplinkVlans", "needs \"uplink\"")
	}
	return nil
}

// ProbeDuration parses probeTimeout.
func (c *Conf) ProbeDuration() (d time.Duration, err error) {
	return ParseDuration("probeTimeout", c.ProbeTimeout)
}

// ParseIPs parses addresses given as "192.0.2.5", "192.0.2.5/24" or a
// comma-separated list of those, for the field named field.
func ParseIPs(field string, in []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, item := range in {
		for _, s := range strings.Split(item, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if p, err := netip.ParsePrefix(s); err == nil {
				out = append(out, p.Addr())
				continue
			}
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fieldErr(field, "invalid IP address %q", s)
			}
			out = append(out, a.Unmap())
		}
	}
	return out, nil
}

// OwnerID returns the configured owner uid, or -1.
func (c *Conf) OwnerID() int {
	if c.Owner == nil {
		return -1
	}
	return c.Owner.Value
}

// GroupID returns the configured group gid, or -1.
func (c *Conf) GroupID() int {
	if c.Group == nil {
		return -1
	}
	return c.Group.Value
}

// GuestMAC returns the MAC asked for by runtimeConfig, then args, then the
// config's "mac"; nil when none is given.
func (c *Conf) GuestMAC(argsMAC string) (net.HardwareAddr, error) {
	for _, s := range []struct{ field, v string }{{"runtimeConfig.mac", c.RuntimeConfig.MAC}, {"CNI_ARGS MAC", argsMAC}, {"mac", c.MAC}} {
		if s.v != "" {
			m, err := mac.Parse(s.v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.field, err)
			}
			return m, nil
		}
	}
	return nil, nil
}
