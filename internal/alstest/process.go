package alstest

import (
	"os"

	"github.com/sirupsen/logrus"
	"go.podman.io/storage/pkg/reexec"
)

// PrepareProcess readies a test binary or program that writes into containers-storage, and
// returns true if the process was re-executed to run one of c/storage’s helpers, in which case
// the caller must return at once. It keeps the machine’s storage.conf out, and quiets c/storage’s
// warning on every use and release of a plain directory store, which does not track use.
func PrepareProcess() bool {
	if reexec.Init() {
		return true
	}
	os.Setenv("CONTAINERS_STORAGE_CONF", "/dev/null")
	logrus.SetLevel(logrus.ErrorLevel)
	return false
}
