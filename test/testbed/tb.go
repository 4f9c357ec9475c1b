package testbed

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// TB is the part of testing.TB the test bed uses: *testing.T and *testing.B
// satisfy it, and so does a Session for programs that are not tests (make
// demo). Everything the test bed creates is released by a function it
// registers with Cleanup.
type TB interface {
	Helper()
	Cleanup(func())
	Failed() bool
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	TempDir() string
}

// Session is a TB for programs that are not tests. Close releases what was
// built, last first; Fatalf logs, closes the session and exits with status
// 1, and so does SIGINT or SIGTERM (with status 130).
//
//	s := testbed.NewSession(os.Stderr)
//	defer s.Close()
//	lan := testbed.NewLAN(s, testbed.LANOptions{DHCP: true})
type Session struct {
	log io.Writer

	sigs chan os.Signal

	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

// NewSession returns a session that logs to w (nil: os.Stderr).
func NewSession(w io.Writer) *Session {
	if w == nil {
		w = os.Stderr
	}
	s := &Session{log: w, sigs: make(chan os.Signal, 1)}
	signal.Notify(s.sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		if sig, ok := <-s.sigs; ok {
			s.Logf("%v: cleaning up", sig)
			s.Close()
			os.Exit(130)
		}
	}()
	return s
}

// Helper does nothing; it is there to satisfy TB.
func (s *Session) Helper() {}

// Cleanup registers f to run on Close, before the functions registered
// earlier.
func (s *Session) Cleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

// Failed reports whether Fatalf was called.
func (s *Session) Failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// Logf writes one line to the session's log.
func (s *Session) Logf(format string, args ...any) {
	fmt.Fprintf(s.log, format+"\n", args...)
}

// Fatalf logs, releases everything the session built and exits with
// status 1.
func (s *Session) Fatalf(format string, args ...any) {
	s.Logf(format, args...)
	s.mu.Lock()
	s.failed = true
	s.mu.Unlock()
	s.Close()
	os.Exit(1)
}

// TempDir returns a new directory that Close removes.
func (s *Session) TempDir() string {
	dir, err := os.MkdirTemp("", "tb-")
	if err != nil {
		s.Fatalf("creating a temporary directory: %v", err)
	}
	s.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Close runs the registered cleanups, last first. It is safe to call more
// than once.
func (s *Session) Close() {
	signal.Stop(s.sigs)
	for {
		s.mu.Lock()
		n := len(s.cleanups)
		if n == 0 {
			s.mu.Unlock()
			return
		}
		f := s.cleanups[n-1]
		s.cleanups = s.cleanups[:n-1]
		s.mu.Unlock()
		f()
	}
}
