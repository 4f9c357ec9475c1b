package event

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// listen opens a unixgram socket at dir/name, as journald and syslogd do.
func listen(t *testing.T, path string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// receive reads one datagram, or returns nil when none arrives.
func receive(t *testing.T, c *net.UnixConn) []byte {
	t.Helper()
	// Log has returned, so a datagram it sent is queued already: a short
	// deadline only bounds the wait for one that was never sent.
	_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// parseJournal decodes journald's native protocol, both forms.
func parseJournal(t *testing.T, b []byte) map[string]string {
	t.Helper()
	m := map[string]string{}
	for len(b) > 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			t.Fatalf("journal record: unterminated line %q", b)
		}
		line := string(b[:nl])
		b = b[nl+1:]
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
			continue
		}
		n := binary.LittleEndian.Uint64(b[:8])
		m[line] = string(b[8 : 8+n])
		if b[8+n] != '\n' {
			t.Fatalf("journal record: binary field %s not followed by a newline", line)
		}
		b = b[9+n:]
	}
	return m
}

func TestLog(t *testing.T) {
	attach := Event{Action: "attach", Result: OK, Bridge: "br0", Port: "vm1-0", VM: "vm1", MAC: "52:54:00:12:34:56"}
	denied := Event{Action: "attach", Result: Refused, Bridge: "br1", Port: "tap3", Err: errors.New("access denied by acl file /etc/tapbridge/bridge.conf:2 (deny br1)")}
	tests := []struct {
		name            string
		journal, syslog bool
		event           Event
		wantJournal     map[string]string
		wantSyslog      string // a regexp
	}{
		{
			name: "journald", journal: true, syslog: true, event: attach,
			wantJournal: map[string]string{
				"MESSAGE":           `attach port "vm1-0" bridge "br0" vm "vm1" mac 52:54:00:12:34:56: ok`,
				"PRIORITY":          "6",
				"SYSLOG_FACILITY":   "3",
				"SYSLOG_IDENTIFIER": "event.test",
				"TAPBRIDGE_ACTION":  "attach",
				"TAPBRIDGE_RESULT":  "ok",
				"TAPBRIDGE_BRIDGE":  "br0",
				"TAPBRIDGE_PORT":    "vm1-0",
				"TAPBRIDGE_VM":      "vm1",
				"TAPBRIDGE_MAC":     "52:54:00:12:34:56",
			},
		},
		{
			name: "journald refusal", journal: true, event: denied,
			wantJournal: map[string]string{
				"MESSAGE":           `attach port "tap3" bridge "br1": refused: access denied by acl file /etc/tapbridge/bridge.conf:2 (deny br1)`,
				"PRIORITY":          "4",
				"SYSLOG_FACILITY":   "3",
				"SYSLOG_IDENTIFIER": "event.test",
				"TAPBRIDGE_ACTION":  "attach",
				"TAPBRIDGE_RESULT":  "refused",
				"TAPBRIDGE_BRIDGE":  "br1",
				"TAPBRIDGE_PORT":    "tap3",
				"TAPBRIDGE_ERROR":   "access denied by acl file /etc/tapbridge/bridge.conf:2 (deny br1)",
			},
		},
		{
			name: "a value with a newline", journal: true,
			event: Event{Action: "attach", Result: OK, VM: "two\nlines"},
			wantJournal: map[string]string{
				"MESSAGE":           `attach vm "two\nlines": ok`,
				"PRIORITY":          "6",
				"SYSLOG_FACILITY":   "3",
				"SYSLOG_IDENTIFIER": "event.test",
				"TAPBRIDGE_ACTION":  "attach",
				"TAPBRIDGE_RESULT":  "ok",
				"TAPBRIDGE_VM":      "two\nlines",
			},
		},
		{
			name: "syslog when journald is missing", syslog: true, event: denied,
			wantSyslog: `^<28>[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d event\.test\[\d+\]: attach port "tap3" bridge "br1": refused: access denied by acl file /etc/tapbridge/bridge\.conf:2 \(deny br1\) action=attach result=refused bridge=br1 port=tap3 error="access denied by acl file /etc/tapbridge/bridge.conf:2 \(deny br1\)"$`,
		},
		{name: "neither: dropped silently", event: attach},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			jpath, spath := filepath.Join(dir, "journal.socket"), filepath.Join(dir, "log")
			oldJ, oldS := JournalSocket, SyslogSocket
			JournalSocket, SyslogSocket = jpath, spath
			t.Cleanup(func() { JournalSocket, SyslogSocket = oldJ, oldS })
			t.Setenv(EnvJournalSocket, "")
			var jc, sc *net.UnixConn
			if tt.journal {
				jc = listen(t, jpath)
			}
			if tt.syslog {
				sc = listen(t, spath)
			}

			Log(tt.event)

			if jc != nil {
				got := receive(t, jc)
				if got == nil {
					t.Fatal("journald received nothing")
				}
				if diff := cmp.Diff(tt.wantJournal, parseJournal(t, got)); diff != "" {
					t.Errorf("journal record (-want +got):\n%s", diff)
				}
			}
			if sc != nil {
				got := receive(t, sc)
				switch {
				case tt.wantSyslog == "" && got != nil:
					t.Errorf("syslog received %q; journald had it already", got)
				case tt.wantSyslog != "" && !regexp.MustCompile(tt.wantSyslog).Match(got):
					t.Errorf("syslog record %q does not match %q", got, tt.wantSyslog)
				}
			}
		})
	}
}

// A stalled journald does not hold up the operation being logged: records
// beyond its queue are dropped at once, not sent to syslog instead.
func TestLogFullSocket(t *testing.T) {
	dir := t.TempDir()
	old := JournalSocket
	JournalSocket = filepath.Join(dir, "journal.socket")
	t.Cleanup(func() { JournalSocket = old })
	t.Setenv(EnvJournalSocket, "")
	oldS := SyslogSocket
	SyslogSocket = filepath.Join(dir, "log")
	t.Cleanup(func() { SyslogSocket = oldS })
	listen(t, JournalSocket) // never read
	sc := listen(t, SyslogSocket)
	start := time.Now()
	for range 2000 {
		Log(Event{Action: "attach", Result: OK, Detail: strings.Repeat("x", 1000)})
	}
	// A send that waited for journald would never return; 5 s for 2000
	// leaves room for a slow machine, ten times that for the kernel test
	// guest, where TCG runs everything about ten times slower (it took
	// 6.4 s there once, under load).
	limit := 5 * time.Second
	if os.Getenv("TAPBRIDGE_KERNEL_GUEST") != "" {
		limit *= 10
	}
	if d := time.Since(start); d > limit {
		t.Errorf("2000 records to a stalled journald took %v", d)
	}
	if got := receive(t, sc); got != nil {
		t.Errorf("syslog received %q while journald was there", got)
	}
}

// BenchmarkLog is the cost an attach pays for its record, with journald
// there (a reader draining the socket) and with no log daemon at all.
func BenchmarkLog(b *testing.B) {
	e := Event{Action: "attach", Result: OK, Bridge: "br0", Port: "vm1-0", VM: "vm1", MAC: "52:54:00:12:34:56"}
	for _, journald := range []bool{true, false} {
		name := "no-daemon"
		if journald {
			name = "journald"
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			oldJ, oldS := JournalSocket, SyslogSocket
			JournalSocket, SyslogSocket = filepath.Join(dir, "journal.socket"), filepath.Join(dir, "log")
			b.Cleanup(func() { JournalSocket, SyslogSocket = oldJ, oldS })
			if journald {
				c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: JournalSocket, Net: "unixgram"})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { c.Close() })
				go func() {
					buf := make([]byte, 65536)
					for {
						if _, err := c.Read(buf); err != nil {
							return
						}
					}
				}()
			}
			for b.Loop() {
				Log(e)
			}
		})
	}
}
