package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// results is everything measured, in ms (frames in frames/s).
type results struct {
	opts              options
	args              string // the driver's arguments, for the report
	started, finished time.Time
	machine           string
	commit            string
	samples           map[int]map[string][]float64    // scale -> key -> ms
	inits             map[string]map[string][]float64 // binary -> package -> ms
	frames, delivered map[string][]float64            // "frames/cfg/size" -> frames/s, fraction
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// med is the median of key at scale, or 0 when it was not measured.
func (r *results) med(scale int, key string) float64 { return (&medians{r: r}).med(scale, key) }

func (r *results) has(scale int, key string) bool { return len(r.samples[scale][key]) > 0 }

// machine describes the machine: kernel, CPU, cores, load.
func machine() string {
	var u [4]string
	if out, err := exec.Command("uname", "-srm").Output(); err == nil {
		u[0] = strings.TrimSpace(string(out))
	}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				u[1] = strings.TrimSpace(v)
				break
			}
		}
	}
	u[2] = fmt.Sprintf("%d cores", runtime.NumCPU())
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(data))
		if len(f) >= 3 {
			u[3] = "load average " + strings.Join(f[:3], " ") + " at the start"
		}
	}
	if data, err := os.ReadFile("/etc/debian_version"); err == nil {
		u[0] += ", Debian " + strings.TrimSpace(string(data))
	}
	return strings.Join(u[:], "; ") + "; " + runtime.Version()
}

// target is one of issue 13's targets: a ratio and its bound.
type target struct {
	what    string
	ratio   float64
	lo, hi  float64 // the ratio's 90% bootstrap interval
	bound   float64
	atLeast bool // a throughput: the ratio must reach the bound
	detail  string
	ok      bool // measured at all
}

// verdict is "met" or "not met" only when the whole interval is on one
// side of the bound: with the medians alone, two runs ten minutes apart on
// an idle machine gave opposite verdicts for three targets.
func (t target) verdict() string {
	meets := func(x float64) bool { return t.atLeast && x >= t.bound || !t.atLeast && x <= t.bound }
	switch {
	case !t.ok:
		return "not measured"
	case meets(t.lo) && meets(t.hi):
		return "**met**"
	case !meets(t.lo) && !meets(t.hi):
		return "not met"
	}
	return "unclear: the interval spans the bound"
}

func (t target) boundText() string {
	if t.atLeast {
		return fmt.Sprintf("≥ %.2f", t.bound)
	}
	return fmt.Sprintf("≤ %.2f", t.bound)
}

// medians answers medians of the samples: the measured ones, or one
// bootstrap resample of them (each set drawn again with replacement, the
// same draw for a set wherever a ratio uses it).
type medians struct {
	r    *results
	rng  *rand.Rand // nil: the measured samples
	memo map[string]float64
}

func (m *medians) of(id string, v []float64) float64 {
	if m.rng == nil {
		return median(v)
	}
	if x, ok := m.memo[id]; ok {
		return x
	}
	s := make([]float64, len(v))
	for i := range s {
		s[i] = v[m.rng.IntN(len(v))]
	}
	m.memo[id] = median(s)
	return m.memo[id]
}

func (m *medians) med(scale int, key string) float64 {
	return m.of(fmt.Sprintf("%d/%s", scale, key), m.r.samples[scale][key])
}

func (m *medians) frames(key string) float64 { return m.of("frames/"+key, m.r.frames[key]) }

// interval is the 5th and 95th percentile of ratio over 400 bootstrap
// resamples, drawn from a fixed seed so that -render writes the same
// report again.
func (r *results) interval(ratio func(*medians) float64) (lo, hi float64) {
	rng := rand.New(rand.NewPCG(13, 13))
	var rs []float64
	for i := 0; i < 400; i++ {
		x := ratio(&medians{r: r, rng: rng, memo: map[string]float64{}})
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			rs = append(rs, x)
		}
	}
	if len(rs) == 0 {
		return math.NaN(), math.NaN()
	}
	sort.Float64s(rs)
	return rs[len(rs)*5/100], rs[(len(rs)*95-1)/100]
}

func (r *results) targets() []target {
	small, big := 10, r.opts.ports
	var ts []target
	add := func(what string, ratio func(*medians) float64, bound float64, atLeast bool, detail string, ok bool) {
		t := target{what: what, bound: bound, atLeast: atLeast, detail: detail, ok: ok}
		if t.ok {
			t.ratio = ratio(&medians{r: r})
			t.lo, t.hi = r.interval(ratio)
			t.ok = !math.IsNaN(t.ratio) && !math.IsInf(t.ratio, 0) && !math.IsNaN(t.lo)
		}
		ts = append(ts, t)
	}
	quotient := func(scaleA int, a string, scaleB int, b string) func(*medians) float64 {
		return func(m *medians) float64 { return m.med(scaleA, a) / m.med(scaleB, b) }
	}
	add("qemu-ifup + qemu-ifdown, all guards, vs the Debian-style script", quotient(small, "hook/on", small, "hook/shell"), 0.6, false,
		fmt.Sprintf("%.1f ms vs %.1f ms", r.med(small, "hook/on"), r.med(small, "hook/shell")), r.has(small, "hook/on") && r.has(small, "hook/shell"))
	add("bridge helper vs qemu-bridge-helper, 10 VMs", quotient(small, "helper/tb", small, "helper/qemu"), 1.0, false,
		fmt.Sprintf("%.1f ms vs %.1f ms", r.med(small, "helper/tb"), r.med(small, "helper/qemu")), r.has(small, "helper/qemu") && r.has(small, "helper/tb"))
	add(fmt.Sprintf("bridge helper at %d VMs vs at 10", big), quotient(big, "helper/tb", small, "helper/tb"), 1.1, false,
		fmt.Sprintf("%.1f ms vs %.1f ms (qemu-bridge-helper %.2f×)", r.med(big, "helper/tb"), r.med(small, "helper/tb"), r.med(big, "helper/qemu")/r.med(small, "helper/qemu")), r.has(big, "helper/tb") && r.has(small, "helper/tb"))
	add("hook binary start vs /bin/true", quotient(small, "start/ifup", small, "start/true"), 1.5, false,
		fmt.Sprintf("%.2f ms vs %.2f ms (empty Go program %.2f ms)", r.med(small, "start/ifup"), r.med(small, "start/true"), r.med(small, "start/gofloor")), r.has(small, "start/ifup") && r.has(small, "start/true"))
	noop := r.med(small, "cni/noop")
	add("CNI ADD+DEL netns mode, default guards, above the exec floor, vs upstream bridge", func(m *medians) float64 {
		n := m.med(small, "cni/noop")
		return (m.med(small, "cni/tb") - n) / (m.med(small, "cni/bridge") - n)
	}, 0.8, false,
		fmt.Sprintf("%.1f − %.1f ms vs %.1f − %.1f ms", r.med(small, "cni/tb"), noop, r.med(small, "cni/bridge"), noop), r.has(small, "cni/bridge") && r.has(small, "cni/tb"))
	add(fmt.Sprintf("in-process attach, all guards, at %d VMs vs at 10", big), quotient(big, "inproc/attach", small, "inproc/attach"), 1.1, false,
		fmt.Sprintf("%.2f ms vs %.2f ms", r.med(big, "inproc/attach"), r.med(small, "inproc/attach")), r.has(big, "inproc/attach") && r.has(small, "inproc/attach"))
	add(fmt.Sprintf("in-process detach, all guards, at %d VMs vs at 10", big), quotient(big, "inproc/detach", small, "inproc/detach"), 1.1, false,
		fmt.Sprintf("%.2f ms vs %.2f ms", r.med(big, "inproc/detach"), r.med(small, "inproc/detach")), r.has(big, "inproc/detach") && r.has(small, "inproc/detach"))
	for _, size := range frameSizes {
		onK, offK := fmt.Sprintf("frames/on/%d", size), fmt.Sprintf("frames/off/%d", size)
		on, off := median(r.frames[onK]), median(r.frames[offK])
		add(fmt.Sprintf("frames/s through a front with all guards vs without, %d bytes", size), func(m *medians) float64 { return m.frames(onK) / m.frames(offK) }, 0.95, true,
			fmt.Sprintf("%.0f vs %.0f frames/s", on, off), on > 0 && off > 0)
	}
	return ts
}

// groups order the cost tables.
var groups = []struct {
	title string
	keys  []string
	base  string // the anchor the ratio column is against
}{
	{"Hook binary start (process start, `--help`; a phase of its own, 10× the rounds)", []string{"start/true", "start/gofloor", "start/ifup", "start/ifup-before", "start/helper", "start/tapbridge"}, "start/true"},
	{"The kernel's share: link deletions every front end and anchor pays, and what a port and a front's redirects cost it", []string{"kernel/tapclose", "kernel/vethdel", "kernel/port", "kernel/redirect"}, ""},
	{"One VM through `-netdev tap,script=,downscript=` (up script, down script, TAP close)", []string{"hook/shell", "hook/off", "hook/on", "hook/on-before"}, "hook/shell"},
	{"One VM through `-netdev bridge,helper=` (helper run, descriptor received, TAP closed)", []string{"helper/qemu", "helper/tb", "helper/tb-before"}, "helper/qemu"},
	{"CNI ADD + DEL, netns mode, each plugin run directly as a runtime runs it", []string{"cni/noop", "cni/bridge", "cni/tap", "cni/tb", "cni/tb-before"}, "cni/bridge"},
	{"In process: the work of an attach and a detach, without a process start", []string{"inproc/attach-off", "inproc/detach-off", "inproc/attach", "inproc/detach", "inproc/fresh", "inproc/takeover"}, ""},
}

// raw is results as JSON, written next to the report so that it can be
// drawn again (-render) without measuring again.
type raw struct {
	Rounds, Ports, FrameRounds int
	Baseline, Args             string
	Started, Finished          time.Time
	Machine, Commit            string
	Samples                    map[int]map[string][]float64
	Inits                      map[string]map[string][]float64
	Frames, Delivered          map[string][]float64
}

func (r *results) raw() raw {
	return raw{r.opts.rounds, r.opts.ports, r.opts.frames, r.opts.baseline, r.args, r.started, r.finished, r.machine, r.commit, r.samples, r.inits, r.frames, r.delivered}
}

// render reads the raw results of an earlier run and writes the report
// from them.
func render(rawFile, out string) error {
	data, err := os.ReadFile(rawFile)
	if err != nil {
		return err
	}
	var x raw
	if err := json.Unmarshal(data, &x); err != nil {
		return fmt.Errorf("%s: %w", rawFile, err)
	}
	r := &results{
		opts: options{rounds: x.Rounds, ports: x.Ports, frames: x.FrameRounds, baseline: x.Baseline},
		args: x.Args, started: x.Started, finished: x.Finished, machine: x.Machine, commit: x.Commit,
		samples: x.Samples, inits: x.Inits, frames: x.Frames, delivered: x.Delivered,
	}
	return r.write(out)
}

func (r *results) write(out string) error {
	dir := filepath.Dir(out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(r.raw(), "", "\t")
	if err != nil {
		return err
	}
	if err := os.WriteFile(strings.TrimSuffix(out, ".md")+".json", append(data, '\n'), 0o644); err != nil {
		return err
	}
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	small, big := 10, r.opts.ports
	p("# Benchmarks\n\n")
	p("Written by `make bench` (`go run ./test/bench`); do not edit by hand. Every figure is the median of\n")
	p("%d alternating rounds (each contender once per round, the starting point rotated), measured\n", r.opts.rounds)
	p("side by side in one run, so a noisy neighbour slows every contender alike: the ratios hold better\n")
	p("from run to run than absolute times, which move with the machine's load, but not exactly: read\n")
	p("each with its interval.\n\n")
	p("- date: %s to %s\n", r.started.UTC().Format("2006-01-02 15:04:05 UTC"), r.finished.UTC().Format("15:04:05 UTC"))
	p("- machine: %s\n", r.machine)
	p("- commit: %s", r.commit)
	if r.opts.baseline != "" {
		p("; \"before\" rows: the binaries in `%s` (an earlier commit, `-baseline`)", filepath.Base(r.opts.baseline))
	}
	p("\n- command: `make bench`, which runs `go run ./test/bench %s` as root (this run: `%s`)\n", "-bin $(BIN_DIR) -tools $(CNI_TOOLS_DIR) -out docs/benchmarks.md", r.args)
	p("- the host: a hypervisor network namespace whose br0 holds eth0, a veth to a router namespace; \"N VMs\" are N TAPs held open and attached with every guard on (fronts and port policies), as QEMUs would hold them\n\n")

	p("## Targets (issue 13)\n\n")
	p("Each ratio is of medians; beside it, its 90%% interval from 400 bootstrap resamples of the rounds. A verdict is given only when the whole interval is on one side of the bound.\n\n")
	p("| target | ratio | 90%% interval | bound | verdict | figures |\n|---|---|---|---|---|---|\n")
	for _, t := range r.targets() {
		ratio, interval := "–", "–"
		if t.ok {
			ratio, interval = fmt.Sprintf("%.2f", t.ratio), fmt.Sprintf("%.2f–%.2f", t.lo, t.hi)
		}
		p("| %s | %s | %s | %s | %s | %s |\n", t.what, ratio, interval, t.boundText(), t.verdict(), t.detail)
	}
	p("\n")

	r.notes(p)

	for _, g := range groups {
		p("## %s\n\n", g.title)
		header := fmt.Sprintf("| | %d VMs | ratio | %d VMs | ratio | %d / 10 |\n|---|---|---|---|---|---|\n", small, big, big)
		if g.base == "" {
			header = fmt.Sprintf("| | %d VMs | %d VMs | %d / 10 |\n|---|---|---|---|\n", small, big, big)
		}
		p("%s", header)
		for _, k := range g.keys {
			if !r.has(small, k) && !r.has(big, k) {
				continue
			}
			cell := func(scale int) string {
				if !r.has(scale, k) {
					return "–"
				}
				return fmt.Sprintf("%.2f ms", r.med(scale, k))
			}
			ratio := func(scale int) string {
				if !r.has(scale, k) || !r.has(scale, g.base) {
					return "–"
				}
				return fmt.Sprintf("%.2f", r.med(scale, k)/r.med(scale, g.base))
			}
			growth := "–"
			if r.has(small, k) && r.has(big, k) {
				growth = fmt.Sprintf("%.2f", r.med(big, k)/r.med(small, k))
			}
			if g.base == "" {
				p("| %s | %s | %s | %s |\n", labels[k], cell(small), cell(big), growth)
			} else {
				p("| %s | %s | %s | %s | %s | %s |\n", labels[k], cell(small), ratio(small), cell(big), ratio(big), growth)
			}
		}
		if strings.HasPrefix(g.base, "cni/") && r.has(small, "cni/noop") {
			noop := r.med(small, "cni/noop")
			p("\nAbove the exec floor (minus the noop plugin's %.2f ms), at 10 VMs: ", noop)
			var parts []string
			for _, k := range []string{"cni/bridge", "cni/tap", "cni/tb", "cni/tb-before"} {
				if r.has(small, k) {
					parts = append(parts, fmt.Sprintf("%s %.2f ms", labels[k], r.med(small, k)-noop))
				}
			}
			p("%s.\n", strings.Join(parts, "; "))
		}
		p("\n")
	}

	p("## Package initialisation of the hook binary (GODEBUG=inittrace=1)\n\n")
	p("Median over 21 runs of the summed `clock` column of every `init` line, and the packages that take\n")
	p("longest (median ms each); the rest of a start is the kernel's exec and the Go runtime's own set-up\n")
	p("(the empty Go program above).\n\n")
	for _, k := range []string{"after", "before", "tapbridge"} {
		in := r.inits[k]
		if in == nil {
			continue
		}
		name := map[string]string{"after": "bin/qemu-ifup", "before": "bin/qemu-ifup, before", "tapbridge": "bin/tapbridge (CNI plugin and CLI)"}[k]
		type pk struct {
			name string
			ms   float64
		}
		var pkgs []pk
		for n, v := range in {
			if !strings.HasPrefix(n, "(") {
				pkgs = append(pkgs, pk{n, median(v)})
			}
		}
		sort.Slice(pkgs, func(i, j int) bool { // ties by name: -render writes the same report
			return pkgs[i].ms > pkgs[j].ms || pkgs[i].ms == pkgs[j].ms && pkgs[i].name < pkgs[j].name
		})
		var top []string
		for _, x := range pkgs[:min(6, len(pkgs))] {
			top = append(top, fmt.Sprintf("`%s` %.3f", x.name, x.ms))
		}
		p("- %s: %.0f packages with init work, %.2f ms in all; longest: %s\n", name, median(in["(packages)"]), median(in["(total)"]), strings.Join(top, ", "))
	}
	p("\n")

	p("## Frames/s through a port\n\n")
	p("UDP frames from the guest's MAC and address written into a TAP opened as QEMU opens it\n")
	p("(/dev/net/tun, TUNSETIFF), counted at the router's end of the uplink (the floor: at the TAP\n")
	p("itself, on no bridge). Medians of %d alternating rounds; \"delivered\" is the share of the frames\n", r.opts.frames)
	p("written that arrived (the rest were dropped by a full softirq backlog).\n\n")
	p("| configuration | 64 bytes | delivered | vs floor | 1400 bytes | delivered | vs floor |\n|---|---|---|---|---|---|---|\n")
	for _, k := range []string{"frames/floor", "frames/off", "frames/on", "frames/cni"} {
		p("| %s |", labels[k])
		for _, size := range frameSizes {
			fk := fmt.Sprintf("%s/%d", k, size)
			floor := median(r.frames[fmt.Sprintf("frames/floor/%d", size)])
			p(" %.0f | %.0f %% | %.2f |", median(r.frames[fk]), 100*median(r.delivered[fk]), median(r.frames[fk])/floor)
		}
		p("\n")
	}
	p("\n![frames/s per configuration](benchmarks-frames.png)\n\n")
	p("## Cost against attached VMs\n\n![cost vs attached VMs](benchmarks-scale.png)\n")
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		return err
	}
	if err := r.plotScale(filepath.Join(dir, "benchmarks-scale.png")); err != nil {
		return err
	}
	return r.plotFrames(filepath.Join(dir, "benchmarks-frames.png"))
}

// plotScale draws the median cost of each front end and its anchors at 10
// and at the large scale, one panel per front end.
func (r *results) plotScale(file string) error {
	panels := []struct {
		title string
		keys  []string
	}{
		{"-netdev tap, script= (one VM: up, down, close)", []string{"hook/shell", "hook/off", "hook/on", "hook/on-before"}},
		{"-netdev bridge, helper= (attach, close)", []string{"helper/qemu", "helper/tb", "helper/tb-before"}},
		{"CNI ADD + DEL, netns mode", []string{"cni/noop", "cni/bridge", "cni/tap", "cni/tb", "cni/tb-before"}},
		{"in process, and the kernel's share", []string{"inproc/attach", "inproc/detach", "inproc/takeover", "kernel/tapclose", "kernel/vethdel", "kernel/port", "kernel/redirect"}},
	}
	const rows, cols = 2, 2
	plots := make([][]*plot.Plot, rows)
	for i, pn := range panels {
		p := plot.New()
		p.Title.Text = pn.title
		p.X.Label.Text = "VMs attached"
		p.Y.Label.Text = "ms (median)"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min = 0
		p.Legend.Top, p.Legend.Left = true, true
		p.Legend.TextStyle.Font.Size = vg.Points(8)
		var args []any
		for _, k := range pn.keys {
			var pts plotter.XYs
			for _, scale := range []int{10, r.opts.ports} {
				if r.has(scale, k) {
					pts = append(pts, plotter.XY{X: float64(scale), Y: r.med(scale, k)})
				}
			}
			if len(pts) > 0 {
				args = append(args, labels[k], pts)
			}
		}
		if err := plotutil.AddLinePoints(p, args...); err != nil {
			return err
		}
		// room above the lines for the legend
		p.Y.Max *= 1.6
		if plots[i/cols] == nil {
			plots[i/cols] = make([]*plot.Plot, cols)
		}
		plots[i/cols][i%cols] = p
	}
	img := vgimg.New(30*vg.Centimeter, 24*vg.Centimeter)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Centimeter, PadY: vg.Centimeter, PadTop: vg.Millimeter * 3, PadBottom: vg.Millimeter * 3, PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 3}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		for j := range plots[i] {
			plots[i][j].Draw(canvases[i][j])
		}
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// plotFrames draws frames/s per configuration, one group of bars per size.
func (r *results) plotFrames(file string) error {
	p := plot.New()
	p.Title.Text = "frames/s through a port (medians)"
	p.Y.Label.Text = "frames/s"
	keys := []string{"frames/floor", "frames/off", "frames/on", "frames/cni"}
	w := vg.Points(18)
	for i, k := range keys {
		var v plotter.Values
		for _, size := range frameSizes {
			v = append(v, median(r.frames[fmt.Sprintf("%s/%d", k, size)]))
		}
		bars, err := plotter.NewBarChart(v, w)
		if err != nil {
			return err
		}
		bars.Color = plotutil.Color(i)
		bars.LineStyle.Color = color.Black
		bars.Offset = w * vg.Length(float64(i)-float64(len(keys)-1)/2)
		p.Add(bars)
		p.Legend.Add(labels[k], bars)
	}
	p.Legend.Top = true
	var names []string
	for _, size := range frameSizes {
		names = append(names, fmt.Sprintf("%d bytes", size))
	}
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.7, float64(len(frameSizes))-0.3 // the outer bars whole
	p.Y.Min = 0
	p.Y.Max *= 1.35 // room for the legend
	p.Legend.Left = true
	return p.Save(18*vg.Centimeter, 12*vg.Centimeter, file)
}

// notes says, with this run's figures, where each target stands and why.
func (r *results) notes(p func(string, ...any)) {
	small, big := 10, r.opts.ports
	m := func(k string) float64 { return r.med(small, k) }
	p("### Where the targets stand, and why\n\n")
	tapClose, vethDel := m("kernel/tapclose"), m("kernel/vethdel")
	start := m("start/ifup")
	if r.has(small, "hook/shell") && r.has(small, "kernel/tapclose") {
		floor := tapClose + 2*start
		verdict := "≤ 0.6× the script is out of reach while the kernel's own work is that share of the script's time"
		if floor/m("hook/shell") <= 0.6 {
			verdict = "the rest is tapbridge's own work"
		}
		p("- **Hooks.** A VM's end costs the kernel one unregistration whoever does it: closing a TAP on a bridge takes %.1f ms here, deleting a veth pair %.1f ms (RCU grace periods and an RCU barrier, which a loaded host stretches). The shell script pays it once (`ip link del`); qemu-ifdown now pays it once too, for the front and QEMU's TAP together (one device group), where it paid it twice before. With two process starts (%.2f ms each) that alone is %.1f ms, %.2f× the script's %.1f ms, before any attach work (in process %.2f ms for an attach and %.2f ms for a detach with every guard on, the detach mostly waiting for the same grace periods): %s.\n",
			tapClose, vethDel, start, floor, floor/m("hook/shell"), m("hook/shell"), m("inproc/attach"), m("inproc/detach"), verdict)
	}
	before := func(key string, scale int) string {
		if !r.has(scale, key) {
			return ""
		}
		return fmt.Sprintf(" (before: %.1f ms)", r.med(scale, key))
	}
	if r.has(small, "helper/qemu") {
		drop := ""
		if r.has(small, "start/helper") {
			drop = fmt.Sprintf(", the dropping of its privileges (`tapbridge-bridge-helper --help` starts in %.2f ms against qemu-ifup's %.2f ms: keeping CAP_NET_ADMIN only takes one system call per capability for the bounding set, about 40, and each runs on every thread of the Go runtime through AllThreadsSyscall, which stops the world and signals every thread, where C's single thread makes one call)", m("start/helper"), start)
		}
		p("- **Bridge helper.** Both helpers' TAPs are closed by QEMU (%.1f ms of unregistration, the same for both). qemu-bridge-helper then has %.1f ms of its own; tapbridge's adds a Go start (%.2f ms against %.2f ms for /bin/true)%s, the front (taken over and rewired when the TAP name was a vanished VM's, which the kernel's lowest-free tap%%d makes the rule) and the port policy. At %d VMs the kernel's own cost of a TAP grows with the links in the namespace (qemu-bridge-helper %.2f×), and tapbridge's helper grows %.2f× (at 10 VMs it takes %.1f ms%s).\n",
			tapClose, m("helper/qemu")-tapClose, start, m("start/true"), drop, big, r.med(big, "helper/qemu")/m("helper/qemu"), r.med(big, "helper/tb")/m("helper/tb"), m("helper/tb"), strings.TrimSuffix(strings.Replace(before("helper/tb-before", small), " (before:", "; before:", 1), ")"))
	}
	if r.has(small, "inproc/takeover") {
		to, fr := m("inproc/takeover"), m("inproc/fresh")
		why := "rewiring a front costs no more than making one"
		if to > 1.5*fr {
			why = "rewiring costs more than making a front here"
		}
		p("- **Where the helper's own time goes.** In process, right after a TAP's close, an attach that takes over the vanished TAP's front takes %.1f ms, one with a new front %.1f ms: %s.\n", to, fr, why)
	}
	if r.has(small, "start/gofloor") {
		in := r.inits["after"]
		top, topMS := "", 0.0
		for pkg, v := range in {
			if !strings.HasPrefix(pkg, "(") && (median(v) > topMS || median(v) == topMS && pkg < top) {
				top, topMS = pkg, median(v)
			}
		}
		floor := m("start/gofloor") / m("start/true")
		room := fmt.Sprintf("which leaves %.2f ms under 1.5× for all a hook links and runs; qemu-ifup takes %.2f ms more than the empty program", 1.5*m("start/true")-m("start/gofloor"), start-m("start/gofloor"))
		if floor >= 1.5 {
			room = "so no Go hook reaches 1.5× on this machine"
		}
		p("- **Hook start.** An empty Go program starts in %.2f× the time of /bin/true here (the runtime's own set-up: threads, heap, a static binary's pages), %s%s. Its package initialisation is %.2f ms in all over %.0f packages (the longest, `%s`, %.3f ms; below), most of it the first touch of each package's pages. Of tapbridge's own making, libvirt's package-level regular expression was the longest initialiser (about 0.1 ms, with regexp/syntax's tables): a byte loop checks a domain UUID now, and the hook links no regexp; package mac reads a random MAC's six bytes with getrandom(2) instead of crypto/rand, which drops math/big and four more packages from the binary (little initialisation time: crypto/sha256 links the FIPS DRBG and AES packages anyway). What is left is what the hook uses: netlink, nftables, JSON, the libvirt domain XML (encoding/xml), the SHA-256 of the front and MAC names (the FIPS packages initialise with it), and the `internal/godebug` set-up that `time` and `os` bring to every Go program that is more than empty. It links none of the CNI plugin's or the CLI's packages (no pflag, no CNI skel or invoke: only the CNI types its configuration schema shares, and netlinksafe).\n",
			floor, room, before("start/ifup-before", small), median(in["(total)"]), median(in["(packages)"]), top, topMS)
	}
	if r.has(small, "cni/bridge") {
		noop := m("cni/noop")
		p("- **CNI.** Above the exec floor (the noop plugin, %.1f ms for ADD+DEL) tapbridge takes %.1f ms against the upstream bridge plugin's %.1f ms%s. DEL costs %.2f× the upstream plugin's (%.1f ms against %.1f ms), one unregistration each: ours deleting the TAP, the veth peer and the host veth together (one device group) while the port's policy is removed. ADD is where the difference is (%.1f ms against %.1f ms, the noop plugin's %.1f ms): tapbridge's binary is larger and starts slower (%.2f ms against the empty Go program's %.2f ms), and it makes a TAP, a veth pair, four tc objects and the port policy in an nftables commit, where the upstream plugin makes a veth pair. ≤ 0.8× would leave tapbridge less than the unregistration both plugins wait for.\n",
			noop, m("cni/tb")-noop, m("cni/bridge")-noop, before("cni/tb-before", small), m("cni/tb/del")/m("cni/bridge/del"), m("cni/tb/del"), m("cni/bridge/del"), m("cni/tb/add"), m("cni/bridge/add"), m("cni/noop/add"), m("start/tapbridge"), m("start/gofloor"))
	}
	if r.has(big, "inproc/attach") && r.has(big, "kernel/port") {
		g := func(k string) float64 { return r.med(big, k) / m(k) }
		offG, onG := r.med(big, "inproc/attach-off")/m("inproc/attach-off"), g("inproc/attach")
		policy := "what grows is not the policy. It is"
		if offG < 0.8*onG {
			policy = "the policy's share grows too. The rest is"
		}
		p("- **Flat scale.** The port policy is one fixed ruleset with per-port data in sets (a port adds set elements, never a chain the kernel re-validates); an attach with every guard off grows %.2f× at %d VMs, one with every guard on %.2f×, and a detach with every guard on %.2f× (%.1f ms to %.1f ms, while the kernel's deletion of a veth pair alone grows from %.1f ms to %.1f ms): %s the kernel's per-port work, which every bridging front end pays: taking a veth on and off the bridge (enslave, up, down, release) costs the kernel %.2f ms at 10 VMs and %.2f ms at %d (%.2f×; the bridge recomputes every port's state at each port's change, and walks its forwarding database and its list of lower devices), and a front's redirects (two ingress qdiscs with a mirred filter each, added and removed) %.2f ms and %.2f ms (%.2f×; each ingress qdisc is bound to and unbound from the kernel's one list of offload blocks, which it searches). A profile (`perf record -g` of the in-process attach and detach at 1000 and 10 VMs) names the same kernel functions and one more: every unregistration walks the global list of mirred actions (two per front) under a spin lock (mirred_device_event), and deleting a device group walks every link of the namespace twice (rtnl_group_dellink), which saves qemu-ifdown a second unregistration of %.1f ms and costs it about 1 ms at 1000 VMs.\n",
			offG, big, onG, g("inproc/detach"), m("inproc/detach"), r.med(big, "inproc/detach"), vethDel, r.med(big, "kernel/vethdel"), policy, m("kernel/port"), r.med(big, "kernel/port"), big, g("kernel/port"), m("kernel/redirect"), r.med(big, "kernel/redirect"), g("kernel/redirect"), tapClose)
	}
	if on, off := median(r.frames["frames/on/64"]), median(r.frames["frames/off/64"]); on > 0 && off > 0 {
		p("- **Frames/s with guards.** With every guard on a front carries %.2f× (64 bytes) and %.2f× (1400 bytes) the frames of one without a policy: one lookup in a concatenated set answers both spoof checks for the common frame. A guest's frames enter the front's port straight from the TAP (a mirred ingress redirect), without a veth hop.\n",
			on/off, median(r.frames["frames/on/1400"])/median(r.frames["frames/off/1400"]))
	}
	p("\n")
}
