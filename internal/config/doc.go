// Package config is the one configuration schema of tapbridge: the CNI
// network configuration of type "tapbridge". The CNI plugin reads it from
// stdin, the QEMU hooks from TAPBRIDGE_CONF (else
// /etc/tapbridge/tapbridge.conf), the CLI from --config; flags override
// file values.
//
// Parsing and validation never touch the kernel; every error names the
// offending field.
package config
