package alsadversarial

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.podman.io/image/v5/internal/alspull"
	"go.podman.io/image/v5/internal/alstest"
	"go.podman.io/storage"
)

// keyEnv is the fork’s knob, spelled out so that these tests need nothing but public API.
const keyEnv = "CONTAINERS_ADDITIONAL_LAYER_STORE_KEY"

func TestMain(m *testing.M) {
	if alstest.PrepareProcess() {
		return
	}
	// The fork’s warnings are part of what the cases assert; collect them, print nothing.
	logrus.SetLevel(logrus.WarnLevel)
	logrus.AddHook(warnings)
	logrus.SetOutput(io.Discard)
	if os.Getenv("ALS_TEST_DEBUG") != "" { // Print c/image’s and c/storage’s debug log.
		logrus.SetLevel(logrus.DebugLevel)
		logrus.SetOutput(os.Stderr)
	}
	os.Exit(m.Run())
}

// warningHook collects the fork’s warnings about Additional Layer Store entries.
type warningHook struct {
	mu   sync.Mutex
	msgs []string
}

var warnings = &warningHook{}

func (h *warningHook) Levels() []logrus.Level { return []logrus.Level{logrus.WarnLevel} }

func (h *warningHook) Fire(e *logrus.Entry) error {
	if strings.Contains(e.Message, "Additional Layer Store entry") {
		h.mu.Lock()
		h.msgs = append(h.msgs, e.Message)
		h.mu.Unlock()
	}
	return nil
}

// take returns the warnings collected since the last call and forgets them.
func (h *warningHook) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	res := h.msgs
	h.msgs = nil
	return res
}

// fixture is an Additional Layer Store: a plain directory, or a FUSE filesystem serving one.
type fixture struct {
	kind    string // "dir" or "fuse"
	backing string // Where entries are written.
	root    string // What the overlay driver is configured with.
	fuse    *alstest.FUSEStore
}

func newFixture(t *testing.T, kind string) *fixture {
	backing := filepath.Join(t.TempDir(), "als")
	require.NoError(t, os.Mkdir(backing, 0o755))
	f := &fixture{kind: kind, backing: backing, root: backing}
	if kind == "fuse" {
		fs, err := alstest.StartFUSEStore(backing)
		require.NoError(t, err)
		t.Cleanup(func() { assert.NoError(t, fs.Close()) })
		f.fuse, f.root = fs, fs.Mount
	}
	return f
}

// env is one test’s world: a registry on loopback, a store fixture and an overlay store.
type env struct {
	fix      *fixture
	registry *alstest.Registry
	store    storage.Store
	withRef  bool
}

// newEnv sets up an env whose overlay store consults extra stores (already formatted as the
// option wants them) first, then the fixture.
func newEnv(t *testing.T, kind string, withRef bool, extra ...string) *env {
	if os.Geteuid() != 0 {
		t.Skip("the overlay driver with an Additional Layer Store needs root")
	}
	t.Setenv(keyEnv, "")
	e := &env{fix: newFixture(t, kind), withRef: withRef}
	var err error
	e.registry, err = alstest.StartRegistry()
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, e.registry.Close()) })
	option := e.fix.root
	if withRef {
		option += ":ref"
	}
	stores := strings.Join(append(extra, option), ",")
	dir := t.TempDir()
	e.store, err = storage.GetStore(storage.StoreOptions{
		RunRoot:            filepath.Join(dir, "run"),
		GraphRoot:          filepath.Join(dir, "root"),
		GraphDriverName:    "overlay",
		GraphDriverOptions: []string{"overlay.additionallayerstore=" + stores},
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		_, err := e.store.Shutdown(true)
		assert.NoError(t, err)
		e.checkBalanced(t)
	})
	t.Cleanup(func() { assert.NoError(t, e.store.Wipe()) }) // Runs first: releases every layer.
	warnings.take()
	return e
}

// checkBalanced checks that c/storage released every entry of the FUSE fixture it used.
func (e *env) checkBalanced(t *testing.T) {
	if e.fix.fuse == nil {
		return
	}
	stats, err := e.fix.fuse.Stats()
	require.NoError(t, err)
	for entry, uses := range stats.Uses {
		assert.Equal(t, uses, stats.Releases[entry], "uses and releases of %s", entry)
	}
}

// serve builds an image from specs and serves it as repo:tag; it returns the image and the
// reference to pull.
func (e *env) serve(t *testing.T, repo string, specs []alstest.LayerSpec) (*alstest.Image, string) {
	img, err := alstest.BuildImage(specs)
	require.NoError(t, err)
	e.registry.Put(repo, "1", img)
	return img, e.registry.Addr() + "/" + repo + ":1"
}

// put writes an entry for l under key into the fixture, for the image reference ref.
func (e *env) put(t *testing.T, ref string, l *alstest.Layer, key digest.Digest,
	opts alstest.EntryOptions,
) string {
	if !e.withRef {
		ref = ""
	}
	_, err := alstest.WriteALSEntry(e.fix.backing, ref, key, l, opts)
	require.NoError(t, err)
	return e.entry(ref, key)
}

// entry returns the entry path the overlay driver looks up for key and ref.
func (e *env) entry(ref string, key digest.Digest) string {
	if !e.withRef {
		return filepath.Join(e.fix.root, key.String())
	}
	return filepath.Join(e.fix.root, alstest.RefDir(ref), key.String())
}

// entries returns the entry path of every layer of img, looked up by layer digest for ref.
func (e *env) entries(ref string, img *alstest.Image) []string {
	var res []string
	for _, l := range img.Layers {
		res = append(res, e.entry(ref, l.Digest))
	}
	return res
}

// fill writes a consistent entry for every layer of img, under its layer digest.
func (e *env) fill(t *testing.T, ref string, img *alstest.Image) {
	for i := range img.Layers {
		e.put(t, ref, &img.Layers[i], img.Layers[i].Digest, alstest.EntryOptions{})
	}
}

// deny makes the registry answer 404 for every layer blob of img.
func (e *env) deny(img *alstest.Image) {
	for _, l := range img.Layers {
		e.registry.DenyBlobs(l.Digest)
	}
}

// pull pulls ref and returns where each layer came from.
func (e *env) pull(ref string) ([]alspull.Origin, error) {
	img, err := alspull.Pull(context.Background(), e.store, ref, nil)
	if err != nil {
		return nil, err
	}
	return alspull.Origins(e.store, img)
}

// mustPull pulls ref, which must succeed with n layers.
func (e *env) mustPull(t *testing.T, ref string, n int) []alspull.Origin {
	origins, err := e.pull(ref)
	require.NoError(t, err)
	require.Len(t, origins, n)
	return origins
}

// state is what a store holds, for comparisons before and after a pull.
type state struct{ layers, images []string }

func (e *env) state(t *testing.T) state {
	layers, err := e.store.Layers()
	require.NoError(t, err)
	images, err := e.store.Images()
	require.NoError(t, err)
	var s state
	for _, l := range layers {
		s.layers = append(s.layers, fmt.Sprintf("%s parent=%s compressed=%s diff=%s toc=%s",
			l.ID, l.Parent, l.CompressedDigest, l.UncompressedDigest, l.TOCDigest))
	}
	for _, i := range images {
		s.images = append(s.images, fmt.Sprintf("%s top=%s names=%v", i.ID, i.TopLayer, i.Names))
	}
	slices.Sort(s.layers)
	slices.Sort(s.images)
	return s
}

// checkFiles reads every regular file of img through a container-like mount of its top layer.
func (e *env) checkFiles(t *testing.T, img *alstest.Image, top string) {
	require.NoError(t, alspull.VerifyFiles(e.store, top, img.Files()))
}

// checkIdentity checks that every layer of origins is identified as a full pull of img would
// identify it, and which ones came from the store (by entry; "" for a normal pull).
func checkIdentity(t *testing.T, img *alstest.Image, origins []alspull.Origin, entries []string) {
	require.Len(t, origins, len(img.Layers))
	chainID := ""
	for i, o := range origins {
		// The layer ID a full pull gives: a chain of DiffIDs.
		if chainID == "" {
			chainID = img.Layers[i].DiffID.Encoded()
		} else {
			chainID = digest.FromString(chainID + "+" + img.Layers[i].DiffID.Encoded()).Encoded()
		}
		assert.Equal(t, chainID, o.Layer.ID, "layer %d", i)
		assert.Equal(t, img.Layers[i].DiffID, o.Layer.UncompressedDigest, "layer %d", i)
		assert.Equal(t, entries[i], o.ALSEntry, "layer %d", i)
		if o.ALSEntry != "" {
			assert.Empty(t, o.Layer.TOCDigest, "layer %d", i)
			assert.Equal(t, img.Layers[i].Digest, o.Layer.CompressedDigest, "layer %d", i)
		}
	}
}
