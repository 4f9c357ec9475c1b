// Package nldump lists links, addresses, routes, rules, neighbours, bridge
// VLANs and tc filters through netlink dumps that are complete or fail.
//
// The kernel flags a dump during which the table changed
// (NLM_F_DUMP_INTR): its result may lack entries. vishvananda/netlink
// returns such a result with netlink.ErrDumpInterrupted, and netlinksafe,
// after a few retries, returns it with a nil error. Neither may drive a
// deletion, a policy removal or a snapshot: an entry missing from a
// partial dump looks exactly like one that is gone. The functions here
// retry and otherwise fail with ErrInterrupted; they never return partial
// data with a nil error.
//
// It never changes anything.
package nldump
