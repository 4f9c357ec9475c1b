// Package failpoint lets tests kill a tapbridge process at a named step, to
// prove that a re-run finishes the job from the journal. It does nothing
// unless TAPBRIDGE_FAILPOINT (kill at a step) or TAPBRIDGE_FAILPOINT_TRACE
// (note when each step is passed) is set, which only tests do.
package failpoint
