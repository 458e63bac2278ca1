package alse2e

import (
	"bytes"
	"io"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// terminal is a pseudo-terminal: copy.Image draws progress bars only on a terminal.
type terminal struct {
	tty    *os.File // The terminal side, for the copy’s ReportWriter.
	master *os.File
	done   chan []byte // What the terminal showed, once tty is closed.
}

func newTerminal(t *testing.T) *terminal {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	require.NoError(t, err)
	fd := int(master.Fd())
	require.NoError(t, unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	require.NoError(t, err)
	tty, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	require.NoError(t, err)
	require.NoError(t, unix.IoctlSetWinsize(int(tty.Fd()), unix.TIOCSWINSZ,
		&unix.Winsize{Row: 50, Col: 200}))
	term := &terminal{tty: tty, master: master, done: make(chan []byte)}
	go func() {
		var buf bytes.Buffer
		_, _ = io.Copy(&buf, master) // Ends with EIO once tty is closed.
		term.done <- buf.Bytes()
	}()
	return term
}

var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// close closes the terminal and returns what it showed, without escape sequences.
func (term *terminal) close(t *testing.T) string {
	require.NoError(t, term.tty.Close())
	out := <-term.done
	require.NoError(t, term.master.Close())
	return ansiEscape.ReplaceAllString(string(out), "")
}
