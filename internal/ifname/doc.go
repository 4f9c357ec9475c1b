// Package ifname validates Linux network interface names before anything is
// touched, so that a bad name fails with a clear error instead of a
// half-applied change. It never talks to the kernel.
package ifname
