package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// cniKeys are the keys of a network configuration that belong to CNI, not
// to tapbridge: the spec's own (prevResult and runtimeConfig are added by
// the runtime; "args" carries runtime-specific arguments), and anything
// under the spec's reserved "cni.dev/" prefix (valid-attachments, for GC).
var cniKeys = []string{"cniVersion", "name", "type", "capabilities", "ipam", "dns", "args", "runtimeConfig", "prevResult"}

// Keys returns every key a tapbridge configuration may hold, sorted: the
// JSON names of Conf's fields and cniKeys.
func Keys() []string {
	seen := map[string]bool{}
	for _, k := range cniKeys {
		seen[k] = true
	}
	t := reflect.TypeOf(Conf{})
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			seen[name] = true
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkKeys refuses a key that is not a tapbridge or CNI key. Go's JSON
// decoder would ignore it, and match a key that differs only in case: a
// misspelled guard ("macSpoofChek", "isolate") would then silently be off.
func checkKeys(data []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil // Parse reports the syntax error
	}
	known := Keys()
	isKnown := map[string]bool{}
	for _, k := range known {
		isKnown[k] = true
	}
	var unknown []string
	for k := range m {
		if !isKnown[k] && !strings.HasPrefix(k, "cni.dev/") {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	msg := fmt.Sprintf("unknown key; did you mean %q?", Nearest(unknown[0], known))
	for _, k := range unknown[1:] {
		msg += fmt.Sprintf(" (also %q: did you mean %q?)", k, Nearest(k, known))
	}
	return fieldErr(unknown[0], "%s", msg)
}

// Nearest returns the candidate closest to s: the fewest single-character
// edits, ignoring case; ties go to the first in candidates.
func Nearest(s string, candidates []string) string {
	best, bestD := "", -1
	for _, c := range candidates {
		if d := distance(strings.ToLower(s), strings.ToLower(c)); bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
