package mac

import (
	"crypto/sha256"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// Random returns a random locally administered unicast MAC.
func Random() (net.HardwareAddr, error) {
	// getrandom(2) rather than crypto/rand, which would link math/big and
	// four more packages into every binary that has this package.
	m := make(net.HardwareAddr, 6)
	for n := 0; n < len(m); {
		k, err := unix.Getrandom(m[n:], 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading random bytes: %w", err)
		}
		n += k
	}
	return local(m), nil
}

// FromName returns the locally administered unicast MAC derived from name:
// the same name always gives the same MAC.
func FromName(name string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("tapbridge-mac\x00" + name))
	return local(net.HardwareAddr(sum[:6]))
}

// HostPort returns m with its first byte set to 0xFE. Host-side ports (TAPs,
// veths) carry such a MAC: a bridge whose MAC was not set explicitly takes
// the lowest MAC of its ports, and 0xFE is higher than any real vendor MAC,
// so attaching a VM never changes the bridge's MAC (and the host's lease).
func HostPort(m net.HardwareAddr) net.HardwareAddr {
	out := make(net.HardwareAddr, len(m))
	copy(out, m)
	if len(out) > 0 {
		out[0] = 0xFE
	}
	return out
}

// Parse parses a guest MAC and insists on a unicast Ethernet address: a
// multicast source MAC would be dropped by every switch.
func Parse(s string) (net.HardwareAddr, error) {
	m, err := net.ParseMAC(s)
	if err != nil {
		return nil, fmt.Errorf("invalid MAC %q", s)
	}
	if len(m) != 6 {
		return nil, fmt.Errorf("invalid MAC %q: not a 6-byte Ethernet address", s)
	}
	if m[0]&1 != 0 {
		return nil, fmt.Errorf("invalid MAC %q: multicast bit set, a NIC needs a unicast address", s)
	}
	if isZero(m) {
		return nil, fmt.Errorf("invalid MAC %q: all zeros", s)
	}
	return m, nil
}

func local(m net.HardwareAddr) net.HardwareAddr {
	m[0] = (m[0] | 0x02) &^ 0x01 // locally administered, unicast
	return m
}

func isZero(m net.HardwareAddr) bool {
	for _, b := range m {
		if b != 0 {
			return false
		}
	}
	return true
}
