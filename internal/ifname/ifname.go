package ifname

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// MaxLen is the longest interface name the kernel accepts (IFNAMSIZ - 1).
const MaxLen = 15

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid interface name")

// Validate checks name as the kernel would, and says what is wrong with it.
// field names the setting the name came from ("bridge", "uplink", "tap"), so
// the error tells the user which input to fix.
func Validate(field, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s: %w: empty", field, ErrInvalid)
	case len(name) > MaxLen:
		return fmt.Errorf("%s %q: %w: %d bytes, at most %d allowed", field, name, ErrInvalid, len(name), MaxLen)
	case name == "." || name == "..":
		return fmt.Errorf("%s %q: %w: reserved name", field, name, ErrInvalid)
	case strings.ContainsAny(name, "/:"):
		return fmt.Errorf("%s %q: %w: must not contain '/' or ':'", field, name, ErrInvalid)
	case strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0:
		return fmt.Errorf("%s %q: %w: must not contain whitespace or control characters", field, name, ErrInvalid)
	}
	return nil
}
