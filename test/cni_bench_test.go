package e2e

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/test/testbed"
)

// benchScript runs inside the hypervisor namespace: one untimed ADD and
// DEL (on a running host the bridge exists), then, when told to go, N
// rounds of `cnitool add` and `cnitool del`.
const benchScript = `mount --bind "$TB_VARLIB" /var/lib || exit 1
cnitool=$1 netns=$2 n=$3
"$cnitool" add bench "$netns" >/dev/null && "$cnitool" del bench "$netns" || exit 1
echo ready
read go
i=0
while [ $i -lt $n ]; do
	"$cnitool" add bench "$netns" >/dev/null && "$cnitool" del bench "$netns" || exit 1
	i=$((i + 1))
done
`

// BenchmarkCNIAddDel measures one ADD and one DEL through cnitool, as a
// user runs them, on the same machine in the same run (`make bench`):
//
//   - tapbridge: the default configuration, netns mode (veth, TAP,
//     redirects) with the default port policy (DHCP, RA and BPDU guards:
//     nftables rules on the port);
//   - tapbridge-l2: the same with the port policy off, layer 2 only;
//   - upstream-bridge: the upstream bridge plugin, layer 2 only ("ipam":
//     {}: a veth on the bridge).
func BenchmarkCNIAddDel(b *testing.B) {
	for _, bc := range []struct {
		name   string
		plugin map[string]any
	}{
		{"tapbridge", tbPlugin(nil)},
		{"tapbridge-l2", tbPlugin(map[string]any{"dhcpGuard": false, "raGuard": false, "bpduGuard": false})},
		{"upstream-bridge", map[string]any{"type": "bridge", "bridge": "br0", "ipam": map[string]any{}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bed := newCNIBed(b, nil)
			bed.runDir = tmpfsDir(b)
			sb := testbed.NewNetNS(b)
			conf := confListJSON(b, "1.1.0", "bench", bc.plugin)
			if err := os.WriteFile(filepath.Join(bed.confDir, "10-bench.conflist"), conf, 0o644); err != nil {
				b.Fatal(err)
			}
			cmd := bed.hv.Command("sh", "-c", benchScript, "sh", tool("cnitool"), sb.Path, strconv.Itoa(b.N))
			cmd.Env = testbed.Env(
				"PATH="+os.Getenv("PATH"), "TB_VARLIB="+bed.varLib, "NETCONFPATH="+bed.confDir,
				"CNI_PATH="+strings.Join(bed.path, ":"), "TAPBRIDGE_RUN_DIR="+bed.runDir,
			)
			stdin, err := cmd.StdinPipe()
			if err != nil {
				b.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			defer cmd.Wait() //nolint:errcheck // waited for below; this is for the error paths
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil || line != "ready\n" {
				stdin.Close()
				b.Fatalf("warm-up ADD and DEL failed: %v %q\n%s", err, line, stderr.String())
			}
			b.ResetTimer()
			fmt.Fprintln(stdin, "go")
			err = cmd.Wait()
			b.StopTimer()
			if err != nil {
				b.Fatalf("cnitool: %v\n%s", err, stderr.String())
			}
			if links := cniLinks(b, sb); len(links) != 1 {
				b.Errorf("left in the sandbox: %v", links)
			}
		})
	}
}

// tmpfsDir returns a new directory on a tmpfs (/dev/shm), removed by
// Cleanup, or t.TempDir() when there is none: on a real host the plugin's
// state lives in /run/tapbridge, a tmpfs, where its fsyncs cost nothing.
func tmpfsDir(t testing.TB) string {
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp("/dev/shm", "tapbridge-bench-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
