// Command alsfuse serves a directory Additional Layer Store through FUSE, as a test fixture that
// counts what c/storage does with it and misbehaves on command.
//
//	alsfuse -backing DIR -mount MNT -control SOCKET [-lifeline FD]
//
// The mount mirrors DIR read-only, with no kernel caching of entries or attributes so that
// every path walk reaches it. Creating "use" in an entry (a directory holding diff, info and
// blob) and removing an entry with rmdir are counted as c/storage's use and release
// notifications and answered with ENOENT, as a store that counts references answers them;
// every other change answers EROFS.
//
// SOCKET is a unix socket serving HTTP:
//
//	PUT  /faults    replace the fault list: [{"path", "op", "errno", "delayMs", "after"}]
//	GET  /faults    the fault list
//	GET  /stats     {"ops": {OP: {PATH: n}}, "uses", "releases", "refs": {ENTRY: n}}
//	POST /reset     zero ops, uses and releases (faults and refs stay)
//	POST /shutdown  unmount and exit
//
// alsfuse unmounts and exits on SIGTERM, SIGINT or SIGHUP, on POST /shutdown, and, with
// -lifeline, when FD reaches end of file: a test passes the read end of a pipe whose write
// end only it holds, so that the mount goes away when the test process dies. A busy mount is
// detached lazily; an overlay mount still using the store loses it (ENOTCONN). alsfuse must
// run as root: it mounts with mount(2), without fusermount.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// config is the command line.
type config struct {
	backing  string
	mount    string
	control  string
	lifeline int // -1 if none
}

func main() {
	var cfg config
	flag.StringVar(&cfg.backing, "backing", "", "the directory store to serve")
	flag.StringVar(&cfg.mount, "mount", "", "the existing directory to mount it on")
	flag.StringVar(&cfg.control, "control", "", "the unix socket to serve the control API on")
	flag.IntVar(&cfg.lifeline, "lifeline", -1,
		"a file descriptor whose end of file stops the store")
	flag.Parse()
	if cfg.backing == "" || cfg.mount == "" || cfg.control == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr,
			"usage: alsfuse -backing DIR -mount MNT -control SOCKET [-lifeline FD]")
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "alsfuse: %v\n", err)
		os.Exit(1)
	}
}

// run serves the store until it is told to stop, and leaves nothing mounted.
func run(cfg config) error {
	backing, err := filepath.Abs(cfg.backing)
	if err != nil {
		return fmt.Errorf("resolving the backing directory: %w", err)
	}
	if st, err := os.Stat(backing); err != nil {
		return fmt.Errorf("checking the backing directory: %w", err)
	} else if !st.IsDir() {
		return fmt.Errorf("backing %s is not a directory", backing)
	}
	listener, err := net.Listen("unix", cfg.control)
	if err != nil {
		return fmt.Errorf("listening on the control socket: %w", err)
	}
	defer listener.Close()

	// Whatever stops alsfuse once it has mounted must find it listening: a default signal
	// action would kill it with the store still mounted. When the test that started alsfuse
	// dies, the pipes of stdout and stderr break with it, and writing the last messages must
	// fail quietly rather than raise SIGPIPE.
	signal.Ignore(syscall.SIGPIPE)
	reason := make(chan string, 4)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() { reason <- (<-signals).String() }()
	if cfg.lifeline >= 0 {
		go watchLifeline(cfg.lifeline, reason)
	}

	stop := make(chan struct{})
	b := newBehaviour(stop)
	server, err := mount(cfg.mount, newStore(backing, b))
	if err != nil {
		return err
	}
	unmounted := make(chan struct{})
	go func() {
		server.Wait()
		close(unmounted)
	}()

	httpServer := &http.Server{
		Handler: controlHandler(b, func() {
			select {
			case reason <- "POST /shutdown":
			default:
			}
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = httpServer.Serve(listener) }()

	var why string
	select {
	case why = <-reason:
	case <-unmounted:
		why = "unmounted from outside"
	}
	fmt.Fprintf(os.Stderr, "alsfuse: stopping (%s)\n", why)
	close(stop)
	unmountErr := unmount(cfg.mount, unmounted)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = httpServer.Shutdown(ctx)
	return unmountErr
}

// mount mounts s on dir and starts serving it.
func mount(dir string, s *store) (*fuse.Server, error) {
	noCache := time.Duration(0)
	opts := &gofs.Options{
		MountOptions: fuse.MountOptions{
			FsName:            "alsfuse",
			Name:              "alsfuse",
			DirectMount:       true,
			DirectMountStrict: true,
			// A READDIRPLUS would look up every entry it lists, and count and fault-inject
			// those lookups, as if something had walked to each of them.
			DisableReadDirPlus: true,
		},
		EntryTimeout:    &noCache,
		AttrTimeout:     &noCache,
		NegativeTimeout: &noCache,
		NullPermissions: true,
		RootStableAttr:  &gofs.StableAttr{Ino: 1},
	}
	server, err := gofs.Mount(dir, newRoot(s), opts)
	if err != nil {
		return nil, fmt.Errorf("mounting %s on %s: %w", s.backing, dir, err)
	}
	return server, nil
}

// unmount unmounts the store at dir, detaching it lazily if it is busy, and gives the kernel a
// moment to end the FUSE connection, which closes unmounted. An overlay mount keeps the
// connection open after the unmount, since it holds private clones of its lower directories'
// mounts: alsfuse exits anyway, and the overlay's reads then fail with ENOTCONN.
func unmount(dir string, unmounted <-chan struct{}) error {
	err := syscall.Unmount(dir, 0)
	if errors.Is(err, syscall.EBUSY) {
		fmt.Fprintf(os.Stderr, "alsfuse: %s is busy, detaching it lazily\n", dir)
		err = syscall.Unmount(dir, syscall.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, syscall.EINVAL) { // EINVAL: no longer a mount point
		return fmt.Errorf("unmounting %s: %w", dir, err)
	}
	select {
	case <-unmounted:
	case <-time.After(time.Second):
		fmt.Fprintf(os.Stderr, "alsfuse: the file system is still in use (by an overlay mount?), "+
			"exiting cuts it off\n")
	}
	return nil
}

// watchLifeline reports on reason once fd reaches end of file or fails.
func watchLifeline(fd int, reason chan<- string) {
	f := os.NewFile(uintptr(fd), "lifeline")
	_, err := io.Copy(io.Discard, f)
	if err != nil {
		reason <- fmt.Sprintf("lifeline: %v", err)
		return
	}
	reason <- "lifeline closed"
}
