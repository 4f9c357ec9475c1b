// Package libvirt is what tapbridge learns from libvirt about a VM: the
// domain XML of the domain a TAP belongs to, its interfaces, and the
// tapbridge settings its operator put in the domain's <metadata>, in
// tapbridge's own XML namespace (Namespace):
//
//	<metadata>
//	  <tapbridge:port xmlns:tapbridge="https://tapbridge.dev/libvirt/1"
//	      mac-spoof-check="yes" ips="192.0.2.50" isolated="yes">
//	    <tapbridge:interface mac="52:54:00:12:34:57" ips="198.51.100.7"/>
//	  </tapbridge:port>
//	</metadata>
//
// libvirt runs an <interface type='ethernet'> script with a cleared
// environment, so qemu-ifup cannot get the guest's MAC from TAPBRIDGE_MAC
// there. Find looks the TAP up instead: in the live XML of running domains
// (libvirt's status directory, by target dev), then in the XML that
// tapbridge's libvirt hook saved when the domain was prepared, by target
// dev or, for a TAP libvirt has not named in the XML yet, by the MAC it gave
// the TAP (the guest's with 0xFE as first byte).
//
// Hook is libvirt's QEMU hook (/etc/libvirt/hooks/qemu.d/tapbridge): it
// saves the domain XML at "prepare", applies the port policy to each
// <interface type='bridge'> on tapbridge's bridge at "start" (the TAP exists
// and is a port, QEMU is not running yet, so no guest frame can pass
// unfiltered) and removes it at "release".
//
// Parsing is strict where tapbridge is concerned: an unknown attribute or
// element in tapbridge's namespace is an error naming the nearest known
// one, never a silently disabled guard. The rest of the domain XML is
// libvirt's, read only as far as tapbridge needs it.
//
// The package reads libvirt's files and never writes them, never talks to
// libvirtd (the hook and the interface script run while libvirtd holds the
// domain's lock: a virsh call would wait for ever), and changes nothing on
// the host but the port policy of the TAPs the domain XML names and its own
// files under the state directory.
package libvirt
