package alstest

import (
	"fmt"
	"os"
	"testing"
)

// TestMain lets c/storage re-execute the test binary for its helpers, keeps the host's
// storage.conf out of the tests, and removes the alsfuse binary the FUSE tests built.
func TestMain(m *testing.M) {
	if PrepareProcess() {
		return
	}
	code := m.Run()
	if err := CleanupFUSEBinary(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}
