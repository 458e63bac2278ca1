package alstest

import (
	"fmt"
	"os"
	"testing"

	"go.podman.io/storage/pkg/reexec"
)

// TestMain lets c/storage re-execute the test binary for its helpers, keeps the host's
// storage.conf out of the tests, and removes the alsfuse binary the FUSE tests built.
func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Setenv("CONTAINERS_STORAGE_CONF", "/dev/null")
	code := m.Run()
	if err := CleanupFUSEBinary(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}
