package event

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The sockets records are sent to. Variables so that tests can point them
// at sockets of their own.
var (
	JournalSocket = "/run/systemd/journal/socket"
	SyslogSocket  = "/dev/log"
)

// EnvJournalSocket names another journald socket, for end-to-end tests of
// the built binaries. It is honoured only when the real user is root, so
// that a setuid bridge helper never sends to a socket its caller chose.
const EnvJournalSocket = "TAPBRIDGE_JOURNAL_SOCKET"

// Results of an action.
const (
	OK        = "ok"        // done, something changed
	Unchanged = "unchanged" // already as asked
	Failed    = "failed"    // tried and failed; rolled back
	Refused   = "refused"   // not attempted: bad input, denied by the ACL, unsafe
)

// Event is one thing tapbridge did, or refused to do.
type Event struct {
	Action string // "attach", "detach", "tap-add", "tap-del", "up", "down", "gc"
	Result string // OK, Unchanged, Failed or Refused
	Bridge string
	Port   string // the TAP or host-side interface
	VM     string // the VM's name or the CNI container ID, when known
	MAC    string // the guest's MAC, when known
	Uplink string
	Detail string // one line for a human, e.g. the ports gc removed
	Err    error
}

// Message is the record's human-readable line, e.g.
// `attach port "vm1-0" to bridge "br0": ok`.
func (e Event) Message() string {
	var b strings.Builder
	b.WriteString(e.Action)
	if e.Port != "" {
		fmt.Fprintf(&b, " port %q", e.Port)
	}
	if e.Uplink != "" {
		fmt.Fprintf(&b, " uplink %q", e.Uplink)
	}
	if e.Bridge != "" {
		fmt.Fprintf(&b, " bridge %q", e.Bridge)
	}
	if e.VM != "" {
		fmt.Fprintf(&b, " vm %q", e.VM)
	}
	if e.MAC != "" {
		fmt.Fprintf(&b, " mac %s", e.MAC)
	}
	fmt.Fprintf(&b, ": %s", e.Result)
	if e.Detail != "" {
		fmt.Fprintf(&b, ": %s", e.Detail)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return oneLine(b.String())
}

// fields are the record's structured fields, in a fixed order, empty ones
// left out.
func (e Event) fields() [][2]string {
	var fs [][2]string
	add := func(k, v string) {
		if v != "" {
			fs = append(fs, [2]string{k, v})
		}
	}
	add("TAPBRIDGE_ACTION", e.Action)
	add("TAPBRIDGE_RESULT", e.Result)
	add("TAPBRIDGE_BRIDGE", e.Bridge)
	add("TAPBRIDGE_PORT", e.Port)
	add("TAPBRIDGE_VM", e.VM)
	add("TAPBRIDGE_MAC", e.MAC)
	add("TAPBRIDGE_UPLINK", e.Uplink)
	if e.Err != nil {
		add("TAPBRIDGE_ERROR", oneLine(e.Err.Error()))
	}
	return fs
}

// priority is the syslog severity: err for a failure, warning for a
// refusal, info otherwise.
func (e Event) priority() int {
	switch e.Result {
	case Failed:
		return 3
	case Refused:
		return 4
	}
	return 6
}

// facility is LOG_DAEMON.
const facility = 3

// Log sends e to journald, else to syslog, else drops it. It never fails
// and never writes to the terminal.
func Log(e Event) {
	ident := identifier()
	journal := JournalSocket
	if p := os.Getenv(EnvJournalSocket); p != "" && os.Getuid() == 0 {
		journal = p
	}
	err := send(journal, journalRecord(e, ident))
	if err == nil || errors.Is(err, unix.EAGAIN) {
		// Sent, or journald is there but its queue is full: the record
		// is dropped rather than the operation delayed, and not sent to
		// /dev/log, which journald usually reads too.
		return
	}
	_ = send(SyslogSocket, syslogRecord(e, ident, time.Now()))
}

// identifier is the program name: tapbridge, qemu-ifup, qemu-ifdown,
// tapbridge-bridge-helper.
func identifier() string {
	if len(os.Args) > 0 && os.Args[0] != "" {
		return filepath.Base(os.Args[0])
	}
	return "tapbridge"
}

// journalRecord encodes e in journald's native protocol: one datagram of
// KEY=VALUE lines; a value holding a newline is sent as KEY, a newline,
// its length as a little-endian uint64, the value and a newline.
func journalRecord(e Event, ident string) []byte {
	var b bytes.Buffer
	put := func(k, v string) {
		if !strings.Contains(v, "\n") {
			fmt.Fprintf(&b, "%s=%s\n", k, v)
			return
		}
		b.WriteString(k)
		b.WriteByte('\n')
		_ = binary.Write(&b, binary.LittleEndian, uint64(len(v)))
		b.WriteString(v)
		b.WriteByte('\n')
	}
	put("MESSAGE", e.Message())
	put("PRIORITY", fmt.Sprint(e.priority()))
	put("SYSLOG_FACILITY", fmt.Sprint(facility))
	put("SYSLOG_IDENTIFIER", ident)
	for _, f := range e.fields() {
		put(f[0], f[1])
	}
	return b.Bytes()
}

// syslogRecord encodes e for a local syslog daemon (RFC 3164): the message
// followed by the fields as key=value, keys in lower case without the
// TAPBRIDGE_ prefix.
func syslogRecord(e Event, ident string, now time.Time) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "<%d>%s %s[%d]: %s", facility*8+e.priority(), now.Format(time.Stamp), ident, os.Getpid(), e.Message())
	for _, f := range e.fields() {
		k := strings.ToLower(strings.TrimPrefix(f[0], "TAPBRIDGE_"))
		v := f[1]
		if strings.ContainsAny(v, " \"=") {
			v = fmt.Sprintf("%q", v)
		}
		fmt.Fprintf(&b, " %s=%s", k, v)
	}
	return []byte(b.String())
}

// send sends msg to the datagram socket at path without blocking: a
// stalled log daemon must not hold up an attach.
func send(path string, msg []byte) error {
	if path == "" {
		return unix.ENOENT
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Sendto(fd, msg, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, &unix.SockaddrUnix{Name: path})
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}
