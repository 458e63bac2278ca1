package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.podman.io/image/v5/internal/alspull"
	"go.podman.io/image/v5/internal/alstest"
	"go.podman.io/image/v5/storage"
	cstorage "go.podman.io/storage"
)

func TestMain(m *testing.M) {
	if alstest.PrepareProcess() {
		return
	}
	os.Exit(m.Run())
}

// entry says how to write the store entry of one layer: "ok", "" (none), "nodiff", "noblob",
// "diffid" (info names another DiffID), "claimtoc" (info claims a TOC digest), "badtoc" (the
// entry, keyed by TOC digest, names another TOC digest), "garbage" (info is not JSON).
func writeEntry(t *testing.T, root, ref string, l *alstest.Layer, byTOC bool, how string) {
	if how == "" {
		return
	}
	key := l.Digest
	if byTOC {
		key = l.TOCDigest
	}
	other := digest.Digest("sha256:" + strings.Repeat("1", 64))
	opts := map[string]alstest.EntryOptions{
		"ok":       {},
		"nodiff":   {NoDiff: true},
		"noblob":   {NoBlob: true},
		"diffid":   {EditInfo: func(r *cstorage.Layer) { r.UncompressedDigest = other }},
		"claimtoc": {EditInfo: func(r *cstorage.Layer) { r.TOCDigest = other }},
		"badtoc":   {EditInfo: func(r *cstorage.Layer) { r.TOCDigest = other }},
		"garbage":  {Info: []byte("not json")},
	}[how]
	_, err := alstest.WriteALSEntry(root, ref, key, l, opts)
	require.NoError(t, err)
}

// TestPlanMatchesPull runs als-inspect on an image and then pulls it with the same store, and
// checks that the prediction for each layer is what the pull did.
func TestPlanMatchesPull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the overlay driver with an Additional Layer Store needs root")
	}
	for _, c := range []struct {
		knob    string
		zstd    bool
		byTOC   bool // the store keys entries by TOC digest
		withRef bool
		entries []string // per layer, see writeEntry
		exit    int
	}{
		{"", false, false, false, []string{"ok", "ok", "ok", "ok"}, 0},
		{"auto", false, false, true, []string{"ok", "ok", "ok", "ok"}, 0},
		{"auto", false, false, false, []string{"ok", "diffid", "noblob", ""}, 1},
		{"auto", false, false, false, []string{"garbage", "nodiff", "ok", "ok"}, 1},
		{"toc", false, false, false, []string{"ok", "ok", "ok", "ok"}, 1}, // not consulted
		{"layer", true, false, false, []string{"ok", "claimtoc", "ok"}, 1},
		{"layer", true, false, true, []string{"ok", "ok", "ok"}, 0},
		{"auto", true, true, false, []string{"ok", "", "ok"}, 1},
		{"auto", true, false, false, []string{"ok", "ok", "ok"}, 1}, // keyed by the wrong digest
		{"auto", true, true, false, []string{"ok", "badtoc", "ok"}, 1},
	} {
		t.Run("", func(t *testing.T) {
			t.Setenv(storage.AdditionalLayerStoreKeyEnv, c.knob)
			specs := alstest.DemoLayers()
			if c.zstd {
				specs = specs[:3]
				for i := range specs {
					specs[i].Compression = alstest.ZstdChunked
				}
			}
			img, err := alstest.BuildImage(specs)
			require.NoError(t, err)
			registry, err := alstest.StartRegistry()
			require.NoError(t, err)
			defer registry.Close()
			registry.Put("inspect/app", "1.0", img)
			ref := registry.Addr() + "/inspect/app:1.0"
			dir := t.TempDir()
			alsRoot := filepath.Join(dir, "als")
			require.NoError(t, os.Mkdir(alsRoot, 0o755))
			entryRef, store := "", alsRoot
			if c.withRef {
				entryRef, store = ref, alsRoot+":ref"
			}
			for i := range img.Layers {
				writeEntry(t, alsRoot, entryRef, &img.Layers[i], c.byTOC, c.entries[i])
			}

			var stdout, stderr bytes.Buffer
			exit := run(context.Background(), []string{
				"-json", "-tls-verify=false",
				"docker://" + ref, store,
			}, &stdout, &stderr)
			require.Equal(t, c.exit, exit, "stderr: %s", stderr.String())
			var r report
			require.NoError(t, json.Unmarshal(stdout.Bytes(), &r))
			require.Len(t, r.Layers, len(img.Layers))

			failsPull := false
			for _, l := range r.Layers {
				failsPull = failsPull || l.Verdict == storage.AdditionalLayerFailsPull
			}
			cs, err := alspull.NewStore(filepath.Join(dir, "store"), alsRoot, c.withRef)
			require.NoError(t, err)
			defer func() {
				_, err := cs.Shutdown(true)
				assert.NoError(t, err)
			}()
			pulled, err := alspull.Pull(context.Background(), cs, ref, nil)
			if failsPull {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			origins, err := alspull.Origins(cs, pulled)
			require.NoError(t, err)
			for i, o := range origins {
				l := r.Layers[i]
				if l.Verdict == storage.AdditionalLayerFound {
					assert.Equal(t, l.Entry, o.ALSEntry, "layer %d: %+v", i, l)
				} else {
					assert.Empty(t, o.ALSEntry, "layer %d: %+v", i, l)
				}
			}
		})
	}
}

func TestRun(t *testing.T) {
	img, err := alstest.BuildImage(alstest.DemoLayers()[:2])
	require.NoError(t, err)
	registry, err := alstest.StartRegistry()
	require.NoError(t, err)
	defer registry.Close()
	registry.Put("inspect/app", "1.0", img)
	image := "docker://" + registry.Addr() + "/inspect/app:1.0"
	alsRoot := t.TempDir()
	writeEntry(t, alsRoot, "", &img.Layers[0], false, "ok")
	writeEntry(t, alsRoot, "", &img.Layers[1], false, "noblob")

	for _, c := range []struct {
		args []string
		exit int
		out  []string // substrings of stdout, or of stderr if exit is 2
	}{
		{[]string{"-tls-verify=false", image, alsRoot}, 1, []string{
			"reference:   " + registry.Addr() + "/inspect/app:1.0",
			"key:          layer digest (the layer has no usable TOC digest)",
			"looks up:     " + filepath.Join(alsRoot, img.Layers[0].Digest.String()),
			"verdict:      found and consistent",
			"verdict:      not found",
			"lacks blob",
			"1 of 2 layers would come from the Additional Layer Store, 1 would be pulled",
		}},
		{[]string{"-tls-verify=false", "-key", "toc", image, alsRoot}, 1, []string{
			"key:          none: the layer has no usable TOC digest and " +
				storage.AdditionalLayerStoreKeyEnv + "=toc",
		}},
		{[]string{"-tls-verify=false", "-ref", image, alsRoot}, 1, []string{
			"store:       " + alsRoot + " (:ref)",
			"looks up:     " + filepath.Join(alsRoot, alstest.RefDir(registry.Addr()+
				"/inspect/app:1.0"), img.Layers[0].Digest.String()),
		}},
		{[]string{"-tls-verify=false", "-key", "bogus", image, alsRoot}, 2, []string{
			storage.AdditionalLayerStoreKeyEnv, `"bogus"`,
		}},
		{[]string{image}, 2, []string{"usage: als-inspect"}},
		{
			[]string{"-tls-verify=false", "docker://" + registry.Addr() + "/missing:1", alsRoot},
			2,
			[]string{"reading"},
		},
		{[]string{"nosuchtransport:x", alsRoot}, 2, []string{"usage: als-inspect"}},
	} {
		var stdout, stderr bytes.Buffer
		exit := run(context.Background(), c.args, &stdout, &stderr)
		assert.Equal(t, c.exit, exit, "%v: %s%s", c.args, stdout.String(), stderr.String())
		out := stdout.String()
		if c.exit == 2 {
			out = stderr.String()
		}
		for _, s := range c.out {
			assert.Contains(t, out, s, "%v", c.args)
		}
	}
}
