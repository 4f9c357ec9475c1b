package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tapbridge/tapbridge/test/testbed"
)

// containerdSetup prepares a mount namespace for containerd and execs it:
// a tmpfs on /run, overlays on /etc and /opt whose changes are discarded
// with the namespace, the example conflist installed as docs/cni.md says,
// tapbridge as /opt/cni/bin/tapbridge. $1 is the test's directory, $2
// tapbridge's bin/, $3 the conflist. containerd's root, state and socket
// are the test's.
const containerdSetup = `set -e
T=$1 BIN=$2 CONF=$3
mount -t tmpfs tmpfs /run
# ip netns exec mounted a fresh /sys; runc needs the cgroup hierarchies.
eval "$TB_CGROUPS"
mount -t tmpfs tmpfs "$T/ovl"
for d in etc opt; do
	mkdir -p "$T/ovl/$d/up" "$T/ovl/$d/work"
	mount -t overlay overlay -o "lowerdir=/$d,upperdir=$T/ovl/$d/up,workdir=$T/ovl/$d/work" "/$d"
done
install -d /etc/cni/net.d /opt/cni/bin
install -m 0644 "$CONF" /etc/cni/net.d/
install -m 0755 "$BIN/tapbridge" /opt/cni/bin/tapbridge
cat >"$T/config.toml" <<EOF
version = 2
root = "$T/root"
state = "$T/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$T/containerd.sock"
EOF
exec containerd --config "$T/config.toml"
`

// ociImage writes an OCI image archive (what `ctr image import` reads) of
// one layer: busybox-static as /bin/busybox with /bin/sh, and /lib and
// /lib64 as links into /usr, which the container gets from the host.
func ociImage(t *testing.T, path, name string) {
	t.Helper()
	bb, err := os.ReadFile(testbed.BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	for _, h := range []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))},
		{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox"},
		{Name: "lib", Typeflag: tar.TypeSymlink, Linkname: "usr/lib"},
		{Name: "lib64", Typeflag: tar.TypeSymlink, Linkname: "usr/lib64"},
		{Name: "usr/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "guest/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "boot/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Name == "bin/busybox" {
			if _, err := tw.Write(bb); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	blobs := map[string][]byte{}
	add := func(data []byte) (string, int) {
		sum := sha256.Sum256(data)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[hex.EncodeToString(sum[:])] = data
		return d, len(data)
	}
	layerDigest, layerSize := add(layer.Bytes())
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Env": []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, "Cmd": []string{"/bin/sh"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
	})
	configDigest, configSize := add(config)
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": configDigest, "size": configSize},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layerDigest, "size": layerSize}},
	})
	manifestDigest, manifestSize := add(manifest)
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"manifests": []any{map[string]any{
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifestDigest, "size": manifestSize,
			"platform":    map[string]any{"architecture": "amd64", "os": "linux"},
			"annotations": map[string]any{"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "1"},
		}},
	})
	var out bytes.Buffer
	tw = tar.NewWriter(&out)
	file := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	file("index.json", index)
	for sum, data := range blobs {
		file("blobs/sha256/"+sum, data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// cgroupMounts returns the shell commands that mount the machine's cgroup
// hierarchies again under a fresh /sys, and the hierarchies' paths as the
// test sees them.
func cgroupMounts(t *testing.T) (script string, paths []string) {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	tmpfs := false
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[1], "/sys/fs/cgroup") {
			continue
		}
		switch f[2] {
		case "cgroup2":
			fmt.Fprintf(&b, "mkdir -p %s && mount -t cgroup2 cgroup2 %s\n", f[1], f[1])
		case "cgroup":
			var opts []string
			for _, o := range strings.Split(f[3], ",") {
				switch o {
				case "rw", "ro", "relatime", "nosuid", "nodev", "noexec":
				default:
					opts = append(opts, o)
				}
			}
			fmt.Fprintf(&b, "mkdir -p %s && mount -t cgroup -o %s cgroup %s\n", f[1], strings.Join(opts, ","), f[1])
		case "tmpfs":
			if f[1] == "/sys/fs/cgroup" {
				tmpfs = true
			}
			continue
		default:
			continue
		}
		paths = append(paths, f[1])
	}
	if tmpfs {
		return "mount -t tmpfs cgroup /sys/fs/cgroup\n" + b.String(), paths
	}
	return b.String(), paths
}

// TestContainerd runs a QEMU guest in a container through `ctr run --cni`
// of Debian's containerd 1.6, with conf/cni/10-tapbridge.conflist installed
// as docs/cni.md says (CNI 1.0.0: containerd 1.6 rejects 1.1.0). The first
// ADD moves the test LAN's eth0 into br0; the guest opens the TAP eth0 in
// the container's namespace, leases its address from the LAN's DHCP server
// and serves a page to the router. ctr never sends DEL: once the container
// is gone, `tapbridge gc` removes the attachment and nothing is left.
func TestContainerd(t *testing.T) {
	needRoot(t)
	if err := testbed.CheckGuest(); err != nil {
		t.Skip(err)
	}
	for _, p := range []string{"containerd", "ctr", "runc"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not found: install the Debian package containerd", p)
		}
	}
	lan := testbed.NewLAN(t, testbed.LANOptions{DHCP: true})
	dir, err := os.MkdirTemp("", "tb-containerd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, d := range []string{"ovl", "guest"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf, err := filepath.Abs("../conf/cni/10-tapbridge.conflist")
	if err != nil {
		t.Fatal(err)
	}
	cgMount, cgPaths := cgroupMounts(t)
	cgroup := fmt.Sprintf("/tapbridge-e2e-%d/vm1", os.Getpid())
	cmd := lan.HV.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", containerdSetup, "sh", dir, binDir, conf)
	cmd.Env = testbed.Env("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TB_CGROUPS="+cgMount)
	d := testbed.StartDaemon(t, "containerd", cmd)
	sock := filepath.Join(dir, "containerd.sock")
	// in runs a command in containerd's namespaces, as the host's root.
	in := func(args ...string) *exec.Cmd {
		return d.Enter(testbed.Env("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"), args...)
	}
	ctr := func(args ...string) (string, error) {
		out, err := in(append([]string{"ctr", "-a", sock, "-n", "tb"}, args...)...).CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
		return string(out), nil
	}
	t.Cleanup(func() {
		// The container's processes are runc's children, not ours: stop
		// them through containerd, then containerd by its PID.
		_, _ = ctr("task", "kill", "-s", "SIGKILL", "vm1")
		_, _ = ctr("task", "delete", "-f", "vm1")
		_, _ = ctr("container", "delete", "vm1")
		// runc removes the container's cgroups, not their parent.
		for _, h := range cgPaths {
			_ = os.Remove(filepath.Join(h, cgroup))
			_ = os.Remove(filepath.Join(h, filepath.Dir(cgroup)))
		}
		d.Stop(t)
	})
	d.WaitReady(t, func() error { _, err := ctr("version"); return err })

	archive := filepath.Join(dir, "busybox.tar")
	ociImage(t, archive, "tb.local/busybox:1")
	if out, err := ctr("image", "import", archive); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	img := testbed.BuildImage(t)
	initrd := filepath.Join(dir, "guest", "initramfs.cpio.gz")
	data, err := os.ReadFile(img.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(initrd, data, 0o644); err != nil {
		t.Fatal(err)
	}
	mac, err := testbed.RandomMAC()
	if err != nil {
		t.Fatal(err)
	}
	// Detached, as a runtime keeps a VM running: ctr then never sends
	// DEL (a foreground ctr run sends one when it exits, unless it is
	// killed first).
	consoleLog := filepath.Join(dir, "console.log")
	out, err := ctr("run", "-d", "--cni", "--privileged", "--cgroup", cgroup, "--log-uri", "file://"+consoleLog,
		"--mount", "type=bind,src=/usr,dst=/usr,options=rbind:ro",
		"--mount", "type=bind,src=/boot,dst=/boot,options=rbind:ro",
		"--mount", "type=bind,src="+filepath.Join(dir, "guest")+",dst=/guest,options=rbind:ro",
		"tb.local/busybox:1", "vm1",
		"/usr/bin/qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nodefaults", "-no-user-config",
		"-nographic", "-serial", "stdio", "-monitor", "none", "-no-reboot",
		"-kernel", img.Kernel, "-initrd", "/guest/initramfs.cpio.gz", "-append", "console=ttyS0 quiet panic=-1",
		"-netdev", "tap,id=n0,ifname=eth0,script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac="+mac+",romfile=")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			data, _ := os.ReadFile(consoleLog)
			t.Logf("the guest's console:\n%s", data)
		}
	})

	lease, err := lan.DHCPServers()[0].WaitLease(mac, 120*time.Second)
	if err != nil {
		t.Fatalf("no lease for the guest in the container (%s): %v", mac, err)
	}
	if err := waitFile(consoleLog, "TB-READY", 60*time.Second); err != nil {
		t.Fatal(err)
	}
	page, err := lan.Router.Fetch("http://" + lease.IP.String() + "/")
	if err != nil || !strings.Contains(page, "mac="+mac) {
		t.Errorf("GET from the guest: %v %q", err, page)
	}
	if out := lan.HV.MustExec(t, "ip", "-o", "link", "show", "eth0"); !strings.Contains(out, "master br0") {
		t.Errorf("eth0 is not a port of br0 after the first ADD:\n%s", out)
	}
	records, _ := filepath.Glob(d.Root("/run/tapbridge/cni/tapbridge/*"))
	if len(records) != 1 || !strings.HasSuffix(records[0], "/tb-vm1:eth0") {
		t.Errorf("CNI records while the container runs: %v; want tb-vm1:eth0 (ctr's ID is NAMESPACE-CONTAINER)", records)
	}

	// The container goes; ctr sends no DEL.
	if out, err := ctr("task", "delete", "-f", "vm1"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := ctr("container", "delete", "vm1"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if p := portPolicies(t, lan.HV); len(p) != 1 || !strings.HasPrefix(p[0], "tb") {
		t.Errorf("port policies after the container is gone, before gc: %v; want the attachment's, left by ctr", p)
	}
	gcOut, err := in("/opt/cni/bin/tapbridge", "gc").CombinedOutput()
	if err != nil || !strings.Contains(string(gcOut), "removed 1 CNI attachments whose sandbox is gone: tapbridge/tb-vm1:eth0") {
		t.Errorf("tapbridge gc: %v\n%s", err, gcOut)
	}
	if diff := cmp.Diff([]string{"br0 bridge", "eth0 veth master=br0", "lo device"}, cniLinks(t, lan.HV)); diff != "" {
		t.Errorf("links after tapbridge gc (-want +got):\n%s", diff)
	}
	if p := portPolicies(t, lan.HV); len(p) != 0 {
		t.Errorf("port policies after tapbridge gc: %v", p)
	}
	if records, _ := filepath.Glob(d.Root("/run/tapbridge/cni/tapbridge/*")); len(records) != 0 {
		t.Errorf("CNI records after tapbridge gc: %v", records)
	}
}
