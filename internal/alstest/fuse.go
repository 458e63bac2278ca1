package alstest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// FUSEStore is a directory Additional Layer Store served through FUSE by the alsfuse program
// (internal/alsfuse, a module of its own so that this module does not depend on go-fuse). It
// mirrors Backing read-only at Mount, counts every request and c/storage's use and release
// notifications, and fails or delays requests on command. Configure Mount, not Backing, as the
// store. Close it when done: it is a real mount.
type FUSEStore struct {
	// Backing is the directory the store serves, absolute. Nothing is cached: a change to its
	// contents shows through Mount at once.
	Backing string
	// Mount is where the store is mounted, absolute and free of symlinks.
	Mount string

	dir      string // a temporary directory holding Mount and the control socket
	cmd      *exec.Cmd
	lifeline *os.File // the write end of the pipe whose closing stops alsfuse
	client   *http.Client
	output   *tailBuffer // the last output of alsfuse, for error messages
	exited   chan struct{}
	waitErr  error // valid once exited is closed

	closeOnce sync.Once
	closeErr  error
}

// Fault is a rule that makes a FUSEStore fail or delay requests. A request is affected when
// its operation is Op and its path relative to Mount (such as "sha256:…/info", or "." for the
// root) matches Path, once After such requests have succeeded. Every fault that affects a
// request delays it, in list order, and the first with an Errno fails it.
type Fault struct {
	// Path is a path.Match pattern ("*" does not match "/"); "" matches every path.
	Path string `json:"path"`
	// Op is lookup, getattr, open, read, readdir, readlink, getxattr, listxattr, access or
	// statfs; "*" or "" is all of them.
	Op string `json:"op"`
	// Errno is "EIO", "ENOENT" or "EACCES", or "" for a fault that only delays.
	Errno string `json:"errno,omitempty"`
	// DelayMS is how long an affected request waits before it is answered.
	DelayMS int `json:"delayMs,omitempty"`
	// After is how many matching requests succeed before the fault applies: with After 1 on
	// lookup, a path is found once and then vanishes.
	After int `json:"after,omitempty"`
}

// FUSEStats is what a FUSEStore counted since it started or since ResetStats. Paths and entries
// are relative to Mount; an entry is the directory holding diff, info and blob, such as
// "sha256:…" or "<base64 reference>/sha256:…".
type FUSEStats struct {
	// Ops counts requests by operation and path, including those a fault failed and refused
	// changes ("create", "rmdir", "unlink", "mkdir", "setattr", …).
	Ops map[string]map[string]int `json:"ops"`
	// Uses counts the "use" files created in each entry (c/storage starts using it).
	Uses map[string]int `json:"uses"`
	// Releases counts the rmdirs of each entry (c/storage stops using it).
	Releases map[string]int `json:"releases"`
	// Refs is each entry's reference count, uses minus releases since the store started; it
	// survives ResetStats.
	Refs map[string]int `json:"refs"`
}

// fuseBuild is the alsfuse binary StartFUSEStore built, once per process.
var fuseBuild struct {
	once sync.Once
	dir  string // the temporary directory holding bin; "" if nothing was built
	bin  string
	err  error
}

// fuseStartTimeout bounds how long StartFUSEStore waits for the mount, and fuseStopTimeout how
// long Close waits for alsfuse to exit before killing it.
const (
	fuseStartTimeout = 30 * time.Second
	fuseStopTimeout  = 10 * time.Second
)

// StartFUSEStore serves backing through FUSE at a new temporary mount point and returns once the
// mount is live. It runs $ALS_FUSE_BIN (an absolute path) if set; otherwise it builds alsfuse
// from internal/alsfuse with `go build` (once per process; see CleanupFUSEBinary). It must run
// as root. If the process that called it dies, alsfuse unmounts and exits by itself.
func StartFUSEStore(backing string) (*FUSEStore, error) {
	bin, err := fuseBinary()
	if err != nil {
		return nil, err
	}
	backing, err = filepath.Abs(backing)
	if err != nil {
		return nil, fmt.Errorf("resolving the FUSE store's backing directory: %w", err)
	}
	dir, err := os.MkdirTemp("", "alsfuse-")
	if err != nil {
		return nil, fmt.Errorf("creating the FUSE store's directory: %w", err)
	}
	f := &FUSEStore{Backing: backing, dir: dir, output: &tailBuffer{max: 8 << 10}}
	if err := f.start(bin); err != nil {
		return nil, errors.Join(err, f.Close())
	}
	return f, nil
}

// start starts alsfuse and waits for its mount.
func (f *FUSEStore) start(bin string) error {
	dir, err := filepath.EvalSymlinks(f.dir)
	if err != nil {
		return fmt.Errorf("resolving the FUSE store's directory: %w", err)
	}
	f.Mount = filepath.Join(dir, "mnt")
	if err := os.Mkdir(f.Mount, 0o755); err != nil {
		return fmt.Errorf("creating the FUSE mount point: %w", err)
	}
	socket := filepath.Join(dir, "control.sock")
	f.client = &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
		},
		Timeout: 10 * time.Second,
	}

	readEnd, writeEnd, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("creating the FUSE store's lifeline: %w", err)
	}
	defer readEnd.Close()
	f.lifeline = writeEnd
	f.cmd = exec.Command(bin, "-backing", f.Backing, "-mount", f.Mount, "-control", socket,
		"-lifeline", "3")
	f.cmd.ExtraFiles = []*os.File{readEnd} // descriptor 3
	f.cmd.Stdout = f.output
	f.cmd.Stderr = f.output
	if err := f.cmd.Start(); err != nil {
		f.cmd = nil
		writeEnd.Close()
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	f.exited = make(chan struct{})
	go func() {
		f.waitErr = f.cmd.Wait()
		close(f.exited)
	}()
	return f.waitLive()
}

// waitLive waits until the control socket answers and Mount is a FUSE mount of alsfuse.
func (f *FUSEStore) waitLive() error {
	deadline := time.Now().Add(fuseStartTimeout)
	for {
		select {
		case <-f.exited:
			exit := f.waitErr
			if exit == nil {
				exit = errors.New("exit status 0")
			}
			return fmt.Errorf("alsfuse exited before its mount was live: %w: %s", exit, f.output)
		default:
		}
		if _, err := f.Stats(); err == nil {
			fstype, err := mountType(f.Mount)
			if err != nil {
				return err
			}
			if fstype == "fuse.alsfuse" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("alsfuse did not mount %s within %v: %s", f.Mount,
				fuseStartTimeout, f.output)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SetFaults replaces the store's faults with faults (none if empty). Each fault starts with no
// matching successes counted towards its After.
func (f *FUSEStore) SetFaults(faults []Fault) error {
	if faults == nil {
		faults = []Fault{}
	}
	if err := f.call(http.MethodPut, "/faults", faults, nil); err != nil {
		return fmt.Errorf("setting FUSE store faults: %w", err)
	}
	return nil
}

// Stats returns what the store counted.
func (f *FUSEStore) Stats() (FUSEStats, error) {
	var s FUSEStats
	if err := f.call(http.MethodGet, "/stats", nil, &s); err != nil {
		return FUSEStats{}, fmt.Errorf("reading FUSE store stats: %w", err)
	}
	return s, nil
}

// ResetStats zeroes Ops, Uses and Releases; faults and Refs stay.
func (f *FUSEStore) ResetStats() error {
	if err := f.call(http.MethodPost, "/reset", nil, nil); err != nil {
		return fmt.Errorf("resetting FUSE store stats: %w", err)
	}
	return nil
}

// call sends a request with in as its JSON body (none if nil) to the control socket and
// decodes the JSON answer into out (ignored if nil).
func (f *FUSEStore) call(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, "http://alsfuse"+path, body)
	if err != nil {
		return err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(msg))
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decoding the answer to %s %s: %w", method, path, err)
	}
	return nil
}

// Close stops alsfuse, makes sure nothing is left mounted at Mount (detaching it lazily if it
// is busy, for example because an overlay mount still uses it) and removes the mount point.
// It may be called more than once and returns the first call's result.
func (f *FUSEStore) Close() error {
	f.closeOnce.Do(func() {
		f.closeErr = errors.Join(f.stop(), f.unmountLeftover(), f.removeDir())
	})
	return f.closeErr
}

// stop asks alsfuse to exit, then signals it, then kills it, and reports an unclean exit.
func (f *FUSEStore) stop() error {
	if f.cmd == nil {
		return nil
	}
	defer f.lifeline.Close()
	defer f.client.CloseIdleConnections()
	if err := f.call(http.MethodPost, "/shutdown", nil, nil); err != nil {
		_ = f.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-f.exited:
	case <-time.After(fuseStopTimeout):
		_ = f.cmd.Process.Kill()
		<-f.exited
		return fmt.Errorf("alsfuse did not exit within %v and was killed: %s", fuseStopTimeout,
			f.output)
	}
	if f.waitErr != nil {
		return fmt.Errorf("alsfuse: %w: %s", f.waitErr, f.output)
	}
	return nil
}

// unmountLeftover unmounts Mount if it is still mounted, as after alsfuse was killed.
func (f *FUSEStore) unmountLeftover() error {
	if f.Mount == "" {
		return nil
	}
	fstype, err := mountType(f.Mount)
	if err != nil || fstype == "" {
		return err
	}
	if err := syscall.Unmount(f.Mount, 0); err == nil {
		return nil
	}
	if err := syscall.Unmount(f.Mount, syscall.MNT_DETACH); err != nil {
		return fmt.Errorf("unmounting the FUSE store at %s: %w", f.Mount, err)
	}
	return nil
}

// removeDir removes the mount point and the control socket, unless something is still
// mounted there: removing files through a mount would remove them from its backing store.
func (f *FUSEStore) removeDir() error {
	if f.Mount != "" {
		if fstype, err := mountType(f.Mount); err != nil {
			return err
		} else if fstype != "" {
			return fmt.Errorf("leaving %s in place: %s is still mounted there", f.dir, fstype)
		}
		if err := os.Remove(f.Mount); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing the FUSE mount point: %w", err)
		}
	}
	if err := os.RemoveAll(f.dir); err != nil {
		return fmt.Errorf("removing the FUSE store's directory: %w", err)
	}
	return nil
}

// mountType returns the file system type mounted at dir (the last mount if several are
// stacked), or "" if dir is not a mount point. dir must be absolute and free of symlinks.
func mountType(dir string) (string, error) {
	file, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("reading the mount table: %w", err)
	}
	defer file.Close()
	fstype := ""
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		before, after, ok := strings.Cut(scanner.Text(), " - ")
		fields, fsFields := strings.Fields(before), strings.Fields(after)
		if !ok || len(fields) < 5 || len(fsFields) < 1 {
			continue
		}
		if unescapeMountinfo(fields[4]) == dir {
			fstype = fsFields[0]
		}
	}
	if err := scanner.Err(); err != nil {
		return "", fmt.Errorf("reading the mount table: %w", err)
	}
	return fstype, nil
}

// unescapeMountinfo undoes the octal escapes (\040 for a space, …) of a mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) &&
			isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// isOctal reports whether c is an octal digit.
func isOctal(c byte) bool {
	return c >= '0' && c <= '7'
}

// fuseBinary returns the alsfuse to run: $ALS_FUSE_BIN, or one built for this process.
func fuseBinary() (string, error) {
	if bin := os.Getenv("ALS_FUSE_BIN"); bin != "" {
		if !filepath.IsAbs(bin) {
			return "", fmt.Errorf("ALS_FUSE_BIN=%q is not an absolute path", bin)
		}
		return bin, nil
	}
	fuseBuild.once.Do(func() {
		fuseBuild.dir, fuseBuild.bin, fuseBuild.err = buildFUSEBinary()
	})
	return fuseBuild.bin, fuseBuild.err
}

// buildFUSEBinary builds alsfuse from the source next to this file into a new temporary
// directory and returns both.
func buildFUSEBinary() (dir, bin string, err error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", "", errors.New("building alsfuse: cannot locate the source; set ALS_FUSE_BIN")
	}
	src := filepath.Join(filepath.Dir(file), "..", "alsfuse")
	if _, err := os.Stat(filepath.Join(src, "go.mod")); err != nil {
		return "", "", fmt.Errorf("building alsfuse (or set ALS_FUSE_BIN): %w", err)
	}
	dir, err = os.MkdirTemp("", "alsfuse-bin-")
	if err != nil {
		return "", "", fmt.Errorf("building alsfuse: %w", err)
	}
	bin = filepath.Join(dir, "alsfuse")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = src
	// The module is built as it is committed, whatever the caller's workspace or flags are.
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return "", "", fmt.Errorf("building alsfuse in %s: %w: %s", src, err, out)
	}
	return dir, bin, nil
}

// CleanupFUSEBinary removes the alsfuse binary StartFUSEStore built, if it built one. Call it
// from TestMain once the tests are done.
func CleanupFUSEBinary() error {
	if fuseBuild.dir == "" {
		return nil
	}
	if err := os.RemoveAll(fuseBuild.dir); err != nil {
		return fmt.Errorf("removing the alsfuse binary: %w", err)
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it; it is safe for concurrent use.
type tailBuffer struct {
	max  int
	mu   sync.Mutex
	data []byte
}

// Write appends p, dropping the oldest bytes beyond max.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.data = append(t.data, p...)
	if over := len(t.data) - t.max; over > 0 {
		t.data = append(t.data[:0], t.data[over:]...)
	}
	return len(p), nil
}

// String returns what the buffer holds.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.data))
}
