package kernel

import (
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestParse: the result port's output splits into packages at the markers;
// a package without its exit marker (the guest died in it) is not Finished,
// and a run without "@@@ done" is not done.
func TestParse(t *testing.T) {
	out := "@@@ kernel 6.1.0-57-cloud-amd64 cpus 2\n" +
		"@@@ start example.com/a\n" +
		"\x16=== RUN   TestA\n" +
		"\x16--- PASS: TestA (0.01s)\n" +
		"\x16PASS\n" +
		"\n@@@ exit example.com/a 0 3\n" +
		"@@@ start example.com/b\n" +
		"\x16=== RUN   TestB\n" +
		"half a line"
	rs, kernel, done := Parse([]byte(out))
	if kernel != "6.1.0-57-cloud-amd64 cpus 2" {
		t.Errorf("kernel = %q, want %q", kernel, "6.1.0-57-cloud-amd64 cpus 2")
	}
	if done {
		t.Errorf("done = true for a run without @@@ done")
	}
	type summary struct {
		ImportPath    string
		Output        string
		Finished      bool
		Exit, Seconds int
	}
	var got []summary
	for _, r := range rs {
		got = append(got, summary{r.ImportPath, string(r.Output), r.Finished, r.Exit, r.Seconds})
	}
	want := []summary{
		{"example.com/a", "\x16=== RUN   TestA\n\x16--- PASS: TestA (0.01s)\n\x16PASS\n\n", true, 0, 3},
		{"example.com/b", "\x16=== RUN   TestB\nhalf a line", false, 0, 0},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Parse (-want +got):\n%s", d)
	}
	if _, _, done := Parse([]byte(out + "\n@@@ exit example.com/b 2 9\n@@@ done\n")); !done {
		t.Errorf("done = false for a run that ends with @@@ done")
	}
}

// TestBuildTree: events arrange into tests and subtests, also when a
// subtest's own name holds a "/"; the verdict and output go to their test.
func TestBuildTree(t *testing.T) {
	evs := []Event{
		{Action: "run", Test: "TestA"},
		{Action: "run", Test: "TestA/a/b"}, // t.Run("a/b", ...)
		{Action: "output", Test: "TestA/a/b", Output: "    x_test.go:1: skipped because\n"},
		{Action: "skip", Test: "TestA/a/b"},
		{Action: "run", Test: "TestA/c"},
		{Action: "run", Test: "TestA/c/d"},
		{Action: "fail", Test: "TestA/c/d"},
		{Action: "fail", Test: "TestA/c"},
		{Action: "fail", Test: "TestA"},
		{Action: "run", Test: "TestB"},
		{Action: "output", Output: "FAIL\n"},
	}
	var show func(n *node, indent string) string
	show = func(n *node, indent string) string {
		s := indent + n.name + " " + n.action + " " + strings.Join(n.output, "") + "\n"
		for _, c := range n.children {
			s += show(c, indent+"  ")
		}
		return s
	}
	got := show(buildTree(evs), "")
	want := "  FAIL\n\n" +
		"  TestA fail \n" +
		"    a/b skip     x_test.go:1: skipped because\n\n" +
		"    c fail \n" +
		"      d fail \n" +
		"  TestB  \n"
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("buildTree (-want +got):\n%s", d)
	}
}

// TestSplit: with two guests the end-to-end package runs alone in one and
// the rest in the other; a guest with nothing to run is left out.
func TestSplit(t *testing.T) {
	a, e2e, b := Package{Rel: "internal/a"}, Package{Rel: Heavy}, Package{Rel: "test/testbed"}
	for _, c := range []struct {
		pkgs []Package
		n    int
		want [][]Package
	}{
		{[]Package{a, e2e, b}, 1, [][]Package{{a, e2e, b}}},
		{[]Package{a, e2e, b}, 2, [][]Package{{e2e}, {a, b}}},
		{[]Package{a, b}, 2, [][]Package{{a, b}}},
		{[]Package{e2e}, 2, [][]Package{{e2e}}},
	} {
		if d := cmp.Diff(c.want, Split(c.pkgs, c.n)); d != "" {
			t.Errorf("Split(%v, %d) (-want +got):\n%s", c.pkgs, c.n, d)
		}
	}
}

// TestKernelOrder: the suite boots the oldest series installed, its
// newest build.
func TestKernelOrder(t *testing.T) {
	vs := []string{"6.12.117+deb12-cloud-amd64", "6.1.0-9-cloud-amd64", "6.1.0-57-cloud-amd64", "6.12.100+deb12-cloud-amd64"}
	sort.Slice(vs, func(i, j int) bool { return kernelLess(vs[i], vs[j]) })
	want := []string{"6.1.0-57-cloud-amd64", "6.1.0-9-cloud-amd64", "6.12.117+deb12-cloud-amd64", "6.12.100+deb12-cloud-amd64"}
	if d := cmp.Diff(want, vs); d != "" {
		t.Errorf("kernel order (-want +got):\n%s", d)
	}
}
