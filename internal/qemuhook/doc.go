// Package qemuhook is the QEMU front end of tapbridge: one binary that is
//
//   - qemu-ifup IFNAME, run by QEMU for -netdev tap,script=... right after it
//     has created the TAP: the TAP goes onto the configured bridge through
//     vmport.Attach (bridge and uplink ensured, bridge MTU, 0xFE MAC, port
//     policy, up);
//   - qemu-ifdown IFNAME, run by QEMU for downscript=...: vmport.Detach,
//     which succeeds when the TAP is already gone;
//   - a qemu-bridge-helper compatible helper (--use-vnet --br=BR --fd=N),
//     run by an unprivileged QEMU for -netdev bridge,helper=...: it checks
//     the bridge ACL, creates a non-persistent TAP, attaches it, and passes
//     its descriptor back to QEMU over the inherited socket (SCM_RIGHTS).
//
// Which one it is follows from the program name (qemu-ifdown,
// tapbridge-bridge-helper) or, for the helper, from its flags.
//
// Every failure is one line on stderr naming the TAP, the bridge and the
// reason (QEMU itself only prints the exit status), a non-zero exit, and
// nothing half-done.
//
// The helper runs setuid root or with the file capability cap_net_admin: it
// keeps CAP_NET_ADMIN only, in every thread, before it does anything else,
// and trusts nothing the invoking user controls: TAPBRIDGE_CONF and
// TAPBRIDGE_RUN_DIR only when they name root's files, per-VM environment
// overrides not at all, ACL files only as far as the invoking user may read
// them (which is what makes per-user include files work, as in
// qemu-bridge-helper). It never creates a bridge other than the configured
// one for an unprivileged caller, and never detaches or deletes a link that
// is not a TAP.
package qemuhook
