package main

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/front"
	"github.com/tapbridge/tapbridge/internal/tap"
	"github.com/tapbridge/tapbridge/internal/testkit"
	"github.com/tapbridge/tapbridge/internal/vmport"
)

// contender is one thing measured once per round. run reports one or more
// samples (the in-process attach reports attach and detach apart).
type contender struct {
	key string
	run func(rec func(key string, d time.Duration)) error
}

// timed is a contender with one sample: the duration of f.
func timed(key string, f func() error) contender {
	return contender{key: key, run: func(rec func(string, time.Duration)) error {
		t0 := time.Now()
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		rec(key, time.Since(t0))
		return nil
	}}
}

// labels name every key in the report.
var labels = map[string]string{
	"start/true":        "/bin/true",
	"start/gofloor":     "empty Go program",
	"start/ifup":        "bin/qemu-ifup --help",
	"start/helper":      "bin/tapbridge-bridge-helper --help (drops its privileges first)",
	"start/ifup-before": "bin/qemu-ifup --help, before",
	"start/tapbridge":   "bin/tapbridge version",
	"hook/off":          "qemu-ifup + qemu-ifdown, guards off",
	"hook/on":           "qemu-ifup + qemu-ifdown, all guards",
	"hook/on-before":    "qemu-ifup + qemu-ifdown, all guards, before",
	"hook/shell":        "Debian-style shell qemu-ifup + ip link del",
	"helper/tb":         "tapbridge-bridge-helper (default guards)",
	"helper/tb-before":  "tapbridge-bridge-helper, before",
	"helper/qemu":       "qemu-bridge-helper",
	"cni/tb":            "tapbridge, netns mode, default guards",
	"cni/tb-before":     "tapbridge, netns mode, default guards, before",
	"cni/bridge":        "upstream bridge (ipam {})",
	"cni/tap":           "upstream tap (ipam {})",
	"cni/noop":          "noop (the exec floor)",
	"inproc/attach":     "vmport.Attach, all guards (in process)",
	"inproc/detach":     "vmport.Detach, all guards (in process)",
	"inproc/attach-off": "vmport.Attach, guards off (in process)",
	"inproc/detach-off": "vmport.Detach, guards off (in process)",
	"inproc/takeover":   "vmport.Attach taking over a vanished TAP's front, default guards (in process)",
	"inproc/fresh":      "vmport.Attach with a new front, default guards (in process)",
	"kernel/tapclose":   "closing a TAP on a bridge (its unregistration)",
	"kernel/vethdel":    "deleting a veth pair (one unregistration)",
	"kernel/port":       "a veth on and off the bridge: enslaved, up, down, released",
	"kernel/redirect":   "a front's redirects: two ingress qdiscs with a mirred filter each, added and removed",
	"frames/floor":      "TAP on no bridge (floor)",
	"frames/off":        "through a front, no policy",
	"frames/on":         "through a front, all guards",
	"frames/cni":        "CNI netns mode, default guards",
}

// startContenders are the process starts. They take 1-3 ms, so they run
// in a phase of their own with many rounds, where the kernel's deferred
// work after a link deletion (RCU callbacks) falls on them all alike.
func (e *env) startContenders() []contender {
	var cs []contender
	bin := func(name string) string { return filepath.Join(e.o.bin, name) }
	before := func(name string) string { return filepath.Join(e.o.baseline, name) }
	{
		cs = append(cs,
			timed("start/true", func() error { return run("/bin/true", nil, nil, "--help") }),
			timed("start/gofloor", func() error { return run(e.goFloor, nil, nil) }),
			timed("start/ifup", func() error { return run(bin("qemu-ifup"), nil, nil, "--help") }),
			timed("start/helper", func() error { return run(bin("tapbridge-bridge-helper"), nil, nil, "--help") }),
			timed("start/tapbridge", func() error { return run(bin("tapbridge"), nil, nil, "version") }),
		)
		if e.o.baseline != "" {
			cs = append(cs, timed("start/ifup-before", func() error { return run(before("qemu-ifup"), nil, nil, "--help") }))
		}
	}
	return cs
}

// contenders lists what is measured at every scale.
func (e *env) contenders() ([]contender, error) {
	var cs []contender
	bin := func(name string) string { return filepath.Join(e.o.bin, name) }
	before := func(name string) string { return filepath.Join(e.o.baseline, name) }
	cs = append(cs, tapClose(), vethDel(), kernelPort(), kernelRedirect())
	hookEnv := func(conf string) []string {
		return []string{"PATH=" + os.Getenv("PATH"), "TAPBRIDGE_CONF=" + conf, "TAPBRIDGE_RUN_DIR=" + e.runDir}
	}
	cs = append(cs,
		hook("hook/off", bin("qemu-ifup"), bin("qemu-ifdown"), hookEnv(e.confOff)),
		hook("hook/on", bin("qemu-ifup"), bin("qemu-ifdown"), hookEnv(e.confOn)),
		hook("hook/shell", e.shellUp, e.shellDown, hookEnv(e.confOff)),
		helper("helper/tb", bin("tapbridge-bridge-helper"), hookEnv(e.confDefault)),
	)
	if e.o.baseline != "" {
		cs = append(cs,
			hook("hook/on-before", before("qemu-ifup"), before("qemu-ifdown"), hookEnv(e.confOn)),
			helper("helper/tb-before", before("tapbridge-bridge-helper"), hookEnv(e.confDefault)),
		)
	}
	if e.helperACL {
		cs = append(cs, helper("helper/qemu", "/usr/lib/qemu/qemu-bridge-helper", hookEnv(e.confDefault)))
	}
	for _, p := range []struct {
		key, dir, plugin string
		conf             string
	}{
		{"cni/tb", e.o.bin, "tapbridge", `"type": "tapbridge", "bridge": "br0"`},
		{"cni/bridge", e.o.tools, "bridge", `"type": "bridge", "bridge": "br0", "ipam": {}`},
		{"cni/tap", e.o.tools, "tap", `"type": "tap", "ipam": {}`},
		{"cni/noop", e.o.tools, "noop", `"type": "noop"`},
		{"cni/tb-before", e.o.baseline, "tapbridge", `"type": "tapbridge", "bridge": "br0"`},
	} {
		if p.dir == "" {
			continue
		}
		sb, err := e.sandbox()
		if err != nil {
			return nil, err
		}
		conf := `{"cniVersion": "1.0.0", "name": "bench", ` + p.conf + `}`
		env := []string{
			"PATH=" + os.Getenv("PATH"), "CNI_CONTAINERID=bench-" + strings.ReplaceAll(p.key, "/", "-"),
			"CNI_NETNS=" + sb.Path, "CNI_IFNAME=eth0", "CNI_PATH=" + p.dir, "TAPBRIDGE_RUN_DIR=" + e.runDir,
		}
		plugin := filepath.Join(p.dir, p.plugin)
		key := p.key
		// ADD + DEL is the figure; each verb's share is recorded apart
		// (KEY/add, KEY/del) for the notes.
		cs = append(cs, contender{key: key, run: func(rec func(string, time.Duration)) error {
			t0 := time.Now()
			if err := run(plugin, append(env, "CNI_COMMAND=ADD"), []byte(conf)); err != nil {
				return fmt.Errorf("%s: ADD: %w", key, err)
			}
			t1 := time.Now()
			if err := run(plugin, append(env, "CNI_COMMAND=DEL"), []byte(conf)); err != nil {
				return fmt.Errorf("%s: DEL: %w", key, err)
			}
			rec(key, time.Since(t0))
			rec(key+"/add", t1.Sub(t0))
			rec(key+"/del", time.Since(t1))
			return nil
		}})
	}
	on, err := config.Load(e.confOn, false)
	if err != nil {
		return nil, err
	}
	off, err := config.Load(e.confOff, false)
	if err != nil {
		return nil, err
	}
	def, err := config.Load(e.confDefault, false)
	if err != nil {
		return nil, err
	}
	cs = append(cs, inproc("inproc/attach", "inproc/detach", on), inproc("inproc/attach-off", "inproc/detach-off", off), takeover(def))
	return cs, nil
}

// takeover is the helper's attach in process: a TAP that gets the name of
// one whose QEMU has just ended without a down script, whose front it takes
// over (inproc/takeover), against a TAP whose name is new (inproc/fresh);
// both right after a TAP's close, as on a host where VMs come and go.
func takeover(c *config.Conf) contender {
	return contender{key: "inproc/takeover", run: func(rec func(string, time.Duration)) error {
		attach := func(name string) (*os.File, time.Duration, error) {
			f, name, err := tap.Open(name, tap.DefaultOptions)
			if err != nil {
				return nil, 0, err
			}
			t0 := time.Now()
			err = vmport.Attach(c, vmport.Port{Name: name})
			d := time.Since(t0)
			if err != nil {
				f.Close()
				return nil, 0, err
			}
			return f, d, nil
		}
		f, _, err := attach("to0")
		if err != nil {
			return err
		}
		f.Close() // gone without a down script: its front stays
		f, d, err := attach("to0")
		if err != nil {
			return fmt.Errorf("inproc/takeover: %w", err)
		}
		rec("inproc/takeover", d)
		f.Close()
		f, d, err = attach("tf0")
		if err != nil {
			return fmt.Errorf("inproc/fresh: %w", err)
		}
		rec("inproc/fresh", d)
		f.Close()
		return vmport.Detach(c, "tf0")
	}}
}

// tapClose is the kernel's part that every front end and anchor pays when
// a VM ends: a TAP on the bridge closed by its last holder.
func tapClose() contender {
	return contender{key: "kernel/tapclose", run: func(rec func(string, time.Duration)) error {
		f, name, err := tap.Open("kc0", tap.DefaultOptions)
		if err != nil {
			return err
		}
		l, err := netlink.LinkByName(name)
		var br netlink.Link
		if err == nil {
			br, err = netlink.LinkByName("br0")
		}
		if err == nil {
			err = netlink.LinkSetMaster(l, br)
		}
		if err != nil {
			f.Close()
			return err
		}
		t0 := time.Now()
		f.Close()
		rec("kernel/tapclose", time.Since(t0))
		return nil
	}}
}

// vethDel is the deletion of a veth pair: what a front or a CNI
// attachment costs the kernel to take down.
func vethDel() contender {
	return contender{key: "kernel/vethdel", run: func(rec func(string, time.Duration)) error {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "kv0"}, PeerName: "kv1"}
		if err := netlink.LinkAdd(v); err != nil {
			return err
		}
		t0 := time.Now()
		if err := netlink.LinkDel(v); err != nil {
			return err
		}
		rec("kernel/vethdel", time.Since(t0))
		return nil
	}}
}

// kernelPair is the veth pair kp0 (on br0 while measured) and kp1 of the
// kernel/port and kernel/redirect rows, made on first use and left to the
// namespace's deletion.
func kernelPair() (kp0, kp1 netlink.Link, err error) {
	if kp0, err = netlink.LinkByName("kp0"); err != nil {
		if err = netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "kp0"}, PeerName: "kp1"}); err != nil {
			return nil, nil, err
		}
		if kp0, err = netlink.LinkByName("kp0"); err != nil {
			return nil, nil, err
		}
	}
	if kp1, err = netlink.LinkByName("kp1"); err == nil {
		err = netlink.LinkSetUp(kp1) // so that kp0 has a carrier and forwards once up
	}
	return kp0, kp1, err
}

// kernelPort is what the bridge costs the kernel when a port joins and
// leaves it, whoever asks: enslaving a veth and bringing it up, taking it
// down and releasing it (each port change makes the bridge recompute
// every port's state). Every bridging front end and anchor pays it.
func kernelPort() contender {
	return contender{key: "kernel/port", run: func(rec func(string, time.Duration)) error {
		kp0, _, err := kernelPair()
		if err != nil {
			return err
		}
		br, err := netlink.LinkByName("br0")
		if err != nil {
			return err
		}
		t0 := time.Now()
		for _, f := range []func() error{
			func() error { return netlink.LinkSetMaster(kp0, br) },
			func() error { return netlink.LinkSetUp(kp0) },
			func() error { return netlink.LinkSetDown(kp0) },
			func() error { return netlink.LinkSetNoMaster(kp0) },
		} {
			if err := f(); err != nil {
				return fmt.Errorf("kernel/port: %w", err)
			}
		}
		rec("kernel/port", time.Since(t0))
		return nil
	}}
}

// kernelRedirect is what a front's redirects cost the kernel: an ingress
// qdisc with a match-all filter and a mirred redirect on each end of a
// veth pair, added and removed (tc, as package front makes them).
func kernelRedirect() contender {
	return contender{key: "kernel/redirect", run: func(rec func(string, time.Duration)) error {
		kp0, kp1, err := kernelPair()
		if err != nil {
			return err
		}
		t0 := time.Now()
		if err := front.Redirect(kp0, kp1); err != nil {
			return err
		}
		if err := front.Redirect(kp1, kp0); err != nil {
			return err
		}
		for _, l := range []netlink.Link{kp0, kp1} {
			q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_INGRESS}}
			if err := netlink.QdiscDel(q); err != nil {
				return fmt.Errorf("kernel/redirect: %w", err)
			}
		}
		rec("kernel/redirect", time.Since(t0))
		return nil
	}}
}

// run runs path with args; env nil means the bench's own environment. A
// failure carries the output.
func run(path string, env []string, stdin []byte, args ...string) error {
	cmd := exec.Command(path, args...)
	cmd.Env = env
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", filepath.Base(path), strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// hook is one VM's life as QEMU runs it with -netdev tap,script=,downscript=:
// QEMU has made the TAP (untimed), runs the up script, later the down
// script, and closes the TAP (QEMU's order: tap_cleanup runs the down
// script before it closes the descriptor).
func hook(key, up, down string, env []string) contender {
	return contender{key: key, run: func(rec func(string, time.Duration)) error {
		f, name, err := tap.Open("hk0", tap.DefaultOptions)
		if err != nil {
			return err
		}
		t0 := time.Now()
		err = run(up, env, nil, name)
		if err == nil {
			err = run(down, env, nil, name)
		}
		f.Close()
		d := time.Since(t0)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		rec(key, d)
		return nil
	}}
}

// helper is one VM's attachment as QEMU makes it with -netdev bridge: a
// socket pair, the helper run with --br=br0 --fd=3, the TAP descriptor
// received, the helper waited for, and (timed too) the TAP closed when the
// VM ends.
func helper(key, path string, env []string) contender {
	return contender{key: key, run: func(rec func(string, time.Duration)) error {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		ours, theirs := os.NewFile(uintptr(fds[0]), "qemu"), os.NewFile(uintptr(fds[1]), "helper")
		defer ours.Close()
		var out bytes.Buffer
		cmd := exec.Command(path, "--br=br0", "--fd=3")
		cmd.Env, cmd.ExtraFiles, cmd.Stdout, cmd.Stderr = env, []*os.File{theirs}, &out, &out
		t0 := time.Now()
		err = cmd.Start()
		theirs.Close()
		if err != nil {
			return err
		}
		tapFD, rerr := testkit.ReceiveFD(fds[0], 0)
		werr := cmd.Wait()
		if tapFD >= 0 {
			unix.Close(tapFD)
		}
		d := time.Since(t0)
		if werr != nil || rerr != nil {
			return fmt.Errorf("%s: %v %v: %s", key, werr, rerr, strings.TrimSpace(out.String()))
		}
		rec(key, d)
		return nil
	}}
}

// inproc attaches and detaches a TAP through vmport in this process: the
// cost of the work itself, without a process start.
func inproc(attachKey, detachKey string, c *config.Conf) contender {
	port := vmport.Port{Name: "ip0", GuestMAC: mustMAC(guestMAC), GuestIPs: []netip.Addr{netip.MustParseAddr(guestIP)}}
	return contender{key: attachKey, run: func(rec func(string, time.Duration)) error {
		f, _, err := tap.Open(port.Name, tap.DefaultOptions)
		if err != nil {
			return err
		}
		defer f.Close()
		t0 := time.Now()
		if err := vmport.Attach(c, port); err != nil {
			return fmt.Errorf("%s: %w", attachKey, err)
		}
		t1 := time.Now()
		if err := vmport.Detach(c, port.Name); err != nil {
			return fmt.Errorf("%s: %w", detachKey, err)
		}
		rec(attachKey, t1.Sub(t0))
		rec(detachKey, time.Since(t1))
		return nil
	}}
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// initTrace runs path with GODEBUG=inittrace=1 and returns the clock time
// of each package's initialisation, in ms.
func initTrace(path string, args ...string) (map[string]float64, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = []string{"GODEBUG=inittrace=1"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	_ = cmd.Run() // --help may exit non-zero in older builds
	res := map[string]float64{}
	for _, line := range strings.Split(out.String(), "\n") {
		// init PKG @0.5 ms, 0.012 ms clock, 312 bytes, 7 allocs
		f := strings.Fields(line)
		if len(f) < 7 || f[0] != "init" || f[6] != "clock," {
			continue
		}
		v, err := strconv.ParseFloat(f[4], 64)
		if err != nil {
			continue
		}
		res[f[1]] += v
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("%s printed no inittrace", path)
	}
	return res, nil
}

// measure runs every contender in alternating rounds at 10 attached VMs
// and at the large scale, the frames/s phase at 10, and the init traces.
func (e *env) measure(r *results) error {
	r.samples = map[int]map[string][]float64{}
	for _, scale := range []int{10, e.o.ports} {
		t0 := time.Now()
		if err := e.grow(scale); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: %d VMs attached (%s)\n", scale, time.Since(t0).Round(time.Millisecond))
		cs, err := e.contenders()
		if err != nil {
			return err
		}
		s := map[string][]float64{}
		r.samples[scale] = s
		rec := func(key string, d time.Duration) { s[key] = append(s[key], float64(d.Nanoseconds())/1e6) }
		if scale == 10 {
			t0 = time.Now()
			if err := alternate(e.startContenders(), 10*e.o.rounds, rec); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "bench: %d rounds of process starts (%s)\n", 10*e.o.rounds, time.Since(t0).Round(time.Millisecond))
		}
		t0 = time.Now()
		if err := alternate(cs, e.o.rounds, rec); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: %d rounds at %d VMs (%s)\n", e.o.rounds, scale, time.Since(t0).Round(time.Millisecond))
		if scale == 10 {
			if err := e.traceInits(r); err != nil {
				return err
			}
			t0 = time.Now()
			if err := e.measureFrames(r); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "bench: frames/s (%s)\n", time.Since(t0).Round(time.Millisecond))
		}
	}
	return nil
}

// alternate runs each contender once untimed (page cache, first-use
// work), then rounds times in turn, the first one rotating each round.
func alternate(cs []contender, rounds int, rec func(string, time.Duration)) error {
	for _, c := range cs {
		if err := c.run(func(string, time.Duration) {}); err != nil {
			return err
		}
	}
	for round := 0; round < rounds; round++ {
		for i := range cs {
			if err := cs[(i+round)%len(cs)].run(rec); err != nil {
				return err
			}
		}
	}
	return nil
}

// traceInits collects package initialisation times of the hook binary
// (and of the earlier build), median per package over several runs.
func (e *env) traceInits(r *results) error {
	r.inits = map[string]map[string][]float64{}
	bins := map[string]string{"after": filepath.Join(e.o.bin, "qemu-ifup"), "tapbridge": filepath.Join(e.o.bin, "tapbridge")}
	if e.o.baseline != "" {
		bins["before"] = filepath.Join(e.o.baseline, "qemu-ifup")
	}
	for i := 0; i < 21; i++ {
		for k, path := range bins {
			arg := "--help"
			if k == "tapbridge" {
				arg = "version"
			}
			t, err := initTrace(path, arg)
			if err != nil {
				return err
			}
			if r.inits[k] == nil {
				r.inits[k] = map[string][]float64{}
			}
			total := 0.0
			for pkg, v := range t {
				r.inits[k][pkg] = append(r.inits[k][pkg], v)
				total += v
			}
			r.inits[k]["(total)"] = append(r.inits[k]["(total)"], total)
			r.inits[k]["(packages)"] = append(r.inits[k]["(packages)"], float64(len(t)))
		}
	}
	return nil
}
