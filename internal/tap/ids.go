package tap

import "fmt"

// maxID is the largest uid or gid: (uid_t)-1 means "no owner" to the kernel,
// and TUNSETOWNER takes the low 32 bits of what it is given, so 4294967296
// would become uid 0.
const maxID = 1<<32 - 2

// checkIDs refuses an owner or group the kernel would truncate.
func (o Options) checkIDs() error {
	if o.Owner != NoID && (o.Owner < 0 || o.Owner > maxID) {
		return fmt.Errorf("owner %d: not a uid (0 to %d)", o.Owner, maxID)
	}
	if o.Group != NoID && (o.Group < 0 || o.Group > maxID) {
		return fmt.Errorf("group %d: not a gid (0 to %d)", o.Group, maxID)
	}
	return nil
}
