package frames

import (
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// What a tenant who holds a TAP's descriptor can do to the TAP without any
// capability: tun's own ioctls act on the device the descriptor is
// attached to.

// SetMAC changes the TAP's MAC with SIOCSIFHWADDR on its descriptor.
func (p *TAP) SetMAC(mac net.HardwareAddr) error {
	// struct ifreq: the name, then a struct sockaddr whose sa_family is
	// ARPHRD_ETHER and whose sa_data holds the MAC.
	var ifr [unix.IFNAMSIZ + 24]byte
	copy(ifr[:unix.IFNAMSIZ-1], p.name)
	*(*uint16)(unsafe.Pointer(&ifr[unix.IFNAMSIZ])) = unix.ARPHRD_ETHER
	copy(ifr[unix.IFNAMSIZ+2:], mac)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(p.fd), unix.SIOCSIFHWADDR, uintptr(unsafe.Pointer(&ifr[0]))); errno != 0 {
		return fmt.Errorf("SIOCSIFHWADDR %s on TAP %s: %w", mac, p.name, errno)
	}
	return nil
}

// Persist makes the TAP persistent with TUNSETPERSIST on its descriptor,
// so that it outlives the descriptor.
func (p *TAP) Persist() error {
	if err := unix.IoctlSetInt(p.fd, unix.TUNSETPERSIST, 1); err != nil {
		return fmt.Errorf("TUNSETPERSIST on TAP %s: %w", p.name, err)
	}
	return nil
}
