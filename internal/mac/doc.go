// Package mac makes MAC addresses for VMs and their host-side ports:
// locally administered unicast addresses, random or derived stably from a
// name so a VM keeps its DHCP lease (and with it its public IP) across
// restarts. It never touches the kernel.
package mac
