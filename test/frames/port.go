package frames

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"
	"unsafe"

	"github.com/tapbridge/tapbridge/internal/nstest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TB is the part of testing.TB the package uses.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
}

// Port is where frames are injected and captured: an AF_PACKET socket on
// an interface (Socket) or the file descriptor of a TAP (TAP).
type Port interface {
	// Name is the interface's name, for messages.
	Name() string
	// Send injects frame; a failure is fatal.
	Send(t TB, frame []byte)
	// Read returns the frames that arrived within d, not those sent.
	Read(d time.Duration) [][]byte
}

// inNetNS runs f on a locked thread in the namespace at path, or on the
// current thread when path is "".
func inNetNS(path string, f func() error) error {
	if path == "" {
		return f()
	}
	return nstest.Do(path, f)
}

// Socket is an AF_PACKET socket bound to one interface. What it sends
// leaves through the interface (for a veth: arrives at its peer); it reads
// what the interface receives.
type Socket struct {
	name string
	fd   int
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// OpenPacket opens a packet socket on ifname in the network namespace at
// netnsPath ("" for the current one); it is closed at t's cleanup. The
// socket works from any thread afterwards.
func OpenPacket(t TB, netnsPath, ifname string) *Socket {
	t.Helper()
	s := &Socket{name: ifname, fd: -1}
	err := inNetNS(netnsPath, func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		s.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.Attrs().Index}); err != nil {
			return err
		}
		tv := unix.NsecToTimeval((20 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		// The kernel's time of each frame, for ReadStamped.
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	})
	if s.fd >= 0 {
		t.Cleanup(func() { unix.Close(s.fd) })
	}
	if err != nil {
		t.Fatalf("packet socket on %s: %v", ifname, err)
	}
	return s
}

// Name returns the interface's name.
func (s *Socket) Name() string { return s.name }

// Send sends frame out of the interface.
func (s *Socket) Send(t TB, frame []byte) {
	t.Helper()
	if _, err := unix.Write(s.fd, frame); err != nil {
		t.Fatalf("sending on %s: %v", s.name, err)
	}
}

// Read returns the frames received (not sent) within d.
func (s *Socket) Read(d time.Duration) [][]byte {
	var frames [][]byte
	got, _ := s.ReadStamped(d)
	for _, f := range got {
		if !f.Outgoing {
			frames = append(frames, f.Frame)
		}
	}
	return frames
}

// Stamped is a frame the interface received or sent, and when the kernel
// saw it.
type Stamped struct {
	Frame    []byte
	At       time.Time
	Outgoing bool // sent by the interface, not received
}

// ReadStamped returns the frames the interface received or sent within d,
// each with the kernel's time for it (SO_TIMESTAMPNS): when a frame reached
// or left the interface, not when the test got round to reading it.
func (s *Socket) ReadStamped(d time.Duration) ([]Stamped, error) {
	var frames []Stamped
	buf := make([]byte, 65536)
	oob := make([]byte, unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{}))))
	for end := time.Now().Add(d); time.Now().Before(end); {
		n, oobn, _, from, err := unix.Recvmsg(s.fd, buf, oob, 0)
		if err != nil {
			continue // EAGAIN: the receive timeout
		}
		f := Stamped{Frame: append([]byte(nil), buf[:n]...)}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			f.Outgoing = true
		}
		cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return frames, fmt.Errorf("reading on %s: %w", s.name, err)
		}
		for _, m := range cmsgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
				ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
				f.At = time.Unix(ts.Unix())
			}
		}
		if f.At.IsZero() {
			return frames, fmt.Errorf("reading on %s: no receive time", s.name)
		}
		frames = append(frames, f)
	}
	return frames, nil
}

// TAP is the file descriptor of a TAP opened without IFF_VNET_HDR and with
// IFF_NO_PI: what is written to it is a frame the TAP's interface receives,
// as from a VM's NIC; what the interface transmits (the bridge forwards to
// it) is read from it.
type TAP struct {
	name string
	f    *os.File
	fd   int
}

// NewTAP wraps f, a descriptor of the TAP name that the caller holds (from
// tap.Open, say) and closes.
func NewTAP(name string, f *os.File) *TAP {
	return &TAP{name: name, f: f, fd: int(f.Fd())}
}

// AttachTAP attaches a new descriptor to the existing TAP name in the
// namespace at netnsPath ("" for the current one), as QEMU does with
// ifname=name: /dev/net/tun, TUNSETIFF with IFF_TAP|IFF_NO_PI. A
// non-blocking descriptor lets reads take deadlines through *os.File.
func AttachTAP(netnsPath, name string, nonblock bool) (*os.File, error) {
	var f *os.File
	err := inNetNS(netnsPath, func() error {
		flags := unix.O_RDWR | unix.O_CLOEXEC
		if nonblock {
			flags |= unix.O_NONBLOCK
		}
		fd, err := unix.Open("/dev/net/tun", flags, 0)
		if err != nil {
			return fmt.Errorf("opening /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err == nil {
			ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
			err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
		}
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF %q: %w", name, err)
		}
		f = os.NewFile(uintptr(fd), name)
		return nil
	})
	return f, err
}

// OpenTAP is AttachTAP (blocking) wrapped as a Port. It is closed at t's
// cleanup or by Close. The TAP's carrier is up while it is open.
func OpenTAP(t TB, netnsPath, name string) *TAP {
	t.Helper()
	f, err := AttachTAP(netnsPath, name, false)
	if err != nil {
		t.Fatalf("opening TAP %s: %v", name, err)
	}
	p := NewTAP(name, f)
	t.Cleanup(func() { p.Close() })
	return p
}

// Name returns the TAP's name.
func (p *TAP) Name() string { return p.name }

// Close closes the descriptor: a non-persistent TAP disappears, a
// persistent one loses its carrier. Closing twice is harmless.
func (p *TAP) Close() error { return p.f.Close() }

// Send writes frame to the TAP: the TAP's interface receives it.
func (p *TAP) Send(t TB, frame []byte) {
	t.Helper()
	_, err := unix.Write(p.fd, frame)
	runtime.KeepAlive(p.f)
	if err != nil {
		t.Fatalf("writing to TAP %s: %v", p.name, err)
	}
}

// Read returns the frames the TAP's interface transmitted within d.
func (p *TAP) Read(d time.Duration) [][]byte {
	defer runtime.KeepAlive(p.f)
	var frames [][]byte
	buf := make([]byte, 65536)
	for end := time.Now().Add(d); ; {
		left := time.Until(end)
		if left <= 0 {
			return frames
		}
		fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left.Milliseconds())+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || fds[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
			return frames // closed, or the TAP is gone
		}
		if n == 0 {
			continue
		}
		m, err := unix.Read(p.fd, buf)
		if err != nil {
			continue
		}
		frames = append(frames, append([]byte(nil), buf[:m]...))
	}
}

// Drain reads and discards what is queued on ports until they have been
// quiet for 30 ms (at most 300 ms).
func Drain(ports ...Port) {
	for _, p := range ports {
		for i := 0; i < 10 && len(p.Read(30*time.Millisecond)) > 0; i++ {
		}
	}
}

// Deliver sends the probes and then marker from src, waits until marker
// reaches caps[0], then until it reaches each other capture or, where it
// does not come, 150 ms more plus ten times what caps[0] took. It returns,
// per capture, the names of the probes that arrived. A marker that never
// arrives within 3 s is fatal: the path itself is broken.
func Deliver(t TB, src Port, marker Probe, probes []Probe, caps ...Port) []map[string]bool {
	t.Helper()
	Drain(caps...) // stale frames
	for _, p := range probes {
		src.Send(t, p.Frame)
	}
	sent := time.Now()
	src.Send(t, marker.Frame)

	got := make([]map[string]bool, len(caps))
	for i := range got {
		got[i] = map[string]bool{}
	}
	note := func(i int, frames [][]byte) bool {
		sawMarker := false
		for _, f := range frames {
			if bytes.Contains(f, marker.Nonce) {
				sawMarker = true
			}
			for _, p := range probes {
				if bytes.Contains(f, p.Nonce) {
					got[i][p.Name] = true
				}
			}
		}
		return sawMarker
	}
	for end := time.Now().Add(3 * time.Second); ; {
		if note(0, caps[0].Read(20*time.Millisecond)) {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("marker %q from %s never reached %s: the path itself is broken", marker.Name, src.Name(), caps[0].Name())
		}
	}
	note(0, caps[0].Read(40*time.Millisecond))
	// The other captures: until the marker arrives there too (frames on
	// one path arrive in order, so nothing sent before it is still on its
	// way), else for 150 ms plus ten times what the marker took to reach
	// caps[0] (a port it must not reach): on a slow machine, such as the
	// TCG guest of test/kernel, another port's frames come later.
	wait := 150*time.Millisecond + 10*time.Since(sent)
	for i := 1; i < len(caps); i++ {
		for end := time.Now().Add(wait); time.Now().Before(end); {
			if note(i, caps[i].Read(20*time.Millisecond)) {
				break
			}
		}
	}
	return got
}
