// Package kernel runs tapbridge's privileged tests on a distribution kernel:
// Debian's linux-image-cloud-amd64 (6.1 on Debian 12), booted under QEMU
// with TCG as a throwaway test host. The machines that run `make test`
// have a newer kernel without 802.1Q and bridge VLAN filtering, so without
// this the VLAN code would never run, and a change that needs a kernel
// newer than the ones hosting operators run would pass unnoticed.
//
// # How
//
// TestKernel (run by `make test-kernel`, which sets TAPBRIDGE_TEST_KERNEL=1)
// builds the test binaries of the chosen packages (`go test -c`, static),
// stages them with the source tree (for testdata and ../conf), tapbridge's
// binaries, the CNI tools, iproute2, nft, dnsmasq, kmod, busybox and the
// kernel's network modules into a directory, packs that with cpio(1) into
// an initramfs, and boots the kernel with `-accel tcg -nic none`. The
// guest's /init runs each test binary with -test.v=test2json and writes its
// output to the second serial port (a file on the host); the host turns it
// into test events with `go tool test2json` and re-emits every test of the
// guest as a subtest, TestKernel/<package>/<test>, that fails when it
// failed inside. A package whose run did not finish (a guest crash, a
// panic, the deadline) fails with the end of the guest's console.
//
// Inside the guest TAPBRIDGE_KERNEL_GUEST=1 is set: tests that would boot
// a QEMU guest of their own skip (testbed.CheckGuest says so), since TCG
// inside TCG is far too slow.
//
// # What it must never do
//
// It never touches the host's network: QEMU gets no network device
// (-nic none), and every test runs inside the guest in network namespaces
// it creates, as on the host. It kills only the QEMU it started, by PID,
// and removes its staging directory.
package kernel
