// Command demo is `make demo`: it builds a sandboxed LAN of network
// namespaces (a router running dnsmasq, a hypervisor whose eth0 holds
// 192.0.2.10/24), boots a QEMU VM through bin/qemu-ifup the way a real host
// would, and says in plain words what happens: the bridge comes up holding
// the uplink, the VM is attached, the router leases the VM an address, and
// the router fetches a page from the VM's own address. Then it takes
// everything down again, also when interrupted (SIGINT, SIGTERM).
//
// It never touches the machine's own (root) network namespace: every
// interface, address and process lives in namespaces it creates and
// deletes. Interrupting it (SIGINT, SIGTERM) stops QEMU and dnsmasq and
// deletes the namespaces, as the end of a normal run does.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/tapbridge/tapbridge/internal/front"
	"github.com/tapbridge/tapbridge/test/testbed"
)

var start = time.Now()

// say prints one step of the story.
func say(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	msg = strings.ReplaceAll(msg, "\n", "\n          ")
	fmt.Printf("[%5.1fs] %s\n", time.Since(start).Seconds(), msg)
}

func main() {
	fmt.Println("tapbridge demo: a VM on a LAN, as if it were a physical server.")
	fmt.Println("Everything happens in throwaway network namespaces; this machine's own network is not touched.")
	fmt.Println()
	if err := testbed.CheckGuest(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v (run 'make deps' as root first)\n", err)
		os.Exit(1)
	}
	// The session stops what it started and deletes its namespaces on
	// Close, on a failure, and on SIGINT or SIGTERM (exit status 130).
	// Cleanups run last first, so this one reports the end of them.
	s := testbed.NewSession(os.Stderr)
	watchSignals()
	s.Cleanup(func() { say("cleaned up: QEMU and dnsmasq stopped, namespaces and files deleted") })
	demo(s)
	s.Close()
	fmt.Printf("\nDone in %.1fs. See docs/qemu.md for the QEMU command lines of every attach flow.\n", time.Since(start).Seconds())
}

func demo(s *testbed.Session) {
	bins := binaries(s)
	lan := testbed.NewLAN(s, testbed.LANOptions{DHCP: true})
	say("LAN ready: router namespace %s (%s, dnsmasq hands out 192.0.2.100-199),\nhypervisor namespace %s whose eth0 holds %s, default route via %s",
		lan.Router, lan.RouterIPv4.Addr(), lan.HV, lan.HVIPv4, lan.RouterIPv4.Addr())

	dir := s.TempDir()
	conf := filepath.Join(dir, "tapbridge.conf")
	confText := `{"bridge": "br0", "uplink": "eth0"}`
	if err := os.WriteFile(conf, []byte(confText), 0o644); err != nil {
		fatal(s, "demo: %v", err)
	}
	env := []string{"TAPBRIDGE_CONF=" + conf, "TAPBRIDGE_RUN_DIR=" + filepath.Join(dir, "run")}
	tapbridge := func(args ...string) string {
		cmd := lan.HV.Command(filepath.Join(bins, "tapbridge"), args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			fatal(s, "demo: tapbridge %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	say("configuration %s: %s (br0 does not exist yet)", conf, confText)

	guestMAC := tapbridge("mac", "demo-vm")
	netdev := fmt.Sprintf("tap,ifname=tap0,script=%s,downscript=%s", filepath.Join(bins, "qemu-ifup"), filepath.Join(bins, "qemu-ifdown"))
	say("booting the VM in the hypervisor namespace, with the stable MAC from 'tapbridge mac demo-vm':\nqemu-system-x86_64 ... -netdev %s,id=n0 \\\n    -device virtio-net-pci,netdev=n0,mac=%s", netdev, guestMAC)
	booted := time.Now()
	g := testbed.StartGuest(s, testbed.GuestOpts{NetNS: lan.HV, Netdev: netdev, MAC: guestMAC, Env: env})

	// qemu-ifup runs as soon as QEMU has made tap0, and puts tap0's front
	// on br0: a veth whose MAC QEMU cannot change.
	var port netlink.Link
	frontName, _ := front.Names("tap0")
	deadline := time.Now().Add(20 * time.Second)
	for port == nil {
		_ = lan.HV.Do(func() error {
			l, err := netlink.LinkByName(frontName)
			if err == nil && l.Attrs().MasterIndex != 0 && l.Attrs().OperState != netlink.OperDown {
				port = l
			}
			return nil
		})
		select {
		case <-g.Exited():
			fatal(s, "demo: QEMU exited: %v\n%s", g.Wait(), g.Output())
		default:
		}
		if time.Now().After(deadline) {
			fatal(s, "demo: tap0 did not join br0 within 20s:\n%s", g.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	addrs := lan.HV.MustExec(s, "ip", "-4", "-br", "addr", "show", "dev", "br0")
	say("qemu-ifup ran (%v after QEMU was started, QEMU's own start-up included):\nbridge br0 is up and holds eth0; the hypervisor's address moved onto it: %s",
		time.Since(booted).Round(time.Millisecond), strings.Join(strings.Fields(addrs), " "))
	say("VM attached: tap0's front %s is a port of br0 with the bridge's MTU %d and host-side MAC %s\n(first byte 0xFE, so the bridge's MAC never changes; QEMU holds tap0 but cannot change this MAC); the guest NIC has %s",
		port.Attrs().Name, port.Attrs().MTU, port.Attrs().HardwareAddr, guestMAC)
	if err := lan.HV.Ping(lan.RouterIPv4.Addr().String()); err != nil {
		fatal(s, "demo: the hypervisor lost the router: %v", err)
	}
	say("the hypervisor still reaches the router %s through br0", lan.RouterIPv4.Addr())

	say("the VM boots (QEMU TCG, a few seconds) and asks the LAN for an address with DHCP ...")
	ip, err := g.WaitLease(60 * time.Second)
	if err != nil {
		fatal(s, "demo: %v", err)
	}
	lease, err := lan.WaitLease(guestMAC, 10*time.Second)
	if err != nil {
		fatal(s, "demo: %v", err)
	}
	say("lease granted by the router: dnsmasq's lease file gives %s to %s", lease.IP, lease.MAC)
	if err := g.WaitReady(30 * time.Second); err != nil {
		fatal(s, "demo: %v", err)
	}
	url := "http://" + ip.String() + "/"
	body, err := lan.Router.Fetch(url)
	if err != nil {
		fatal(s, "demo: %v", err)
	}
	say("page fetched by the router from the VM's own address %s:\n%q", url, strings.TrimSpace(body))

	if err := g.Stop(); err != nil {
		fatal(s, "demo: %v", err)
	}
	left := strings.TrimSpace(lan.HV.MustExec(s, "ip", "-br", "link", "show", "master", "br0"))
	var ports []string
	for _, line := range strings.Split(left, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			ports = append(ports, strings.SplitN(f[0], "@", 2)[0])
		}
	}
	say("VM stopped: qemu-ifdown took tap0's front off br0; ports left on br0: %s (the uplink)", strings.Join(ports, " "))
	out := tapbridge("down", "--bridge", "br0")
	addrs = lan.HV.MustExec(s, "ip", "-4", "-br", "addr", "show", "dev", "eth0")
	say("tapbridge down: %s\neth0 again: %s", firstLine(out), strings.Join(strings.Fields(addrs), " "))
}

// interrupted is closed on SIGINT or SIGTERM. The session cleans up and
// exits on its own then; a step that fails because the session is
// stopping its processes must not race it to os.Exit.
var interrupted = make(chan struct{})

func watchSignals() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		close(interrupted)
	}()
}

// fatal ends the demo with msg, unless an interrupt is being handled.
func fatal(s *testbed.Session, format string, args ...any) {
	select {
	case <-interrupted:
		select {} // the session exits with status 130 when it is done
	default:
	}
	s.Fatalf(format, args...)
}

func firstLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// binaries returns the directory of tapbridge's binaries: TAPBRIDGE_BIN_DIR
// (make demo sets it), else a fresh build.
func binaries(s *testbed.Session) string {
	if d := os.Getenv("TAPBRIDGE_BIN_DIR"); d != "" {
		return d
	}
	d := s.TempDir()
	for _, args := range [][]string{
		{"go", "build", "-o", filepath.Join(d, "tapbridge"), "./plugins/tapbridge"},
		{"go", "build", "-o", filepath.Join(d, "qemu-ifup"), "./qemu-ifup"},
		{"ln", "-s", "qemu-ifup", filepath.Join(d, "qemu-ifdown")},
	} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fatal(s, "demo: building: %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	say("built tapbridge and qemu-ifup into %s", d)
	return d
}
