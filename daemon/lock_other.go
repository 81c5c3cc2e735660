//go:build !unix

package daemon

import (
	"errors"
	"os"
)

var errLocked = errors.New("locked by another process")

// lockExclusive is a no-op where flock does not exist: two daemons on one
// data directory are not detected there.
func lockExclusive(*os.File) error { return nil }
