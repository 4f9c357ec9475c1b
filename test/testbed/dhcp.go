package testbed

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DHCPServer is a dnsmasq that serves DHCPv4 (and nothing else: no DNS) on
// one interface of a namespace, with a pool of .100 to .199 of that
// interface's subnet and 10-minute leases.
type DHCPServer struct {
	NetNS     *NetNS
	Iface     string
	Addr      netip.Prefix // the server's own address, also the router option
	First     netip.Addr   // first address of the pool
	Last      netip.Addr   // last address of the pool
	LeaseFile string

	proc *process
	log  *logBuffer
}

// StartDHCP puts addr on iface in n (if it is not there yet), brings iface
// up and starts dnsmasq on it. addr's subnet must be /24 or larger. Cleanup
// stops dnsmasq (SIGTERM by PID), and logs its output if the test failed.
func StartDHCP(t TB, n *NetNS, iface string, addr netip.Prefix) *DHCPServer {
	t.Helper()
	return StartDHCPWith(t, n, iface, addr, DHCPConfig{})
}

// DHCPConfig changes what StartDHCPWith's dnsmasq serves; the zero value is
// StartDHCP's.
type DHCPConfig struct {
	// Lease is the lease time; dnsmasq's minimum is 2 minutes. Zero means
	// 10 minutes.
	Lease time.Duration
	// T1 and T2 are the renewal and rebinding times (options 58 and 59)
	// dnsmasq sends instead of half and seven eighths of the lease.
	T1, T2 time.Duration
	// RA makes dnsmasq send IPv6 router advertisements on iface (it must
	// hold an IPv6 /64): the prefix for SLAAC and the router as default
	// gateway, every RAInterval (default 10 s), and an answer to every
	// router solicitation. The prefix is valid for 10 minutes, the router
	// for 30.
	RA         bool
	RAInterval time.Duration
}

// StartDHCPWith is StartDHCP with a DHCPConfig.
func StartDHCPWith(t TB, n *NetNS, iface string, addr netip.Prefix, c DHCPConfig) *DHCPServer {
	t.Helper()
	s, err := startDHCP(n, iface, addr, t.TempDir(), c)
	if s != nil {
		t.Cleanup(func() {
			if err := s.Stop(); err != nil {
				t.Logf("%v", err)
			}
			if t.Failed() {
				t.Logf("dnsmasq on %s in netns %s:\n%s", s.Iface, s.NetNS, s.Log())
			}
		})
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	return s
}

// startDHCP does the work of StartDHCP. A non-nil server must be stopped
// even when err is not nil.
func startDHCP(n *NetNS, iface string, addr netip.Prefix, dir string, c DHCPConfig) (*DHCPServer, error) {
	if !addr.Addr().Is4() || addr.Bits() > 24 {
		return nil, fmt.Errorf("serving DHCP on %q: %s is not an IPv4 subnet of /24 or larger", iface, addr)
	}
	for _, args := range [][]string{
		{"addr", "replace", addr.String(), "dev", iface},
		{"link", "set", iface, "up"},
	} {
		if _, err := n.Exec("ip", args...); err != nil {
			return nil, fmt.Errorf("serving DHCP on %q: %w", iface, err)
		}
	}
	base := addr.Masked().Addr().As4()
	first, last := base, base
	first[3], last[3] = 100, 199
	s := &DHCPServer{
		NetNS:     n,
		Iface:     iface,
		Addr:      addr,
		First:     netip.AddrFrom4(first),
		Last:      netip.AddrFrom4(last),
		LeaseFile: filepath.Join(dir, "dnsmasq-"+iface+".leases"),
		log:       &logBuffer{},
	}
	mask := net.IP(net.CIDRMask(addr.Bits(), 32)).String()
	lease := "10m"
	if c.Lease > 0 {
		lease = strconv.Itoa(int(c.Lease.Seconds()))
	}
	var extra []string
	if c.T1 > 0 {
		extra = append(extra, fmt.Sprintf("--dhcp-option=option:T1,%d", int(c.T1.Seconds())))
	}
	if c.T2 > 0 {
		extra = append(extra, fmt.Sprintf("--dhcp-option=option:T2,%d", int(c.T2.Seconds())))
	}
	if c.RA {
		interval := c.RAInterval
		if interval == 0 {
			interval = 10 * time.Second
		}
		extra = append(extra, "--enable-ra",
			"--dhcp-range=::,constructor:"+iface+",ra-only,64,10m",
			fmt.Sprintf("--ra-param=%s,%d,%d", iface, int(interval.Seconds()), 1800))
	}
	cmd := n.Command("dnsmasq", append([]string{
		"--no-daemon",           // foreground, no pid file, keeps root
		"--conf-file=/dev/null", // ignore /etc/dnsmasq.conf
		"--port=0",              // no DNS
		"--no-resolv", "--no-hosts",
		"--log-facility=-", // log to stderr, not syslog
		"--log-dhcp",
		"--interface=" + iface,
		// With exactly one --interface, --bind-interfaces binds the DHCP
		// socket to that device, so one dnsmasq per interface can run in
		// the same namespace.
		"--bind-interfaces",
		"--dhcp-authoritative",
		"--no-ping", // no ICMP probe (and its delay) before an offer
		fmt.Sprintf("--dhcp-range=%s,%s,%s,%s", s.First, s.Last, mask, lease),
		"--dhcp-leasefile=" + s.LeaseFile,
		"--pid-file=",
	}, extra...)...)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	p, err := startProcess("dnsmasq", cmd)
	if err != nil {
		return nil, fmt.Errorf("serving DHCP on %q in netns %q: %w", iface, n, err)
	}
	s.proc = p
	// dnsmasq logs its range once its sockets are bound.
	err = poll(5*time.Second, p.done, func() (bool, error) {
		return strings.Contains(s.log.String(), "DHCP, IP range"), nil
	})
	if err != nil {
		return s, withOutput(fmt.Sprintf("starting dnsmasq on %q in netns %q", iface, n), err, []byte(s.log.String()))
	}
	return s, nil
}

// Stop stops dnsmasq: SIGTERM by PID, then SIGKILL after 3 s.
func (s *DHCPServer) Stop() error {
	if s.proc == nil {
		return nil
	}
	return s.proc.stop(3 * time.Second)
}

// PID returns dnsmasq's process ID.
func (s *DHCPServer) PID() int { return s.proc.pid() }

// Log returns what dnsmasq has logged so far (with --log-dhcp: every
// DISCOVER, OFFER, REQUEST and ACK).
func (s *DHCPServer) Log() string { return s.log.String() }

// Leases returns the leases in dnsmasq's lease file.
func (s *DHCPServer) Leases() ([]Lease, error) {
	// dnsmasq rewrites the file in place (truncate, then write), so a read
	// can fall in between and see it empty or cut. A whole file ends with a
	// newline: read until it does, or until it has stayed empty for 200 ms
	// (no lease yet).
	var data []byte
	for deadline := time.Now().Add(200 * time.Millisecond); ; time.Sleep(2 * time.Millisecond) {
		var err error
		data, err = os.ReadFile(s.LeaseFile)
		if os.IsNotExist(err) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading leases: %w", err)
		}
		if len(data) > 0 && data[len(data)-1] == '\n' || len(data) == 0 && time.Now().After(deadline) {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("reading %s: it ends in the middle of a line after 200ms: %q", s.LeaseFile, data)
		}
	}
	leases, err := ParseLeases(data)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", s.LeaseFile, err)
	}
	return leases, nil
}

// WaitLease waits until the lease file holds a lease for mac.
func (s *DHCPServer) WaitLease(mac string, timeout time.Duration) (Lease, error) {
	return waitLease(mac, timeout, s.proc.done, s.Leases)
}

// waitLease polls leases until one is for mac.
func waitLease(mac string, timeout time.Duration, done <-chan struct{}, leases func() ([]Lease, error)) (Lease, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return Lease{}, fmt.Errorf("waiting for a lease: %w", err)
	}
	var got Lease
	err = poll(timeout, done, func() (bool, error) {
		ls, err := leases()
		if err != nil {
			return false, err
		}
		for _, l := range ls {
			if bytes.Equal(l.MAC, hw) {
				got = l
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return Lease{}, fmt.Errorf("waiting for a DHCP lease for %s: %w", hw, err)
	}
	return got, nil
}

// Lease is one DHCPv4 lease of a dnsmasq lease file.
type Lease struct {
	Expiry   time.Time // zero for an infinite lease
	MAC      net.HardwareAddr
	IP       netip.Addr
	Hostname string // "" when the client sent none
	ClientID string // "" when the client sent none
}

// ParseLeases parses a dnsmasq lease file: one lease a line, "EXPIRY MAC IP
// HOSTNAME CLIENT-ID", "*" for a missing field. DHCPv6 lines (the "duid"
// line and IPv6 leases) are skipped.
func ParseLeases(data []byte) ([]Lease, error) {
	var leases []Lease
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] == "duid" {
			continue
		}
		if len(f) < 4 {
			return nil, fmt.Errorf("line %d: want at least 4 fields, got %d", line, len(f))
		}
		ip, err := netip.ParseAddr(f[2])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if ip.Is6() {
			continue
		}
		secs, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: expiry: %w", line, err)
		}
		mac, err := net.ParseMAC(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		l := Lease{MAC: mac, IP: ip}
		if secs != 0 {
			l.Expiry = time.Unix(secs, 0)
		}
		if f[3] != "*" {
			l.Hostname = f[3]
		}
		if len(f) > 4 && f[4] != "*" {
			l.ClientID = f[4]
		}
		leases = append(leases, l)
	}
	return leases, sc.Err()
}
