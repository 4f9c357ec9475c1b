package testbed

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/tapbridge/tapbridge/test/kernel"
)

// GuestModules are the kernel modules the guest loads, in this order; the
// ones built into the kernel, or absent, are skipped.
var GuestModules = []string{
	"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
	"virtio_pci", "failover", "net_failover", "virtio_net",
}

// BusyboxPath is the busybox the guest runs; it must be statically linked
// (Debian's busybox-static).
var BusyboxPath = "/bin/busybox"

// Image is what QEMU boots: the host's cloud kernel and an initramfs built
// from busybox and that kernel's virtio modules.
type Image struct {
	Kernel        string // /boot/vmlinuz-VERSION
	Initrd        string // gzip-compressed cpio (newc) archive
	KernelVersion string
	Modules       []string // the modules /init loads, in order
}

// image is built once per process and then only written out.
var image struct {
	once    sync.Once
	kernel  string
	version string
	modules []string
	initrd  []byte
	err     error
}

// BuildImage writes the guest image's initramfs into a directory of t's; the
// archive itself is built once per process (in about 0.1 s) and kept in
// memory, so nothing outlives the test.
func BuildImage(t TB) *Image {
	t.Helper()
	img, err := WriteImage(t.TempDir())
	if err != nil {
		t.Fatalf("%v", err)
	}
	return img
}

// WriteImage is BuildImage into dir, without a TB.
func WriteImage(dir string) (*Image, error) {
	image.once.Do(func() {
		image.kernel, image.version, image.err = findKernel()
		if image.err == nil {
			image.initrd, image.modules, image.err = buildInitramfs(image.version)
		}
	})
	if image.err != nil {
		return nil, image.err
	}
	initrd := filepath.Join(dir, "initramfs.cpio.gz")
	if err := os.WriteFile(initrd, image.initrd, 0o644); err != nil {
		return nil, fmt.Errorf("writing the guest initramfs: %w", err)
	}
	return &Image{
		Kernel:        image.kernel,
		Initrd:        initrd,
		KernelVersion: image.version,
		Modules:       image.modules,
	}, nil
}

// findKernel returns the kernel the guests boot: the one the kernel suite
// boots (test/kernel.FindKernel), so that one rule picks it.
func findKernel() (path, version string, err error) {
	return kernel.FindKernel()
}

// buildInitramfs returns the gzip-compressed archive and the modules in it.
func buildInitramfs(kver string) ([]byte, []string, error) {
	bb, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, nil, fmt.Errorf("reading busybox: %w: install busybox-static", err)
	}
	if err := checkStatic(BusyboxPath); err != nil {
		return nil, nil, err
	}
	mods, err := guestModules(kver)
	if err != nil {
		return nil, nil, err
	}

	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	w := newCPIOWriter(zw)
	for _, d := range []string{"bin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "tmp", "www"} {
		w.dir(d)
	}
	w.charDev("dev/console", 0o600, 5, 1)
	w.charDev("dev/null", 0o666, 1, 3)
	w.file("bin/busybox", 0o755, bb)
	w.symlink("bin/sh", "busybox")
	w.file("init", 0o755, []byte(initScript))
	w.file("etc/udhcpc.script", 0o755, []byte(udhcpcScript))
	var names []string
	for _, m := range mods {
		w.file("lib/modules/"+m.name+".ko", 0o644, m.data)
		names = append(names, m.name)
	}
	w.file("etc/modules", 0o644, []byte(strings.Join(names, "\n")+"\n"))
	if err := w.close(); err != nil {
		return nil, nil, fmt.Errorf("writing the guest initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, nil, fmt.Errorf("compressing the guest initramfs: %w", err)
	}
	return out.Bytes(), names, nil
}

// checkStatic fails for a dynamically linked program, which could not run
// in an initramfs without its libraries.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: install busybox-static", path)
		}
	}
	return nil
}

type module struct {
	name string
	data []byte
}

// guestModules reads GuestModules from /lib/modules/kver, uncompressed. A
// module that is built in, or missing, is left out: the guest fails later,
// with its console output, if the NIC then does not appear.
func guestModules(kver string) ([]module, error) {
	dir := filepath.Join("/lib/modules", kver)
	paths, err := moduleIndex(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	var mods []module
	for _, name := range GuestModules {
		rel, ok := paths[name]
		if !ok {
			continue
		}
		data, err := readModule(filepath.Join(dir, rel))
		if err != nil {
			return nil, err
		}
		mods = append(mods, module{name, data})
	}
	return mods, nil
}

// moduleIndex maps module names (with "_", as the kernel spells them) to
// their paths relative to the modules directory.
func moduleIndex(depFile string) (map[string]string, error) {
	f, err := os.Open(depFile)
	if err != nil {
		return nil, fmt.Errorf("reading the module index: %w", err)
	}
	defer f.Close()
	idx := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		rel, _, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		idx[moduleName(rel)] = rel
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", depFile, err)
	}
	return idx, nil
}

// moduleName turns "kernel/drivers/net/virtio_net.ko.xz" into "virtio_net".
func moduleName(path string) string {
	name := filepath.Base(path)
	if i := strings.Index(name, ".ko"); i >= 0 {
		name = name[:i]
	}
	return strings.ReplaceAll(name, "-", "_")
}

// readModule returns a module file uncompressed: busybox insmod cannot load
// .ko.xz or .ko.zst itself. gzip is done in Go, xz and zstd by their tools.
func readModule(path string) ([]byte, error) {
	switch {
	case strings.HasSuffix(path, ".ko"):
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading module: %w", err)
		}
		return data, nil
	case strings.HasSuffix(path, ".ko.gz"):
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("reading module: %w", err)
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("decompressing %s: %w", path, err)
		}
		data, err := io.ReadAll(zr)
		if err != nil {
			return nil, fmt.Errorf("decompressing %s: %w", path, err)
		}
		return data, nil
	case strings.HasSuffix(path, ".ko.xz"):
		return decompress(path, "xz")
	case strings.HasSuffix(path, ".ko.zst"):
		return decompress(path, "zstd")
	}
	return nil, fmt.Errorf("reading module %s: unknown compression", path)
}

// decompress runs `tool -dc path`.
func decompress(path, tool string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(tool, "-dc", path)
	cmd.Stderr = &stderr
	data, err := cmd.Output()
	if err != nil {
		return nil, withOutput(fmt.Sprintf("decompressing %s with %s", path, tool), err, stderr.Bytes())
	}
	return data, nil
}

// cpioWriter writes a cpio archive in the "newc" format the kernel unpacks
// into its initramfs. Errors stick: close reports the first one.
type cpioWriter struct {
	w   io.Writer
	n   int64 // bytes written, for padding
	ino uint32
	err error
}

func newCPIOWriter(w io.Writer) *cpioWriter { return &cpioWriter{w: w, ino: 1} }

const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeLink = 0o120000
	modeChar = 0o020000
)

func (c *cpioWriter) dir(name string)                         { c.entry(name, modeDir|0o755, 0, 0, nil) }
func (c *cpioWriter) file(name string, perm uint32, b []byte) { c.entry(name, modeFile|perm, 0, 0, b) }
func (c *cpioWriter) symlink(name, target string) {
	c.entry(name, modeLink|0o777, 0, 0, []byte(target))
}
func (c *cpioWriter) charDev(name string, perm, major, minor uint32) {
	c.entry(name, modeChar|perm, major, minor, nil)
}

func (c *cpioWriter) entry(name string, mode, rmajor, rminor uint32, data []byte) {
	nlink := uint32(1)
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	// ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor
	// rdevminor namesize check: 13 fields of 8 hex digits.
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmajor, rminor, len(name)+1, 0)
	c.ino++
	c.write([]byte(hdr))
	c.write([]byte(name + "\x00"))
	c.pad()
	c.write(data)
	c.pad()
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
}

// pad aligns to 4 bytes.
func (c *cpioWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// close writes the trailer.
func (c *cpioWriter) close() error {
	c.ino = 0
	c.entry("TRAILER!!!", 0, 0, 0, nil)
	return c.err
}
