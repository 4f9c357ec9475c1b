package main

import (
	"strings"
	"testing"
)

// TestTargetVerdict: a verdict only when the whole bootstrap interval is on
// one side of the bound; the interval comes out the same every time (a
// fixed seed, so -render rewrites the same report).
func TestTargetVerdict(t *testing.T) {
	spread := func(base float64) []float64 {
		var v []float64
		for i := 0; i < 61; i++ {
			v = append(v, base+float64(i%7)) // base .. base+6
		}
		return v
	}
	r := &results{samples: map[int]map[string][]float64{10: {
		"twice": spread(40), "once": spread(20), "same": spread(20),
	}}}
	ratio := func(a, b string) func(*medians) float64 {
		return func(m *medians) float64 { return m.med(10, a) / m.med(10, b) }
	}
	for _, tc := range []struct {
		a, b    string
		bound   float64
		atLeast bool
		want    string
	}{
		{"twice", "once", 1.0, false, "not met"},
		{"once", "twice", 1.0, false, "met"},
		{"twice", "once", 1.5, true, "met"},
		{"same", "once", 1.0, false, "unclear"},
	} {
		f := ratio(tc.a, tc.b)
		lo, hi := r.interval(f)
		if lo2, hi2 := r.interval(f); lo2 != lo || hi2 != hi {
			t.Errorf("%s/%s: interval %v–%v, then %v–%v", tc.a, tc.b, lo, hi, lo2, hi2)
		}
		tg := target{ratio: f(&medians{r: r}), lo: lo, hi: hi, bound: tc.bound, atLeast: tc.atLeast, ok: true}
		if !(lo <= tg.ratio && tg.ratio <= hi) {
			t.Errorf("%s/%s: ratio %.3f outside its interval %.3f–%.3f", tc.a, tc.b, tg.ratio, lo, hi)
		}
		if got := tg.verdict(); !strings.HasPrefix(strings.Trim(got, "*"), tc.want) {
			t.Errorf("%s/%s against %s%.2f: verdict %q (interval %.3f–%.3f), want %q", tc.a, tc.b, map[bool]string{true: "≥", false: "≤"}[tc.atLeast], tc.bound, got, lo, hi, tc.want)
		}
	}
}
