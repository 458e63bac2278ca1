//go:build !containers_image_storage_stub

package storage

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.podman.io/image/v5/internal/alstest"
	"go.podman.io/image/v5/internal/private"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
)

func TestParseAdditionalLayerStoreKeyPolicy(t *testing.T) {
	for _, c := range []struct {
		value string
		want  additionalLayerStoreKeyPolicy
		ok    bool
	}{
		{"", alsKeyPolicyAuto, true},
		{"auto", alsKeyPolicyAuto, true},
		{"toc", alsKeyPolicyTOC, true},
		{"layer", alsKeyPolicyLayer, true},
		{"Layer", 0, false},  // values are case-sensitive
		{" toc", 0, false},   // and not trimmed
		{"digest", 0, false}, // an unknown word
		{"toc,layer", 0, false},
	} {
		got, err := parseAdditionalLayerStoreKeyPolicy(c.value)
		if !c.ok {
			require.Error(t, err, c.value)
			assert.Contains(t, err.Error(), AdditionalLayerStoreKeyEnv)
			continue
		}
		require.NoError(t, err, c.value)
		assert.Equal(t, c.want, got, c.value)
	}
}

func TestAdditionalLayerStores(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	store := newOverlayStoreForALS(t, []string{
		"overlay.mountopt=nodev",
		"overlay.additionallayerstore=" + a + "/," + b + ":ref",
		"vfs.additionallayerstore=/ignored",
	})
	key := digest.Digest("sha256:" + strings.Repeat("a", 64))
	ref := "registry.example/ns/image:tag"
	assert.Equal(t, []AdditionalLayerStore{{Root: a}, {Root: b, WithReference: true}},
		additionalLayerStores(store))
	assert.Equal(t, []string{
		filepath.Join(a, key.String()),
		filepath.Join(b, alstest.RefDir(ref), key.String()),
	}, additionalLayerStoreEntryPaths(store, key, ref))
}

// alsLookups records the Additional Layer Store entries the overlay driver looked at and did not
// find, as it reports them in its debug log.
type alsLookups struct {
	mu     sync.Mutex
	misses []string
	warns  []string
}

var alsMissPattern = regexp.MustCompile(
	`failed to stat additional layer: \w+ (\S+)/(diff|info|blob): `)

func (h *alsLookups) Levels() []logrus.Level { return logrus.AllLevels }

func (h *alsLookups) Fire(e *logrus.Entry) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if m := alsMissPattern.FindStringSubmatch(e.Message); m != nil {
		h.misses = append(h.misses, m[1])
	}
	// The overlay driver also warns about plain directory stores that do not track use.
	if e.Level == logrus.WarnLevel && strings.Contains(e.Message, "Additional Layer Store entry") {
		h.warns = append(h.warns, e.Message)
	}
	return nil
}

// recordALSLookups collects the driver’s lookup misses and all warnings until the test ends.
func recordALSLookups(t *testing.T) *alsLookups {
	h := &alsLookups{}
	logger := logrus.StandardLogger()
	level, hooks, out := logger.GetLevel(), logger.ReplaceHooks(logrus.LevelHooks{}), logger.Out
	logger.SetLevel(logrus.DebugLevel)
	logger.SetOutput(io.Discard)
	logger.AddHook(h)
	t.Cleanup(func() {
		logger.ReplaceHooks(hooks)
		logger.SetLevel(level)
		logger.SetOutput(out)
	})
	return h
}

// newOverlayStoreForALS returns an overlay store with driver options, shut down (and unmounted)
// when the test ends.
func newOverlayStoreForALS(t *testing.T, options []string) storage.Store {
	if os.Geteuid() != 0 {
		t.Skip("the overlay driver with an Additional Layer Store needs root")
	}
	wd := t.TempDir()
	store, err := storage.GetStore(storage.StoreOptions{
		RunRoot:            filepath.Join(wd, "run"),
		GraphRoot:          filepath.Join(wd, "root"),
		GraphDriverName:    "overlay",
		GraphDriverOptions: options,
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		_, err := store.Shutdown(true)
		assert.NoError(t, err)
	})
	return store
}

func TestStorageImageDestinationTryReusingBlobWithOptionsAdditionalLayerStore(t *testing.T) {
	gzipImage, err := alstest.BuildImage([]alstest.LayerSpec{{Files: []alstest.File{
		{Path: "etc/hostname", Content: []byte("als\n")},
	}}})
	require.NoError(t, err)
	tocImage, err := alstest.BuildImage([]alstest.LayerSpec{{
		Compression: alstest.ZstdChunked,
		Files:       []alstest.File{{Path: "etc/hostname", Content: []byte("toc\n")}},
	}})
	require.NoError(t, err)
	otherDigest := digest.FromString("another blob")
	byLayer, byTOC := []string{"layer"}, []string{"toc"}
	srcRef, err := reference.ParseNormalizedNamed("registry.example/als/test:v1")
	require.NoError(t, err)

	// knob: the environment variable’s value; toc: the layer is zstd:chunked; at: the store holds
	// the layer under its "layer" digest, its "toc" digest, "both", or neither; info: the layer
	// digest entry’s info ("" consistent); ref: the store is configured with ":ref";
	// noIndex/noRef/noDiffID: the options lack LayerIndex / SrcRef / the config lacks DiffIDs.
	// lookups: the entries the driver looked at; reused: the result; id: the committed layer’s
	// identity ("diffid": DiffID only; "toc": TOC digest; "": nothing committed).
	for i, c := range []struct {
		knob, at, info           string
		toc, ref                 bool
		noIndex, noRef, noDiffID bool
		lookups                  []string
		reused, fails, warns     bool
		id                       string
	}{
		{knob: "", at: "layer", lookups: byLayer, reused: true, id: "diffid"},
		{knob: "auto", at: "layer", lookups: byLayer, reused: true, id: "diffid"},
		{knob: "auto", at: "layer", ref: true, lookups: byLayer, reused: true, id: "diffid"},
		{knob: "layer", at: "layer", lookups: byLayer, reused: true, id: "diffid"},
		{knob: "toc", at: "layer"},               // upstream’s behaviour
		{knob: "auto", at: "", lookups: byLayer}, // a miss
		{knob: "auto", at: "toc", toc: true, lookups: byTOC, reused: true, id: "toc"},
		{knob: "auto", at: "layer", toc: true, lookups: byTOC}, // no fallback
		{knob: "auto", at: "both", toc: true, lookups: byTOC, reused: true, id: "toc"},
		{knob: "toc", at: "both", toc: true, lookups: byTOC, reused: true, id: "toc"},
		{knob: "layer", at: "both", toc: true, lookups: byLayer, reused: true, id: "diffid"},
		{knob: "layer", at: "toc", toc: true, lookups: byLayer}, // no fallback either
		{
			knob: "layer", at: "layer", toc: true, ref: true, lookups: byLayer, reused: true,
			id: "diffid",
		},
		{knob: "auto", at: "layer", info: "diffid", lookups: byLayer, warns: true},
		{knob: "auto", at: "layer", info: "compressed", lookups: byLayer, warns: true},
		{knob: "auto", at: "layer", info: "size", lookups: byLayer, warns: true},
		{knob: "auto", at: "layer", info: "nodiffid", lookups: byLayer, warns: true},
		{knob: "auto", at: "layer", info: "nocompressed", lookups: byLayer, warns: true},
		{knob: "layer", at: "layer", toc: true, info: "claimtoc", lookups: byLayer, warns: true},
		{knob: "auto", at: "layer", info: "malformed", lookups: byLayer, warns: true},
		{knob: "auto", at: "layer", noIndex: true},             // not a layer of an image
		{knob: "auto", at: "layer", noRef: true},               // e.g. an oci: layout
		{knob: "auto", at: "layer", noDiffID: true},            // no identity to give it
		{knob: "auto", at: "both", toc: true, noDiffID: true},  // upstream needs it too
		{knob: "layer", at: "layer", noIndex: true},            // the knob is not read
		{knob: "Layer", at: "layer", fails: true},              // an invalid knob value
		{knob: "bogus", at: "layer", noRef: true, fails: true}, // fails even without SrcRef
	} {
		t.Run("", func(t *testing.T) {
			t.Setenv(AdditionalLayerStoreKeyEnv, c.knob)
			img := gzipImage
			if c.toc {
				img = tocImage
			}
			layer := &img.Layers[0]
			alsRoot := t.TempDir()
			option := "overlay.additionallayerstore=" + alsRoot
			entryRef := ""
			if c.ref {
				option += ":ref"
				entryRef = srcRef.String()
			}
			entries := map[string]string{
				"layer": filepath.Join(alsRoot, alstest.RefDir(entryRef), layer.Digest.String()),
				"toc":   filepath.Join(alsRoot, alstest.RefDir(entryRef), layer.TOCDigest.String()),
			}
			if !c.ref {
				entries["layer"] = filepath.Join(alsRoot, layer.Digest.String())
				entries["toc"] = filepath.Join(alsRoot, layer.TOCDigest.String())
			}
			if c.at == "layer" || c.at == "both" {
				_, err := alstest.WriteALSEntry(alsRoot, entryRef, layer.Digest, layer,
					alsEntryOptions(c.info, otherDigest))
				require.NoError(t, err)
			}
			if c.at == "toc" || c.at == "both" {
				_, err := alstest.WriteALSEntry(alsRoot, entryRef, layer.TOCDigest, layer,
					alstest.EntryOptions{})
				require.NoError(t, err)
			}
			store := newOverlayStoreForALS(t, []string{option})
			lookups := recordALSLookups(t)

			ref, err := Transport.ParseStoreReference(store, "als-test:latest")
			require.NoError(t, err)
			dest, err := newImageDestination(nil, *ref)
			require.NoError(t, err)
			defer dest.Close()
			config := &imgspecv1.Image{RootFS: imgspecv1.RootFS{
				Type:    "layers",
				DiffIDs: []digest.Digest{layer.DiffID},
			}}
			if c.noDiffID {
				config.RootFS.DiffIDs = nil
			}
			require.NoError(t, dest.NoteOriginalOCIConfig(config, nil))
			options := private.TryReusingBlobOptions{
				Cache:     none.NoCache,
				TOCDigest: layer.TOCDigest,
			}
			if !c.noIndex {
				options.LayerIndex = new(int)
			}
			if !c.noRef {
				options.SrcRef = srcRef
			}

			reused, blob, err := dest.TryReusingBlobWithOptions(context.Background(),
				types.BlobInfo{Digest: layer.Digest, Size: layer.Size}, options)
			if c.fails {
				require.Error(t, err, "row %d", i)
				assert.Contains(t, err.Error(), AdditionalLayerStoreKeyEnv)
				assert.Contains(t, err.Error(), c.knob)
				return
			}
			require.NoError(t, err, "row %d", i)
			assert.Equal(t, c.reused, reused, "row %d", i)
			assert.Equal(t, c.reused, blob.FromAdditionalLayerStore, "row %d", i)

			var looked []string
			for _, k := range c.lookups {
				looked = append(looked, entries[k])
			}
			assert.Equal(t, looked, lookedUp(lookups, store, dest, entries), "row %d", i)
			if c.warns {
				require.Len(t, lookups.warns, 1, "row %d", i)
				assert.Contains(t, lookups.warns[0], entries["layer"])
			} else {
				assert.Empty(t, lookups.warns, "row %d", i)
			}

			layers, err := store.Layers()
			require.NoError(t, err)
			if c.id == "" {
				assert.Empty(t, layers, "row %d", i)
				return
			}
			require.Len(t, layers, 1, "row %d", i)
			committed := layers[0]
			assert.Equal(t, dest.indexToStorageID[0], committed.ID)
			target, err := os.Readlink(filepath.Join(store.GraphRoot(), "overlay", committed.ID,
				"diff"))
			require.NoError(t, err)
			assert.Equal(t, filepath.Join(entries[c.lookups[0]], "diff"), target)
			switch c.id {
			case "diffid":
				assert.Equal(t, layer.DiffID.Encoded(), committed.ID)
				assert.Equal(t, layer.DiffID, committed.UncompressedDigest)
				assert.Equal(t, layer.Digest, committed.CompressedDigest)
				assert.Empty(t, committed.TOCDigest)
			case "toc":
				assert.Equal(t, layerID("", trustedLayerIdentityData{
					layerIdentifiedByTOC: true,
					tocDigest:            layer.TOCDigest,
				}), committed.ID)
				assert.Equal(t, layer.TOCDigest, committed.TOCDigest)
			}
		})
	}
}

// alsEntryOptions returns how to spoil the info of a layer digest entry, by name.
func alsEntryOptions(info string, other digest.Digest) alstest.EntryOptions {
	edit := map[string]func(l *storage.Layer){
		"diffid":       func(l *storage.Layer) { l.UncompressedDigest = other },
		"compressed":   func(l *storage.Layer) { l.CompressedDigest = other },
		"size":         func(l *storage.Layer) { l.CompressedSize++ },
		"nodiffid":     func(l *storage.Layer) { l.UncompressedDigest = "" },
		"nocompressed": func(l *storage.Layer) { l.CompressedDigest = "" },
		"claimtoc":     func(l *storage.Layer) { l.TOCDigest = other },
	}
	if info == "malformed" {
		return alstest.EntryOptions{Info: []byte(`{"compressed-diff-digest": `)}
	}
	return alstest.EntryOptions{EditInfo: edit[info]}
}

// lookedUp returns the entries the driver looked at: those it missed, those a warning refused,
// and the one the committed layer’s diff links to, if any.
func lookedUp(h *alsLookups, store storage.Store, dest *storageImageDestination,
	entries map[string]string,
) []string {
	h.mu.Lock()
	res := slices.Clone(h.misses)
	for _, w := range h.warns {
		for _, e := range entries {
			if strings.Contains(w, e+" ") {
				res = append(res, e)
			}
		}
	}
	h.mu.Unlock()
	if id, ok := dest.indexToStorageID[0]; ok {
		if target, err := os.Readlink(filepath.Join(store.GraphRoot(), "overlay", id,
			"diff")); err == nil {
			res = append(res, filepath.Dir(target))
		}
	}
	return slices.Compact(res)
}

func FuzzParseAdditionalLayerStoreKeyPolicy(f *testing.F) {
	for _, seed := range []string{"", "auto", "toc", "layer", "Layer", "toc ", "\x00", "über"} {
		f.Add(seed)
	}
	accepted := map[string]additionalLayerStoreKeyPolicy{
		"": alsKeyPolicyAuto, "auto": alsKeyPolicyAuto, "toc": alsKeyPolicyTOC,
		"layer": alsKeyPolicyLayer,
	}
	f.Fuzz(func(t *testing.T, value string) {
		policy, err := parseAdditionalLayerStoreKeyPolicy(value)
		want, ok := accepted[value]
		if ok {
			require.NoError(t, err)
			assert.Equal(t, want, policy)
			return
		}
		require.Error(t, err)
		assert.Contains(t, err.Error(), AdditionalLayerStoreKeyEnv)
		assert.Contains(t, err.Error(), fmt.Sprintf("%q", value))
	})
}
