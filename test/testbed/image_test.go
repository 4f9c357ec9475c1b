package testbed

import (
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadModule checks that compressed modules come out as they went in.
func TestReadModule(t *testing.T) {
	raw := []byte("\x7fELF not really a module")
	dir := t.TempDir()
	plain := filepath.Join(dir, "m.ko")
	if err := os.WriteFile(plain, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	if err := os.WriteFile(plain+".gz", gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ ext, tool string }{
		{".ko", ""},
		{".ko.gz", ""},
		{".ko.xz", "xz"},
		{".ko.zst", "zstd"},
	} {
		t.Run(tt.ext, func(t *testing.T) {
			path := filepath.Join(dir, "m"+tt.ext)
			if tt.tool != "" {
				if _, err := exec.LookPath(tt.tool); err != nil {
					t.Skipf("%s not installed", tt.tool)
				}
				if out, err := exec.Command(tt.tool, "-kfq", plain).CombinedOutput(); err != nil {
					t.Fatalf("%s: %v: %s", tt.tool, err, out)
				}
			}
			got, err := readModule(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, raw) {
				t.Errorf("readModule(%s) = %q, want %q", path, got, raw)
			}
		})
	}
	if _, err := readModule(filepath.Join(dir, "m.ko.bz2")); err == nil {
		t.Error("readModule(.ko.bz2) returned no error")
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/net/virtio_net.ko":                "virtio_net",
		"kernel/drivers/net/virtio_net.ko.xz":             "virtio_net",
		"kernel/drivers/char/hw_random/virtio-rng.ko.zst": "virtio_rng",
	} {
		if got := moduleName(in); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestInitramfs lists the archive with cpio(1), which must agree with our
// writer about the newc format.
func TestInitramfs(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not installed")
	}
	if _, _, err := findKernel(); err != nil {
		t.Skip(err)
	}
	img := BuildImage(t)
	data, err := os.ReadFile(img.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("cpio", "-it", "--quiet")
	cmd.Stdin = zr
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -it: %v: %s", err, out)
	}
	got := map[string]bool{}
	for _, name := range strings.Fields(string(out)) {
		got[name] = true
	}
	want := []string{"init", "bin/busybox", "bin/sh", "dev/console", "etc/udhcpc.script", "etc/modules", "www"}
	for _, m := range img.Modules {
		want = append(want, "lib/modules/"+m+".ko")
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("initramfs has no %s; it has:\n%s", w, out)
		}
	}
	if len(img.Modules) == 0 || img.Modules[len(img.Modules)-1] != "virtio_net" {
		t.Errorf("modules = %v, want them to end with virtio_net", img.Modules)
	}
}
