package policy

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Reading set elements. google/nftables can only dump a whole set, drops
// the errno of a failed request and ignores NLM_F_DUMP_INTR, so the reads
// speak nfnetlink here: one element by its key (NFT_MSG_GETSETELEM without
// NLM_F_DUMP, in the kernel since 4.20: O(1), whatever the set holds), and
// a dump that fails when the kernel says it was interrupted.

// element is one set element as read back.
type element struct {
	Key     []byte
	Comment string
	Packets uint64 // of its counter, when the set has one
}

// NFTNL_UDATA_SET_ELEM_COMMENT: the type of a comment in an element's user
// data (libnftnl's type-length-value encoding).
const udataComment = 0

func elemRequest(set string, flags netlink.HeaderFlags, keys ...[]byte) ([]netlink.Message, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, tableName)
	ae.String(unix.NFTA_SET_ELEM_LIST_SET, set)
	if len(keys) > 0 {
		ae.Nested(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(ae *netlink.AttributeEncoder) error {
			for _, k := range keys {
				ae.Nested(unix.NFTA_LIST_ELEM, func(ae *netlink.AttributeEncoder) error {
					ae.Nested(unix.NFTA_SET_ELEM_KEY, func(ae *netlink.AttributeEncoder) error {
						ae.Bytes(unix.NFTA_DATA_VALUE, k)
						return nil
					})
					return nil
				})
			}
			return nil
		})
	}
	attrs, err := ae.Encode()
	if err != nil {
		return nil, err
	}
	return conn.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM),
			Flags: netlink.Request | flags,
		},
		// struct nfgenmsg: family, version, resource id
		Data: append([]byte{unix.NFPROTO_BRIDGE, unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
}

// getElement reads the element of set with key. found is false when the
// element, the set or the table does not exist (ENOENT).
func getElement(set string, key []byte) (e element, found bool, err error) {
	msgs, err := elemRequest(set, 0, key)
	if errors.Is(err, unix.ENOENT) {
		return element{}, false, nil
	}
	if err != nil {
		return element{}, false, fmt.Errorf("reading element of set %s: %w", set, err)
	}
	for _, m := range msgs {
		els, err := parseElements(m)
		if err != nil {
			return element{}, false, err
		}
		if len(els) > 0 {
			return els[0], true, nil
		}
	}
	return element{}, false, fmt.Errorf("reading element of set %s: no element in the answer", set)
}

// dumpElements lists every element of set; a missing set or table is an
// empty list. A dump the kernel marks as interrupted (the set changed
// while it was read) is an error, never a shorter list.
func dumpElements(set string) ([]element, error) {
	msgs, err := elemRequest(set, netlink.Dump)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing set %s: %w", set, err)
	}
	return dumped(set, msgs)
}

// dumped is the elements of the messages of a dump of set.
func dumped(set string, msgs []netlink.Message) ([]element, error) {
	var all []element
	for _, m := range msgs {
		if m.Header.Flags&netlink.DumpInterrupted != 0 {
			return nil, fmt.Errorf("listing set %s: %w", set, errDumpInterrupted)
		}
		els, err := parseElements(m)
		if err != nil {
			return nil, err
		}
		all = append(all, els...)
	}
	return all, nil
}

var errDumpInterrupted = errors.New("the dump was interrupted by a concurrent change (NLM_F_DUMP_INTR); try again")

func parseElements(m netlink.Message) ([]element, error) {
	if len(m.Data) < 4 {
		return nil, nil
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return nil, err
	}
	var els []element
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		ad.Nested(func(list *netlink.AttributeDecoder) error {
			for list.Next() {
				var e element
				list.Nested(func(d *netlink.AttributeDecoder) error {
					d.ByteOrder = binary.BigEndian
					for d.Next() {
						switch d.Type() {
						case unix.NFTA_SET_ELEM_KEY:
							d.Nested(func(k *netlink.AttributeDecoder) error {
								for k.Next() {
									if k.Type() == unix.NFTA_DATA_VALUE {
										e.Key = k.Bytes()
									}
								}
								return nil
							})
						case unix.NFTA_SET_ELEM_USERDATA:
							e.Comment = udataString(d.Bytes(), udataComment)
						case unix.NFTA_SET_ELEM_EXPR:
							e.Packets = counterPackets(d.Bytes())
						}
					}
					return nil
				})
				els = append(els, e)
			}
			return nil
		})
	}
	return els, ad.Err()
}

// udataString finds a NUL-terminated string of type typ in libnftnl user
// data: one byte type, one byte length, the value.
func udataString(b []byte, typ byte) string {
	for len(b) >= 2 && len(b) >= 2+int(b[1]) {
		v := b[2 : 2+int(b[1])]
		if b[0] == typ {
			for i, c := range v {
				if c == 0 {
					return string(v[:i])
				}
			}
			return string(v)
		}
		b = b[2+int(b[1]):]
	}
	return ""
}

// counterPackets reads the packets of a "counter" expression's dump
// (NFTA_EXPR_NAME, NFTA_EXPR_DATA: NFTA_COUNTER_BYTES, NFTA_COUNTER_PACKETS).
func counterPackets(b []byte) uint64 {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return 0
	}
	ad.ByteOrder = binary.BigEndian
	var n uint64
	for ad.Next() {
		if ad.Type() == unix.NFTA_EXPR_DATA {
			ad.Nested(func(d *netlink.AttributeDecoder) error {
				d.ByteOrder = binary.BigEndian
				for d.Next() {
					if d.Type() == unix.NFTA_COUNTER_PACKETS {
						n = d.Uint64()
					}
				}
				return nil
			})
		}
	}
	return n
}
