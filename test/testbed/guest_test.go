package testbed

import (
	"net/netip"
	"testing"
)

// TestLeaseIn: the console arrives a few bytes at a time, so a poll may see
// half a TB-LEASE line; only a whole line counts (CI once read
// 198.51.100.1 out of "TB-LEASE ip=198.51.100.1" while 49 was on its way).
func TestLeaseIn(t *testing.T) {
	full := "udhcpc: started\nTB-LEASE ip=198.51.100.149 mac=52:54:00:45:27:09 router=198.51.100.1 lease=600\n"
	for n := 0; n < len(full); n++ {
		if ip, found, err := leaseIn(full[:n]); found {
			t.Fatalf("after %d of %d bytes: found %v (err %v), want nothing yet", n, len(full), ip, err)
		}
	}
	ip, found, err := leaseIn(full + "TB-READY\n")
	if !found || err != nil || ip != netip.MustParseAddr("198.51.100.149") {
		t.Fatalf("whole line: %v found=%v err=%v, want 198.51.100.149", ip, found, err)
	}
	if _, found, err := leaseIn("TB-LEASE ip=nonsense mac=x\n"); !found || err == nil {
		t.Fatalf("bad address: found=%v err=%v, want found with an error", found, err)
	}
}
