package frames

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// DHCPv4 message types (option 53).
const (
	DHCPDiscover = 1
	DHCPOffer    = 2
	DHCPRequest  = 3
	DHCPAck      = 5
)

// DHCPv4 is a BOOTP/DHCPv4 message: op 1 (client) or 2 (server), with the
// broadcast flag set, message type msgType and the options opts (each
// code, length, value), ended by option 255. sname, the server host name
// field, carries the nonce of a probe (nil leaves it zero).
func DHCPv4(op byte, xid uint32, chaddr net.HardwareAddr, yiaddr, siaddr netip.Addr, msgType byte, sname []byte, opts ...[]byte) []byte {
	m := make([]byte, 236)
	m[0], m[1], m[2] = op, 1, 6 // htype Ethernet, hlen 6
	binary.BigEndian.PutUint32(m[4:], xid)
	binary.BigEndian.PutUint16(m[10:], 0x8000) // broadcast: answer to ff:ff:ff:ff:ff:ff
	if yiaddr.Is4() {
		a := yiaddr.As4()
		copy(m[16:], a[:])
	}
	if siaddr.Is4() {
		a := siaddr.As4()
		copy(m[20:], a[:])
	}
	copy(m[28:44], chaddr)
	copy(m[44:108], sname)
	m = binary.BigEndian.AppendUint32(m, 0x63825363) // magic cookie
	m = append(m, 53, 1, msgType)
	for _, o := range opts {
		m = append(m, o...)
	}
	return append(m, 255)
}

// DHCPDiscoverProbe is the DHCPDISCOVER a booting VM with MAC mac sends:
// from 0.0.0.0:68 to 255.255.255.255:67, broadcast, transaction xid.
func DHCPDiscoverProbe(name string, mac net.HardwareAddr, xid uint32) Probe {
	return DHCPDiscoverProbeFor(name, mac, mac, xid)
}

// DHCPDiscoverProbeFor is DHCPDiscoverProbe from the Ethernet address
// ethSrc for the client chaddr: with another chaddr than its own a VM
// takes a lease for a client that does not exist.
func DHCPDiscoverProbeFor(name string, ethSrc, chaddr net.HardwareAddr, xid uint32) Probe {
	n := NewNonce()
	m := DHCPv4(1, xid, chaddr, netip.Addr{}, netip.Addr{}, DHCPDiscover, n,
		[]byte{55, 3, 1, 3, 6}) // parameter request list: mask, router, DNS
	return Probe{name, n, Ether(BroadcastMAC, ethSrc, EtherIPv4, UDP(Zero4, V4Broadcast, 68, 67, m))}
}

// DHCPOfferProbe is a DHCPOFFER of yiaddr to chaddr from a server with
// serverMAC and serverIP that names itself as the router: what a rogue
// DHCP server in a VM sends. Broadcast, from serverIP:67 to
// 255.255.255.255:68.
func DHCPOfferProbe(name string, serverMAC net.HardwareAddr, serverIP, yiaddr netip.Addr, chaddr net.HardwareAddr, xid uint32) Probe {
	return DHCPOfferProbeFrom(name, serverMAC, serverIP, 67, yiaddr, chaddr, xid)
}

// DHCPOfferProbeFrom is DHCPOfferProbe sent from UDP port sport: clients
// take an offer whatever its source port.
func DHCPOfferProbeFrom(name string, serverMAC net.HardwareAddr, serverIP netip.Addr, sport uint16, yiaddr netip.Addr, chaddr net.HardwareAddr, xid uint32) Probe {
	n := NewNonce()
	s := serverIP.As4()
	m := DHCPv4(2, xid, chaddr, yiaddr, serverIP, DHCPOffer, n,
		append([]byte{54, 4}, s[:]...),  // server identifier
		[]byte{1, 4, 255, 255, 255, 0},  // subnet mask
		append([]byte{3, 4}, s[:]...),   // router: the rogue server itself
		[]byte{51, 4, 0, 0, 0x0e, 0x10}) // lease time 3600 s
	return Probe{name, n, Ether(BroadcastMAC, serverMAC, EtherIPv4, UDP(serverIP, V4Broadcast, sport, 68, m))}
}

// DHCPReply is what ParseDHCPReply found in a frame.
type DHCPReply struct {
	Type   byte       // option 53: DHCPOffer, DHCPAck...
	XID    uint32     // transaction ID
	YIAddr netip.Addr // the address offered
	Server netip.Addr // the IPv4 source of the reply
}

// ParseDHCPReply returns the DHCPv4 server message (UDP 67 -> 68) in an
// untagged Ethernet frame, or false.
func ParseDHCPReply(frame []byte) (DHCPReply, bool) {
	if len(frame) < 14+20+8+240 || binary.BigEndian.Uint16(frame[12:]) != EtherIPv4 {
		return DHCPReply{}, false
	}
	ip := frame[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ip[9] != ProtoUDP || len(ip) < ihl+8+240 {
		return DHCPReply{}, false
	}
	udp := ip[ihl:]
	if binary.BigEndian.Uint16(udp[0:]) != 67 || binary.BigEndian.Uint16(udp[2:]) != 68 {
		return DHCPReply{}, false
	}
	m := udp[8:]
	if m[0] != 2 || binary.BigEndian.Uint32(m[236:]) != 0x63825363 {
		return DHCPReply{}, false
	}
	r := DHCPReply{
		XID:    binary.BigEndian.Uint32(m[4:]),
		YIAddr: netip.AddrFrom4([4]byte(m[16:20])),
		Server: netip.AddrFrom4([4]byte(ip[12:16])),
	}
	for o := m[240:]; len(o) > 0 && o[0] != 255; {
		if o[0] == 0 { // pad
			o = o[1:]
			continue
		}
		if len(o) < 2 || len(o) < 2+int(o[1]) {
			break
		}
		if o[0] == 53 && o[1] == 1 {
			r.Type = o[2]
		}
		o = o[2+int(o[1]):]
	}
	return r, r.Type != 0
}
