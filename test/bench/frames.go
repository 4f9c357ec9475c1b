package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/tap"
	"github.com/tapbridge/tapbridge/internal/vmport"
)

// frameSizes are the sizes of the frames/s runs, without the FCS.
var frameSizes = []int{64, 1400}

// frameCounts is how many frames one run writes, per size.
var frameCounts = map[int]int{64: 100000, 1400: 50000}

// path is one configuration of the frames/s phase: a TAP opened as QEMU
// opens it, and the counter of the far side that sees its frames.
type path struct {
	key   string
	tap   *os.File
	count func() (uint64, error)
}

// measureFrames writes UDP frames from the guest's MAC and address to the
// router into a TAP and counts them where they arrive: at the router for
// every configuration on the bridge, at the TAP itself for the floor (a
// TAP on no bridge: the cost of the write and of the kernel taking the
// frame in). Configurations and sizes alternate.
func (e *env) measureFrames(r *results) error {
	router, err := routerLink(e)
	if err != nil {
		return err
	}
	atRouter := func() (uint64, error) {
		l, err := routerLink(e)
		if err != nil {
			return 0, err
		}
		return l.Attrs().Statistics.RxPackets, nil
	}
	on, err := config.Load(e.confOn, false)
	if err != nil {
		return err
	}
	off, err := config.Load(e.confOff, false)
	if err != nil {
		return err
	}
	var paths []path
	defer func() {
		for _, p := range paths {
			p.tap.Close()
		}
	}()
	// The floor: a TAP on no bridge.
	f, _, err := tap.Open("fl0", tap.DefaultOptions)
	if err != nil {
		return err
	}
	paths = append(paths, path{"frames/floor", f, func() (uint64, error) {
		l, err := netlink.LinkByName("fl0")
		if err != nil {
			return 0, err
		}
		return l.Attrs().Statistics.RxPackets, nil
	}})
	if l, err := netlink.LinkByName("fl0"); err != nil || netlink.LinkSetUp(l) != nil {
		return fmt.Errorf("bringing fl0 up: %v", err)
	}
	guest := vmport.Port{GuestMAC: mustMAC(guestMAC), GuestIPs: []netip.Addr{netip.MustParseAddr(guestIP)}}
	for _, c := range []struct {
		key, name string
		conf      *config.Conf
	}{{"frames/off", "fo0", off}, {"frames/on", "fn0", on}} {
		f, name, err := tap.Open(c.name, tap.DefaultOptions)
		if err != nil {
			return err
		}
		paths = append(paths, path{c.key, f, atRouter})
		p := guest
		p.Name = name
		if err := vmport.Attach(c.conf, p); err != nil {
			return err
		}
	}
	if f, err := e.cniFramesTAP(); err != nil {
		return err
	} else {
		paths = append(paths, path{"frames/cni", f, atRouter})
	}
	r.frames, r.delivered = map[string][]float64{}, map[string][]float64{}
	frames := map[int][]byte{}
	for _, size := range frameSizes {
		frames[size] = udpFrame(size, router.Attrs().HardwareAddr, mustMAC(guestMAC))
	}
	for round := 0; round < e.o.frames; round++ {
		for i := range paths {
			p := paths[(i+round)%len(paths)]
			for _, size := range frameSizes {
				rate, got, err := blast(p, frames[size], frameCounts[size])
				if err != nil {
					return fmt.Errorf("%s, %d bytes: %w", p.key, size, err)
				}
				k := fmt.Sprintf("%s/%d", p.key, size)
				r.frames[k] = append(r.frames[k], rate)
				r.delivered[k] = append(r.delivered[k], got)
			}
		}
	}
	return nil
}

// cniFramesTAP makes a CNI attachment in netns mode with the default
// guards and opens its TAP inside the sandbox, as QEMU there does.
func (e *env) cniFramesTAP() (*os.File, error) {
	sb, err := e.sandbox()
	if err != nil {
		return nil, err
	}
	conf := []byte(`{"cniVersion": "1.0.0", "name": "bench", "type": "tapbridge", "bridge": "br0"}`)
	env := []string{
		"PATH=" + os.Getenv("PATH"), "CNI_CONTAINERID=bench-frames", "CNI_NETNS=" + sb.Path, "CNI_IFNAME=eth0",
		"CNI_PATH=" + e.o.bin, "TAPBRIDGE_RUN_DIR=" + e.runDir, "CNI_ARGS=MAC=" + guestMAC,
	}
	if err := run(filepath.Join(e.o.bin, "tapbridge"), append(env, "CNI_COMMAND=ADD"), conf); err != nil {
		return nil, err
	}
	var f *os.File
	err = ns.WithNetNSPath(sb.Path, func(ns.NetNS) error {
		var err error
		f, _, err = tap.Open("eth0", tap.DefaultOptions)
		return err
	})
	return f, err
}

// routerLink is the router's end of the uplink.
func routerLink(e *env) (netlink.Link, error) {
	var l netlink.Link
	err := ns.WithNetNSPath(e.router.Path, func(ns.NetNS) error {
		var err error
		l, err = netlink.LinkByName("lan0")
		return err
	})
	return l, err
}

// blast writes n copies of frame into p's TAP and returns the frames/s
// seen at its counter, from the first write to the last frame counted, and
// the fraction delivered. It waits for the counter to stop moving (frames
// still in softirq backlogs), never for a fixed time.
func blast(p path, frame []byte, n int) (rate, delivered float64, err error) {
	c0, err := p.count()
	if err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	for i := 0; i < n; i++ {
		if _, err := p.tap.Write(frame); err != nil {
			return 0, 0, err
		}
	}
	last, lastAt := c0, time.Now()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		c, err := p.count()
		if err != nil {
			return 0, 0, err
		}
		now := time.Now()
		if c != last {
			last, lastAt = c, now
		}
		if c-c0 >= uint64(n) || now.Sub(lastAt) > 50*time.Millisecond {
			break
		}
		time.Sleep(time.Millisecond) // polling the counter, not waiting for it
	}
	got := float64(last - c0)
	return got / lastAt.Sub(t0).Seconds(), got / float64(n), nil
}

// udpFrame is an Ethernet frame of size bytes: IPv4/UDP from the guest to
// the router's discard port, with a valid IPv4 header checksum.
func udpFrame(size int, dst, src net.HardwareAddr) []byte {
	b := make([]byte, size)
	copy(b[0:6], dst)
	copy(b[6:12], src)
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(size-14))
	binary.BigEndian.PutUint16(ip[6:], 0x4000)
	copy(ip[12:16], net.ParseIP(guestIP).To4())
	copy(ip[16:20], net.ParseIP("192.0.2.1").To4())
	sum := uint32(0)
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := b[34:42]
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], 9)
	binary.BigEndian.PutUint16(udp[4:], uint16(size-34))
	return b
}
