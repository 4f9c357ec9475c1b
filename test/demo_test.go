package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/tapbridge/tapbridge/test/testbed"
)

// TestDemo runs what `make demo` runs, so the demo cannot rot: it must
// finish, say that the VM got its lease and served its page, and clean up.
func TestDemo(t *testing.T) {
	if err := testbed.CheckGuest(); err != nil {
		t.Skip(err)
	}
	t.Parallel()
	cmd := exec.Command("go", "run", "./demo")
	cmd.Env = append(os.Environ(), "TAPBRIDGE_BIN_DIR="+binDir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{"lease granted by the router", "page fetched by the router from the VM's own address", "cleaned up"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the demo did not say %q:\n%s", want, out)
		}
	}
}
