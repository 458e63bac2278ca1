// Package alse2e holds end-to-end tests: pulls from a registry on loopback into overlay storage
// through an Additional Layer Store. They use only c/image’s public API, so that
// `make test-pristine` can run them against pristine upstream too.
package alse2e

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.podman.io/image/v5/internal/alspull"
	"go.podman.io/image/v5/internal/alstest"
	"go.podman.io/storage"
)

// keyEnv is the fork’s knob. It is spelled out here, not imported, because these tests must
// build against pristine upstream.
const keyEnv = "CONTAINERS_ADDITIONAL_LAYER_STORE_KEY"

// alsLabel is how the progress output marks a layer taken from the Additional Layer Store.
const alsLabel = "skipped: already exists (from additional layer store)"

func TestMain(m *testing.M) {
	if alstest.PrepareProcess() {
		return
	}
	os.Exit(m.Run())
}

// pullSetup is a registry serving one image, an Additional Layer Store and an overlay store.
type pullSetup struct {
	img      *alstest.Image
	registry *alstest.Registry
	ref      string // The reference pulled, without transport.
	alsRoot  string
	withRef  bool
	store    storage.Store
}

func newPullSetup(t *testing.T, specs []alstest.LayerSpec, withRef bool) *pullSetup {
	if os.Geteuid() != 0 {
		t.Skip("the overlay driver with an Additional Layer Store needs root")
	}
	img, err := alstest.BuildImage(specs)
	require.NoError(t, err)
	registry, err := alstest.StartRegistry()
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, registry.Close()) })
	registry.Put("als/e2e", "v1", img)
	dir := t.TempDir()
	s := &pullSetup{
		img:      img,
		registry: registry,
		ref:      registry.Addr() + "/als/e2e:v1",
		alsRoot:  filepath.Join(dir, "als"),
		withRef:  withRef,
	}
	require.NoError(t, os.Mkdir(s.alsRoot, 0o755))
	s.store, err = alspull.NewStore(filepath.Join(dir, "store"), s.alsRoot, withRef)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, err := s.store.Shutdown(true)
		assert.NoError(t, err)
	})
	return s
}

// fill puts every layer of the image into the store, under its layer digest, or its TOC digest
// if byTOC.
func (s *pullSetup) fill(t *testing.T, byTOC bool) {
	s.fillLayers(t, byTOC, s.img.Layers)
}

// fillLayers puts layers into the store, under their layer digests, or TOC digests if byTOC.
func (s *pullSetup) fillLayers(t *testing.T, byTOC bool, layers []alstest.Layer) {
	ref := ""
	if s.withRef {
		ref = s.ref
	}
	for i := range layers {
		l := &layers[i]
		key := l.Digest
		if byTOC {
			key = l.TOCDigest
		}
		_, err := alstest.WriteALSEntry(s.alsRoot, ref, key, l, alstest.EntryOptions{})
		require.NoError(t, err)
	}
}

// entry returns the entry a lookup of key reads.
func (s *pullSetup) entry(key string) string {
	if s.withRef {
		return filepath.Join(s.alsRoot, alstest.RefDir(s.ref), key)
	}
	return filepath.Join(s.alsRoot, key)
}

// denyLayers makes the registry answer 404 for every layer blob, so that only the Additional
// Layer Store can provide them.
func (s *pullSetup) denyLayers() {
	for _, l := range s.img.Layers {
		s.registry.DenyBlobs(l.Digest)
	}
}

// pull pulls the image and returns where each layer came from. If progress is not nil, the
// copy writes its progress bars to a terminal and progress collects what they showed.
func (s *pullSetup) pull(t *testing.T, progress *string) []alspull.Origin {
	var w io.Writer
	if progress != nil {
		term := newTerminal(t)
		defer func() { *progress = term.close(t) }()
		w = term.tty
	}
	return s.pullRef(t, s.ref, len(s.img.Layers), w)
}

// pullRef pulls ref, an image of n layers, writing progress output to w (which may be nil).
func (s *pullSetup) pullRef(t *testing.T, ref string, n int, w io.Writer) []alspull.Origin {
	img, err := alspull.Pull(context.Background(), s.store, ref, w)
	require.NoError(t, err)
	origins, err := alspull.Origins(s.store, img)
	require.NoError(t, err)
	require.Len(t, origins, n)
	return origins
}

// checkFiles reads every regular file of the image through the mounted top layer.
func (s *pullSetup) checkFiles(t *testing.T, top string) {
	require.NoError(t, alspull.VerifyFiles(s.store, top, s.img.Files()))
}

func gzipLayers() []alstest.LayerSpec { return alstest.DemoLayers() }

func zstdChunkedLayers() []alstest.LayerSpec {
	specs := alstest.DemoLayers()[:3] // zstd:chunked layers cannot hold one path twice
	for i := range specs {
		specs[i].Compression = alstest.ZstdChunked
	}
	return specs
}

// TestPullByLayerDigest pulls images whose layer blobs the registry no longer has, from an
// Additional Layer Store keyed by layer digest. Upstream since v5.31 never asks the store by
// layer digest, so there these pulls fail fetching the first layer blob.
func TestPullByLayerDigest(t *testing.T) {
	for _, c := range []struct {
		knob    string
		zstd    bool
		withRef bool
	}{
		{"", false, false},
		{"", false, true},
		{"auto", false, true},
		{"layer", false, false},
		{"layer", true, false}, // zstd:chunked, its TOC ignored
		{"layer", true, true},
	} {
		t.Run("", func(t *testing.T) {
			t.Setenv(keyEnv, c.knob)
			specs := gzipLayers()
			if c.zstd {
				specs = zstdChunkedLayers()
			}
			s := newPullSetup(t, specs, c.withRef)
			s.fill(t, false)
			s.denyLayers()

			var progress string
			origins := s.pull(t, &progress)
			for i, o := range origins {
				l := s.img.Layers[i]
				assert.Equal(t, s.entry(l.Digest.String()), o.ALSEntry, "layer %d", i)
				assert.Equal(t, l.DiffID, o.Layer.UncompressedDigest, "layer %d", i)
				assert.Equal(t, l.Digest, o.Layer.CompressedDigest, "layer %d", i)
				assert.Empty(t, o.Layer.TOCDigest, "layer %d", i)
			}
			assert.Zero(t, s.registry.LayerBytesServed(s.img))
			var labelled []string
			for _, l := range s.img.Layers {
				prefix := "Copying blob " + l.Digest.Encoded()[:12]
				if strings.Contains(progress, prefix+" "+alsLabel) {
					labelled = append(labelled, prefix)
				}
			}
			assert.Len(t, labelled, len(specs), "progress output: %q", progress)
			s.checkFiles(t, origins[len(origins)-1].Layer.ID)
		})
	}
}

// TestPullByLayerDigestDeduplicates pulls two images that share their lower layers, one after
// the other: a layer taken from the store by layer digest and a full-pulled layer of the same
// DiffID are one layer in storage, whichever came first.
func TestPullByLayerDigestDeduplicates(t *testing.T) {
	for _, storeFirst := range []bool{true, false} {
		t.Run("", func(t *testing.T) {
			t.Setenv(keyEnv, "")
			specs := gzipLayers()
			s := newPullSetup(t, specs[:2], false)     // image 1: two layers
			img2, err := alstest.BuildImage(specs[:3]) // image 2: the same two and a third
			require.NoError(t, err)
			s.registry.Put("als/e2e", "v2", img2)
			ref2 := s.registry.Addr() + "/als/e2e:v2"
			third := img2.Layers[2:]

			var first []alspull.Origin
			if storeFirst {
				s.fill(t, false)
				s.denyLayers()
				first = s.pull(t, nil)
				s.registry.DenyBlobs(third[0].Digest) // image 2 can only take it from the store
				s.fillLayers(t, false, third)
			} else {
				first = s.pull(t, nil) // a full pull: the store is still empty
				s.fillLayers(t, false, img2.Layers)
				s.registry.DenyBlobs(img2.Layers[0].Digest, img2.Layers[1].Digest,
					third[0].Digest)
			}
			second := s.pullRef(t, ref2, 3, nil)

			for i := range first {
				assert.Equal(t, first[i].Layer.ID, second[i].Layer.ID, "layer %d", i)
				assert.Equal(t, first[i].ALSEntry, second[i].ALSEntry, "layer %d", i)
				assert.Equal(t, storeFirst, first[i].ALSEntry != "", "layer %d", i)
			}
			assert.Equal(t, s.entry(third[0].Digest.String()), second[2].ALSEntry)
			layers, err := s.store.Layers()
			require.NoError(t, err)
			assert.Len(t, layers, 3)
			s.checkFiles(t, second[2].Layer.ID)
		})
	}
}

// TestPullCompatTOCDigest checks that a zstd:chunked image keeps upstream’s behaviour under the
// default knob: its layers come from a store keyed by TOC digest, identified by TOC digest.
// It passes on pristine upstream as well.
func TestPullCompatTOCDigest(t *testing.T) {
	for _, withRef := range []bool{false, true} {
		t.Run("", func(t *testing.T) {
			t.Setenv(keyEnv, "")
			s := newPullSetup(t, zstdChunkedLayers(), withRef)
			s.fill(t, true)
			s.denyLayers()

			origins := s.pull(t, nil)
			for i, o := range origins {
				l := s.img.Layers[i]
				assert.Equal(t, s.entry(l.TOCDigest.String()), o.ALSEntry, "layer %d", i)
				assert.Equal(t, l.TOCDigest, o.Layer.TOCDigest, "layer %d", i)
			}
			assert.Zero(t, s.registry.LayerBytesServed(s.img))
			s.checkFiles(t, origins[len(origins)-1].Layer.ID)
		})
	}
}

// TestPullCompatNotInStore checks that images whose layers the store lacks are pulled from the
// registry as upstream pulls them. It passes on pristine upstream as well.
func TestPullCompatNotInStore(t *testing.T) {
	for _, zstd := range []bool{false, true} {
		t.Run("", func(t *testing.T) {
			t.Setenv(keyEnv, "")
			specs := gzipLayers()
			if zstd {
				specs = zstdChunkedLayers()
			}
			s := newPullSetup(t, specs, false)

			origins := s.pull(t, nil)
			for i, o := range origins {
				assert.Empty(t, o.ALSEntry, "layer %d", i)
				assert.Equal(t, s.img.Layers[i].DiffID, o.Layer.UncompressedDigest, "layer %d", i)
			}
			assert.NotZero(t, s.registry.LayerBytesServed(s.img))
			s.checkFiles(t, origins[len(origins)-1].Layer.ID)
		})
	}
}
