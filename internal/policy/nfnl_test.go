package policy

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// elementMessage is a NEWSETELEM message of a dump with the elements keys,
// each with a comment.
func elementMessage(t *testing.T, flags netlink.HeaderFlags, keys ...string) netlink.Message {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, tableName)
	ae.String(unix.NFTA_SET_ELEM_LIST_SET, setPolicies)
	ae.Nested(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(ae *netlink.AttributeEncoder) error {
		for _, k := range keys {
			ae.Nested(unix.NFTA_LIST_ELEM, func(ae *netlink.AttributeEncoder) error {
				ae.Nested(unix.NFTA_SET_ELEM_KEY, func(ae *netlink.AttributeEncoder) error {
					ae.Bytes(unix.NFTA_DATA_VALUE, ifKey(k))
					return nil
				})
				comment := "guards=dhcp\x00"
				ae.Bytes(unix.NFTA_SET_ELEM_USERDATA, append([]byte{udataComment, byte(len(comment))}, comment...))
				return nil
			})
		}
		return nil
	})
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return netlink.Message{Header: netlink.Header{Flags: flags}, Data: append([]byte{unix.NFPROTO_BRIDGE, 0, 0, 0}, b...)}
}

// TestDumped: a dump is read whole, and one the kernel marks as
// interrupted is an error, never fewer elements (Ports must not make a
// garbage collector think a port has no policy).
func TestDumped(t *testing.T) {
	whole := []netlink.Message{elementMessage(t, netlink.Multi, "tap0", "tap1"), elementMessage(t, netlink.Multi, "tap2")}
	got, err := dumped(setPolicies, whole)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range got {
		if e.Comment != "guards=dhcp" {
			t.Errorf("element %q: comment %q, want %q", e.Key, e.Comment, "guards=dhcp")
		}
		names = append(names, string(e.Key[:4]))
	}
	if diff := cmp.Diff([]string{"tap0", "tap1", "tap2"}, names); diff != "" {
		t.Errorf("dumped (-want +got):\n%s", diff)
	}

	interrupted := []netlink.Message{elementMessage(t, netlink.Multi, "tap0"), elementMessage(t, netlink.Multi|netlink.DumpInterrupted, "tap2")}
	if got, err := dumped(setPolicies, interrupted); !errors.Is(err, errDumpInterrupted) || got != nil {
		t.Errorf("dumped(interrupted) = %v, %v; want nil, errDumpInterrupted", got, err)
	}
}
