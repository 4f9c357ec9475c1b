package testbed

// The guest's console protocol. Each marker starts a line of the serial
// console:
//
//	TB-WARN reason                         something failed, /init goes on
//	TB-BOOT mac=52:54:00:12:34:56          eth0 exists and is up
//	TB-LEASE ip=192.0.2.123 mac=... router=192.0.2.1 lease=600
//	TB-STATIC ip=198.51.100.2,2001:db8::2  (instead of TB-LEASE, with tb.ip=
//	                                       on the kernel command line: each
//	                                       address /32 or /128, gateways
//	                                       169.254.0.1 and fe80::1 on-link)
//	TB-READY                               httpd serves /www on port 80
//	TB-ERROR reason                        /init gives up (then exits: QEMU
//	                                       exits too, through panic=-1 and
//	                                       -no-reboot)
//
// After TB-READY, /init reads "ID COMMAND" lines from the console and
// answers each with "TB-BEGIN-ID", the command's output and
// "TB-END-ID rc=STATUS" (see Guest.Run).

// initScript is the guest's /init (PID 1).
const initScript = `#!/bin/sh
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /etc/modules); do
	insmod /lib/modules/$m.ko || echo "TB-WARN insmod $m failed"
done
ip link set lo up
i=0
while [ ! -e /sys/class/net/eth0 ]; do
	i=$((i + 1))
	if [ $i -gt 100 ]; then
		echo "TB-ERROR no eth0 after 10s: $(ls /sys/class/net)"
		exit 1
	fi
	usleep 100000
done
mac=$(cat /sys/class/net/eth0/address)
host=tb-$(echo $mac | cut -d: -f4-6 | tr -d :)
hostname $host
ip link set eth0 up
echo "TB-BOOT mac=$mac"
echo "tapbridge test bed guest mac=$mac" >/www/index.html
static=$(sed -n 's/.*tb\.ip=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -z "$static" ]; then
	until udhcpc -f -q -n -i eth0 -t 20 -T 1 -x hostname:$host -s /etc/udhcpc.script; do
		echo "TB-DHCP-RETRY"
	done
else
	echo 0 >/proc/sys/net/ipv6/conf/eth0/accept_dad 2>/dev/null
	v4= v6=
	for a in $(echo $static | tr , ' '); do
		case "$a" in
		*:*) ip -6 addr add $a/128 dev eth0 && v6=1 ;;
		*) ip addr add $a/32 dev eth0 && v4=1 ;;
		esac
	done
	if [ -n "$v4" ]; then
		ip route add 169.254.0.1 dev eth0
		ip route add default via 169.254.0.1 dev eth0 || echo "TB-WARN no default route"
	fi
	if [ -n "$v6" ]; then
		ip -6 route add default via fe80::1 dev eth0 || echo "TB-WARN no IPv6 default route"
	fi
	echo "TB-STATIC ip=$static"
fi
httpd -p 80 -h /www
echo "TB-READY"
stty -echo 2>/dev/null
while :; do
	while read -r id cmd; do
		[ -n "$id" ] || continue
		echo "TB-BEGIN-$id"
		sh -c "$cmd" </dev/null 2>&1
		echo "TB-END-$id rc=$?"
	done
	sleep 1
done
`

// udhcpcScript configures what udhcpc leased and reports it on the console.
const udhcpcScript = `#!/bin/sh
case "$1" in
deconfig)
	ip -4 addr flush dev $interface
	;;
bound|renew)
	ip -4 addr flush dev $interface
	ip addr add $ip/${mask:-24} dev $interface
	gw=${router%% *}
	[ -z "$gw" ] || ip route add default via $gw dev $interface
	echo "TB-LEASE ip=$ip mac=$(cat /sys/class/net/$interface/address) router=$gw lease=$lease"
	;;
esac
exit 0
`
