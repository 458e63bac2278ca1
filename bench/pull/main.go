// Command pull is the program the benchmark times: it pulls one image from a registry on loopback
// into a new, empty overlay store, optionally configured with Additional Layer Stores, and prints
// one JSON line saying how long the pull took and how many layers came from a store.
//
//	pull -ref 127.0.0.1:5000/bench/app:1 -store DIR [-als ROOT[:ref][,ROOT...]] [-ua AGENT]
//
// It uses only the public API that c/image and c/storage have had since v5.30, so that one source
// builds against the patched tree, pristine upstream and github.com/containers/image/v5 v5.30.1
// (bench/run rewrites the module paths for the last one).
//
// The time reported is measured in this process: from creating the store, through copy.Image,
// to store.Shutdown(true). Finding out where each layer came from and deleting the store
// afterwards are not timed. The store directory must not exist; it is removed before exiting.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/signature"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/reexec"
)

// result is what one pull prints. Durations are in nanoseconds.
type result struct {
	SetupNS    int64 `json:"setup_ns"`    // storage.GetStore
	CopyNS     int64 `json:"copy_ns"`     // copy.Image
	ShutdownNS int64 `json:"shutdown_ns"` // store.Shutdown(true)
	WallNS     int64 `json:"wall_ns"`     // the sum of the three: the time reported as the pull's
	Layers     int   `json:"layers"`      // layers of the pulled image
	FromALS    int   `json:"from_als"`    // of which the overlay diff links into a store
}

func main() {
	if reexec.Init() {
		return
	}
	ref := flag.String("ref", "", "registry image to pull, without transport (plain HTTP)")
	storeDir := flag.String("store", "", "directory for the new overlay store; must not exist")
	als := flag.String("als", "", "the overlay driver's additionallayerstore value, or empty")
	agent := flag.String("ua", "", "User-Agent to send, so the registry log can tell pulls apart")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the pull to this file")
	logLevel := flag.String("log-level", "error", "logrus level: c/storage warns about every "+
		"layer taken from a store that does not count uses, so the default is error")
	flag.Parse()
	if *ref == "" || *storeDir == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	level, err := logrus.ParseLevel(*logLevel)
	if err != nil {
		fail(err)
	}
	logrus.SetLevel(level)
	if err := os.Setenv("CONTAINERS_STORAGE_CONF", "/dev/null"); err != nil {
		fail(err)
	}
	if _, err := os.Lstat(*storeDir); err == nil {
		fail(fmt.Errorf("store directory %s exists already", *storeDir))
	} else if !errors.Is(err, os.ErrNotExist) {
		fail(err)
	}

	// An interrupted pull still shuts its store down and removes it: no mount may outlive it.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := profiled(*cpuProfile, func() (result, error) {
		return pull(ctx, *ref, *storeDir, *als, *agent)
	})
	if rmErr := os.RemoveAll(*storeDir); rmErr != nil && err == nil {
		err = fmt.Errorf("removing the store: %w", rmErr)
	}
	if err != nil {
		fail(err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fail(err)
	}
}

// fail reports err and exits with status 1.
func fail(err error) {
	fmt.Fprintf(os.Stderr, "pull: %v\n", err)
	os.Exit(1)
}

// profiled runs f, writing a CPU profile of it to path unless path is empty.
func profiled(path string, f func() (result, error)) (result, error) {
	if path == "" {
		return f()
	}
	out, err := os.Create(path)
	if err != nil {
		return result{}, err
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		_ = out.Close()
		return result{}, err
	}
	res, err := f()
	pprof.StopCPUProfile()
	if closeErr := out.Close(); closeErr != nil && err == nil {
		err = closeErr
	}
	return res, err
}

// pull copies ref into a new overlay store in dir and shuts the store down, timing each step.
func pull(ctx context.Context, ref, dir, als, agent string) (res result, retErr error) {
	options := storage.StoreOptions{
		RunRoot:         filepath.Join(dir, "run"),
		GraphRoot:       filepath.Join(dir, "root"),
		GraphDriverName: "overlay",
	}
	if als != "" {
		options.GraphDriverOptions = []string{"overlay.additionallayerstore=" + als}
	}

	start := time.Now()
	store, err := storage.GetStore(options)
	if err != nil {
		return res, fmt.Errorf("creating the store: %w", err)
	}
	res.SetupNS = time.Since(start).Nanoseconds()
	shutDown := false
	defer func() {
		if !shutDown {
			_, _ = store.Shutdown(true)
		}
	}()

	start = time.Now()
	if err := copyImage(ctx, store, ref, agent); err != nil {
		return res, err
	}
	res.CopyNS = time.Since(start).Nanoseconds()

	if res.Layers, res.FromALS, err = origins(store); err != nil {
		return res, err
	}

	start = time.Now()
	shutDown = true
	if _, err := store.Shutdown(true); err != nil {
		return res, fmt.Errorf("shutting the store down: %w", err)
	}
	res.ShutdownNS = time.Since(start).Nanoseconds()
	res.WallNS = res.SetupNS + res.CopyNS + res.ShutdownNS
	return res, nil
}

// copyImage pulls the registry image ref into store, as `podman pull` would.
func copyImage(ctx context.Context, store storage.Store, ref, agent string) error {
	srcRef, err := docker.ParseReference("//" + ref)
	if err != nil {
		return fmt.Errorf("parsing %q: %w", ref, err)
	}
	destRef, err := istorage.Transport.ParseStoreReference(store, ref)
	if err != nil {
		return fmt.Errorf("parsing %q as a storage reference: %w", ref, err)
	}
	policy, err := signature.NewPolicyContext(&signature.Policy{
		Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()},
	})
	if err != nil {
		return fmt.Errorf("creating a signature policy context: %w", err)
	}
	defer func() { _ = policy.Destroy() }()
	_, err = copy.Image(ctx, policy, destRef, srcRef, &copy.Options{
		ReportWriter: io.Discard,
		SourceCtx: &types.SystemContext{
			DockerInsecureSkipTLSVerify: types.OptionalBoolTrue,
			DockerRegistryUserAgent:     agent,
		},
	})
	if err != nil {
		return fmt.Errorf("pulling %s: %w", ref, err)
	}
	return nil
}

// origins returns how many layers the one image in store has, and how many of them were taken
// from an Additional Layer Store: their overlay diff is a symbolic link into the store.
func origins(store storage.Store) (layers, fromALS int, err error) {
	images, err := store.Images()
	if err != nil {
		return 0, 0, fmt.Errorf("listing images: %w", err)
	}
	if len(images) != 1 {
		return 0, 0, fmt.Errorf("the store holds %d images after the pull, want 1", len(images))
	}
	for id := images[0].TopLayer; id != ""; layers++ {
		layer, err := store.Layer(id)
		if err != nil {
			return 0, 0, fmt.Errorf("reading layer %s: %w", id, err)
		}
		diff := filepath.Join(store.GraphRoot(), store.GraphDriverName(), id, "diff")
		if st, err := os.Lstat(diff); err == nil && st.Mode()&os.ModeSymlink != 0 {
			fromALS++
		}
		id = layer.Parent
	}
	return layers, fromALS, nil
}
