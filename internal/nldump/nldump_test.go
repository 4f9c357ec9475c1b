package nldump

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapbridge/tapbridge/internal/nstest"
)

// TestRetryNeverReturnsPartialData: a dump interrupted on every attempt
// fails with ErrInterrupted and no data (netlinksafe would return the
// partial data with a nil error); one interrupted a few times and then
// complete is returned; any other error is returned at once.
func TestRetryNeverReturnsPartialData(t *testing.T) {
	partial := []string{"eth0"} // what an interrupted dump returns
	tests := []struct {
		name        string
		interrupted int // attempts interrupted before a complete one
		other       error
		want        []string
		wantErr     error
		wantCalls   int
	}{
		{"complete", 0, nil, []string{"eth0", "tap0"}, nil, 1},
		{"interrupted twice", 2, nil, []string{"eth0", "tap0"}, nil, 3},
		{"always interrupted", 1 << 30, nil, nil, ErrInterrupted, Attempts},
		{"other error", 0, errors.New("boom"), nil, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			got, err := Retry("links", func() ([]string, error) {
				calls++
				if tt.other != nil {
					return partial, tt.other
				}
				if calls <= tt.interrupted {
					return partial, netlink.ErrDumpInterrupted
				}
				return []string{"eth0", "tap0"}, nil
			})
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) || tt.other != nil && !errors.Is(err, tt.other) || tt.wantErr == nil && tt.other == nil && err != nil {
				t.Fatalf("err = %v", err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %v, want %v (never the partial %v)", got, tt.want, partial)
			}
			if calls != tt.wantCalls {
				t.Errorf("%d attempts, want %d", calls, tt.wantCalls)
			}
		})
	}
}

// TestLinkListUnderChurn dumps the links of a namespace while another
// thread adds and deletes links in it as fast as it can: every dump that
// succeeds holds all 100 links that never change; the others fail.
func TestLinkListUnderChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: churns links")
	}
	nstest.Run(t, func() {
		for i := range 100 {
			if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("stable%d", i)}}); err != nil {
				t.Fatal(err)
			}
		}
		// this thread's namespace, which nstest.Run entered
		here := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		var stop atomic.Bool
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = nstest.Do(here, func() error {
				runtime.LockOSThread()
				for i := 0; !stop.Load(); i++ {
					br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("churn%d", i%4)}}
					_ = netlink.LinkAdd(br)
					_ = netlink.LinkDel(br)
				}
				return nil
			})
		}()
		complete, failed, interrupted := 0, 0, 0
		for range 150 {
			if _, err := netlink.LinkList(); errors.Is(err, netlink.ErrDumpInterrupted) {
				interrupted++
			}
			links, err := LinkList()
			if err != nil {
				if !errors.Is(err, ErrInterrupted) {
					t.Fatal(err)
				}
				failed++
				continue
			}
			stable := 0
			for _, l := range links {
				if len(l.Attrs().Name) > 6 && l.Attrs().Name[:6] == "stable" {
					stable++
				}
			}
			if stable != 100 {
				t.Fatalf("a dump returned without error holds %d of the 100 stable links", stable)
			}
			complete++
		}
		stop.Store(true)
		wg.Wait()
		t.Logf("150 dumps under churn: %d complete, %d failed as interrupted; %d raw dumps interrupted", complete, failed, interrupted)
	})
}
