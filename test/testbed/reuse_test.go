package testbed_test

import (
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapbridge/tapbridge/test/testbed"
)

// TestCreateNetNSWithInode deletes a namespace and makes one with its inode
// number, five times, while another goroutine runs `ip netns exec` over
// and over, as parallel tests do: each run makes and frees a mount
// namespace, which leaves single free numbers below the deleted
// namespace's (a network namespace kept to fill such a gap took the
// number for one of its /proc/net entries, and the wait ran out).
func TestCreateNetNSWithInode(t *testing.T) {
	needLAN(t)
	busy := testbed.NewNetNS(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = exec.Command("ip", "netns", "exec", busy.Name, "true").Run()
		}
	})
	defer func() { close(stop); wg.Wait() }()
	reused := 0
	for i := range 5 {
		old, err := testbed.CreateNetNS()
		if err != nil {
			t.Fatal(err)
		}
		ino, err := old.Inode()
		if err != nil {
			t.Fatal(err)
		}
		if err := old.Delete(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		n, err := testbed.CreateNetNSWithInode(ino, 10*time.Second)
		if errors.Is(err, testbed.ErrInodeInUse) {
			// Another process made a namespace the moment the number
			// was free (the end-to-end tests run beside this one).
			t.Logf("round %d: %v", i, err)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := n.Inode()
		if err != nil || got != ino {
			t.Errorf("round %d: the new namespace has inode %d (%v), want %d", i, got, err, ino)
		}
		if out, err := n.Exec("ip", "-o", "link", "show", "lo"); err != nil || !strings.Contains(out, "UP") {
			t.Errorf("round %d: lo in the new namespace: %q, %v; want it up", i, out, err)
		}
		t.Logf("round %d: inode %d again after %v", i, ino, time.Since(start).Round(time.Millisecond))
		reused++
		if err := n.Delete(); err != nil {
			t.Fatal(err)
		}
	}
	if reused == 0 {
		t.Skip("in every round another process took the number first")
	}
}
