package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/sqlite"
	"github.com/modelslot/modelslot/storetest"
)

func TestStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) func() (modelslot.Store, error) {
		path := filepath.Join(t.TempDir(), "modelslot.db")
		return func() (modelslot.Store, error) { return sqlite.Open(context.Background(), path) }
	})
}
