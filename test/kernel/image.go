package kernel

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// FindKernel returns the /boot/vmlinuz-*-cloud-amd64 to boot, whose
// modules are installed, and its version: the oldest kernel series
// installed (6.1 before 6.12: the suite proves the lowest supported
// kernel, and Debian 12 also offers 6.12), its newest build (6.1.0-57
// before 6.1.0-9).
func FindKernel() (path, version string, err error) {
	kernels, _ := filepath.Glob("/boot/vmlinuz-*-cloud-amd64")
	var found []string
	for _, k := range kernels {
		v := strings.TrimPrefix(filepath.Base(k), "vmlinuz-")
		if _, err := os.Stat(filepath.Join("/lib/modules", v, "modules.dep")); err == nil {
			found = append(found, v)
		}
	}
	if len(found) == 0 {
		return "", "", errors.New("no /boot/vmlinuz-*-cloud-amd64 with modules in /lib/modules: install linux-image-cloud-amd64")
	}
	sort.Slice(found, func(i, j int) bool { return kernelLess(found[i], found[j]) })
	v := found[0]
	return filepath.Join("/boot", "vmlinuz-"+v), v, nil
}

// kernelLess orders kernel versions by series (major.minor) ascending,
// then by build (the numbers after it) descending.
func kernelLess(a, b string) bool {
	na, nb := versionNumbers(a), versionNumbers(b)
	for i := 0; i < 2; i++ {
		if na[i] != nb[i] {
			return na[i] < nb[i]
		}
	}
	for i := 2; i < len(na) && i < len(nb); i++ {
		if na[i] != nb[i] {
			return na[i] > nb[i]
		}
	}
	return len(na) > len(nb)
}

// versionNumbers returns the numbers of a kernel version in order:
// "6.1.0-57-cloud-amd64" is 6 1 0 57, "6.12.117+deb12-cloud-amd64" is
// 6 12 117 12.
func versionNumbers(v string) []int {
	nums := []int{0, 0}
	n, in := 0, false
	i := 0
	for _, r := range v + "." {
		if r >= '0' && r <= '9' {
			n, in = n*10+int(r-'0'), true
			continue
		}
		if in {
			if i < 2 {
				nums[i] = n
			} else {
				nums = append(nums, n)
			}
			i++
		}
		n, in = 0, false
	}
	return nums
}

// Programs are the host's programs the guest gets, with their shared
// libraries: the tests run ip, bridge, tc, nft, dnsmasq, nsenter,
// setpriv, setcap, xz and zstd, and the kernel loads modules with kmod's modprobe. A program
// the host lacks is left out (the tests that need it then skip, as they
// would on the host), except the ones in Required.
var Programs = []string{"ip", "bridge", "tc", "nft", "dnsmasq", "kmod", "nsenter", "setpriv", "unshare", "xz", "zstd", "setcap"}

// Required are the Programs without which the guest cannot run the suite.
var Required = map[string]string{"ip": "iproute2", "dnsmasq": "dnsmasq-base", "kmod": "kmod", "nft": "nftables", "depmod": "kmod", "cpio": "cpio"}

// ModuleDirs are the parts of /lib/modules/VERSION/kernel the guest gets,
// with every module they depend on; `depmod` indexes them, so the kernel
// loads what a test needs (802.1Q, bridge, veth, tun, nf_tables and its
// expressions, tc classifiers and actions, bonding, ...) on demand, as on a
// real host. virtio is not needed: the guest has no devices.
var ModuleDirs = []string{"kernel/net", "kernel/drivers/net"}

// BusyboxPath is the static busybox that runs /init and provides the
// commands no Program does (sh, ping, mount, poweroff, ...).
var BusyboxPath = "/bin/busybox"

// Stage is a directory tree that becomes the guest's root file system.
type Stage struct {
	Root string
}

// NewStage makes an empty root file system in dir, with the host's
// merged-/usr layout (/lib -> usr/lib, ...), so a library copied to its
// host path is where the dynamic loader looks for it.
func NewStage(dir string) (*Stage, error) {
	s := &Stage{Root: dir}
	for _, d := range []string{"usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "etc", "proc", "sys", "dev", "run", "tmp", "root", "var/lib", "var/tmp", "var/log", "var/cache", "mnt", "opt", "home", "usr/local/bin", "usr/local/sbin", "busybox"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		return nil, err
	}
	for _, d := range []string{"bin", "sbin", "lib", "lib64"} {
		target, err := os.Readlink("/" + d)
		if err != nil {
			target = "usr/" + d // not merged on the host: merge in the guest
		}
		if err := os.Symlink(target, filepath.Join(dir, d)); err != nil {
			return nil, err
		}
	}
	if err := os.Symlink("/run", filepath.Join(dir, "var", "run")); err != nil {
		return nil, err
	}
	// /dev/console must exist before /init runs, or the kernel starts it
	// without stdin, stdout and stderr.
	if err := syscall.Mknod(filepath.Join(dir, "dev", "console"), syscall.S_IFCHR|0o600, 5<<8|1); err != nil {
		return nil, fmt.Errorf("making /dev/console: %w", err)
	}
	files := map[string]string{
		"etc/passwd":        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":         "root:x:0:\nnogroup:x:65534:\n",
		"etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
		"etc/hosts":         "127.0.0.1 localhost\n::1 localhost\n",
	}
	for name, text := range files {
		if err := s.WriteFile(name, 0o644, []byte(text)); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// path returns where the host file at abs goes in the stage: its directory
// with symlinks resolved on the host, which the stage mirrors.
func (s *Stage) path(abs string) string {
	dir, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		dir = filepath.Dir(abs)
	}
	return filepath.Join(s.Root, dir, filepath.Base(abs))
}

// WriteFile writes data to name (relative to the root).
func (s *Stage) WriteFile(name string, perm os.FileMode, data []byte) error {
	p := filepath.Join(s.Root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, data, perm)
}

// CopyFile copies the host file src (following symlinks) to dst, relative
// to the root; dst "" means src's own path.
func (s *Stage) CopyFile(src, dst string) error {
	to := s.path(src)
	if dst != "" {
		to = filepath.Join(s.Root, dst)
	}
	if _, err := os.Lstat(to); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return out.Close()
}

// CopyTree copies the host directory src to dst (relative to the root),
// leaving out the directories skip names and files bigger than maxSize.
func (s *Stage) CopyTree(src, dst string, skip map[string]bool, maxSize int64) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			if p != src && skip[d.Name()] {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			// Links inside the tree, such as bin/qemu-ifdown -> qemu-ifup.
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return s.Symlink(target, filepath.Join(dst, rel))
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if fi, err := d.Info(); err != nil || fi.Size() > maxSize {
			return err
		}
		return s.CopyFile(p, filepath.Join(dst, rel))
	})
}

// Symlink makes name (relative to the root) a symlink to target, unless
// name exists.
func (s *Stage) Symlink(target, name string) error {
	p := filepath.Join(s.Root, name)
	if _, err := os.Lstat(p); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.Symlink(target, p)
}

// AddProgram copies the host program at path and, recursively, the shared
// libraries and the loader it needs, each to its host path.
func (s *Stage) AddProgram(path string) error {
	if err := s.CopyFile(path, ""); err != nil {
		return err
	}
	return s.addLibs(path, map[string]bool{})
}

// libDirs are where the dynamic loader finds libraries on Debian amd64.
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

func (s *Stage) addLibs(path string, seen map[string]bool) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	var need []string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return fmt.Errorf("reading the interpreter of %s: %w", path, err)
			}
			need = append(need, strings.TrimRight(string(b), "\x00"))
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("reading the libraries of %s: %w", path, err)
	}
	for _, lib := range libs {
		found := ""
		for _, d := range libDirs {
			if _, err := os.Stat(filepath.Join(d, lib)); err == nil {
				found = filepath.Join(d, lib)
				break
			}
		}
		if found == "" {
			return fmt.Errorf("%s needs %s, which is in none of %s", path, lib, strings.Join(libDirs, ", "))
		}
		need = append(need, found)
	}
	for _, lib := range need {
		if seen[lib] {
			continue
		}
		seen[lib] = true
		if err := s.CopyFile(lib, ""); err != nil {
			return err
		}
		if err := s.addLibs(lib, seen); err != nil {
			return err
		}
	}
	return nil
}

// AddBusybox copies the static busybox to /usr/bin/busybox, makes /bin/sh
// point to it, and puts a link for each of its applets into /busybox,
// which comes last in the guest's PATH: a real program of the same name
// wins.
func (s *Stage) AddBusybox() error {
	if err := s.CopyFile(BusyboxPath, "usr/bin/busybox"); err != nil {
		return fmt.Errorf("copying busybox: %w: install busybox-static", err)
	}
	out, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		return fmt.Errorf("listing the busybox applets: %w", err)
	}
	for _, a := range strings.Fields(string(out)) {
		if err := s.Symlink("/usr/bin/busybox", filepath.Join("busybox", a)); err != nil {
			return err
		}
	}
	return s.Symlink("busybox", "usr/bin/sh")
}

// AddModules copies the modules under ModuleDirs of kernel version, with
// everything they depend on, and indexes them with depmod, so the guest's
// modprobe (and the kernel's on-demand loading) finds them.
func (s *Stage) AddModules(version string) error {
	src := filepath.Join("/lib/modules", version)
	deps, err := readDeps(filepath.Join(src, "modules.dep"))
	if err != nil {
		return err
	}
	want := map[string]bool{}
	var add func(string)
	add = func(m string) {
		if want[m] {
			return
		}
		want[m] = true
		for _, d := range deps[m] {
			add(d)
		}
	}
	for m := range deps {
		for _, dir := range ModuleDirs {
			if strings.HasPrefix(m, dir+"/") {
				add(m)
			}
		}
	}
	dst := filepath.Join("lib", "modules", version)
	for m := range want {
		if err := s.CopyFile(filepath.Join(src, m), filepath.Join(dst, m)); err != nil {
			return fmt.Errorf("copying module: %w", err)
		}
	}
	for _, f := range []string{"modules.order", "modules.builtin", "modules.builtin.modinfo"} {
		if err := s.CopyFile(filepath.Join(src, f), filepath.Join(dst, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if out, err := exec.Command("depmod", "-b", s.Root, version).CombinedOutput(); err != nil {
		return fmt.Errorf("depmod for the guest's modules: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// readDeps parses modules.dep into module -> the modules it needs.
func readDeps(path string) (map[string][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the module index: %w", err)
	}
	defer f.Close()
	deps := map[string][]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		m, rest, ok := strings.Cut(sc.Text(), ":")
		if ok {
			deps[m] = strings.Fields(rest)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return deps, nil
}

// Pack writes the stage as an uncompressed cpio (newc) archive to out, with
// cpio(1). Uncompressed, since TCG would take longer to inflate it than
// QEMU takes to load it.
func (s *Stage) Pack(out string) error {
	var list []string
	err := filepath.WalkDir(s.Root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != s.Root {
			rel, _ := filepath.Rel(s.Root, p)
			list = append(list, rel)
		}
		return nil
	})
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command("cpio", "--create", "--format=newc", "--owner=0:0", "--quiet")
	cmd.Dir = s.Root
	cmd.Stdin = strings.NewReader(strings.Join(list, "\n") + "\n")
	cmd.Stdout = f
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("cpio: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return f.Close()
}
