// Package alsadversarial pulls images through Additional Layer Stores that misbehave: entries
// that lie or are incomplete, a FUSE store that fails, vanishes or stalls, images built to confuse
// layer identity. Every case asserts how the pull ends (a verified layer from the store, a normal
// pull, or a clear error) and what the store holds afterwards.
package alsadversarial

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.podman.io/image/v5/internal/alspull"
	"go.podman.io/image/v5/internal/alstest"
	"go.podman.io/storage"
)

// other is a digest no layer has.
var other = digest.Digest("sha256:" + strings.Repeat("1", 64))

// layers returns n small gzip layers whose contents depend on tag.
func layers(tag string, n int) []alstest.LayerSpec {
	var res []alstest.LayerSpec
	for i := range n {
		res = append(res, alstest.LayerSpec{Files: []alstest.File{
			{Path: "/data", Dir: true},
			{Path: fmt.Sprintf("/data/%s-%d", tag, i), Content: fmt.Appendf(nil, "%s\n", tag)},
			{Path: "/data/last", Content: fmt.Appendf(nil, "written by %s %d\n", tag, i)},
		}})
	}
	return res
}

// zstdLayers returns n small zstd:chunked layers whose contents depend on tag.
func zstdLayers(tag string, n int) []alstest.LayerSpec {
	res := layers(tag, n)
	for i := range res {
		res[i].Compression = alstest.ZstdChunked
		res[i].Files = res[i].Files[:2] // zstd:chunked cannot hold one path in two layers’ stacks
	}
	return res
}

// adversarialCase is one misbehaviour, run on the fixtures it applies to.
type adversarialCase struct {
	name     string
	fixtures []string // "dir", "fuse"
	run      func(t *testing.T, kind string)
}

var both, dirOnly, fuseOnly = []string{"dir", "fuse"}, []string{"dir"}, []string{"fuse"}

func TestAdversarialALS(t *testing.T) {
	cases := []adversarialCase{
		{"info-compressed-digest-mismatch", both, refusedInfo(
			func(l *storage.Layer) { l.CompressedDigest = other },
			func(l *alstest.Layer) []string { return values(other, l.Digest) })},
		{"info-diffid-mismatch", both, refusedInfo(
			func(l *storage.Layer) { l.UncompressedDigest = other },
			func(l *alstest.Layer) []string { return values(other, l.DiffID) })},
		{"info-without-diffid", both, refusedInfo(
			func(l *storage.Layer) { l.UncompressedDigest = "" },
			func(l *alstest.Layer) []string { return values(`diff-digest ""`, l.DiffID) })},
		{"info-claims-toc", both, refusedInfo(
			func(l *storage.Layer) { l.TOCDigest = other },
			func(*alstest.Layer) []string { return []string{"toc-digest", other.String()} })},
		{"info-size-mismatch", both, refusedInfo(
			func(l *storage.Layer) { l.CompressedSize++ },
			func(l *alstest.Layer) []string { return []string{fmt.Sprint(l.Size + 1)} })},
		{"info-malformed", both, refusedEntry(alstest.EntryOptions{Info: []byte(`{"compressed`)})},
		{"no-diff", both, incompleteEntry(alstest.EntryOptions{NoDiff: true})},
		{"no-blob", both, incompleteEntry(alstest.EntryOptions{NoBlob: true})},
		// Before the commit, c/storage’s lookup and the fork’s check each open info once;
		// c/storage’s lookup reaches diff once.
		{"info-gone-at-commit", fuseOnly, goneAtCommit("info", "open", 2, "creating a layer from")},
		{"diff-gone-at-commit", fuseOnly, goneAtCommit("diff", "lookup", 1, "its diff is gone")},
		{"info-changed-at-commit", fuseOnly, infoChangedAtCommit},
		{"eio-on-lookup", fuseOnly, eioOnLookup},
		{"eio-on-read-of-diff", fuseOnly, eioOnRead},
		{"slow-store", fuseOnly, slowStore},
		{"unreadable-root", fuseOnly, unreadableRoot},
		{"toc-layer-by-layer-digest", both, tocLayerByLayerDigest},
		{"toc-of-another-image", dirOnly, tocOfAnotherImage},
		{"layer-digest-of-another-image", dirOnly, layerDigestOfAnotherImage},
		{"same-blob-twice", both, sameBlobTwice},
		{"no-config-diffids", dirOnly, noConfigDiffIDs},
		{"manifest-list", dirOnly, manifestList},
		{"concurrent-pulls", both, concurrentPulls},
		{"base64-of-references", both, base64SlashPlus},
		{"eio-store-before-healthy", both, eioStoreBeforeHealthy},
		{"garbage-knob", dirOnly, garbageKnob},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, kind := range c.fixtures {
				t.Run(kind, func(t *testing.T) { c.run(t, kind) })
			}
		})
	}
}

// values returns vs as strings, for the texts a warning must contain.
func values(vs ...any) []string {
	var res []string
	for _, v := range vs {
		res = append(res, fmt.Sprint(v))
	}
	return res
}

// refusedInfo: the entry of layer 1 has an info edited by edit. The fork refuses it with a
// warning that names the entry and the values want returns, and pulls the layer normally.
func refusedInfo(edit func(*storage.Layer), want func(*alstest.Layer) []string,
) func(*testing.T, string) {
	return func(t *testing.T, kind string) {
		checkRefused(t, kind, alstest.EntryOptions{EditInfo: edit}, want)
	}
}

// refusedEntry: as refusedInfo, for an entry written with opts.
func refusedEntry(opts alstest.EntryOptions) func(*testing.T, string) {
	return func(t *testing.T, kind string) { checkRefused(t, kind, opts, nil) }
}

func checkRefused(t *testing.T, kind string, opts alstest.EntryOptions,
	want func(*alstest.Layer) []string,
) {
	e := newEnv(t, kind, false)
	img, ref := e.serve(t, "refused", layers("refused", 3))
	entries := []string{
		e.put(t, ref, &img.Layers[0], img.Layers[0].Digest, alstest.EntryOptions{}),
		"",
		e.put(t, ref, &img.Layers[2], img.Layers[2].Digest, alstest.EntryOptions{}),
	}
	bad := e.put(t, ref, &img.Layers[1], img.Layers[1].Digest, opts)
	origins := e.mustPull(t, ref, 3)
	checkIdentity(t, img, origins, entries)
	warned := warnings.take()
	require.Len(t, warned, 1)
	assert.Contains(t, warned[0], bad)
	if want != nil {
		for _, s := range want(&img.Layers[1]) {
			assert.Contains(t, warned[0], s)
		}
	}
	assert.NotZero(t, e.registry.BlobBytesServed(img.Layers[1].Digest))
	e.checkFiles(t, img, origins[2].Layer.ID)
}

// incompleteEntry: the entry of layer 1 lacks a part c/storage requires, so it is not found,
// and the layer is pulled normally without a warning.
func incompleteEntry(opts alstest.EntryOptions) func(*testing.T, string) {
	return func(t *testing.T, kind string) {
		e := newEnv(t, kind, false)
		img, ref := e.serve(t, "incomplete", layers("incomplete", 2))
		e.put(t, ref, &img.Layers[1], img.Layers[1].Digest, opts)
		entries := []string{e.put(t, ref, &img.Layers[0], img.Layers[0].Digest,
			alstest.EntryOptions{}), ""}
		origins := e.mustPull(t, ref, 2)
		checkIdentity(t, img, origins, entries)
		assert.Empty(t, warnings.take())
		e.checkFiles(t, img, origins[1].Layer.ID)
	}
}

// goneAtCommit: the first layer’s part (info or diff) disappears after the lookup checked it,
// before c/storage creates the layer. The pull fails with an error naming the entry, and the
// store holds what it held before.
func goneAtCommit(part, op string, after int, errText string) func(*testing.T, string) {
	return func(t *testing.T, kind string) {
		e := newEnv(t, kind, false)
		img, ref := e.serve(t, "gone", layers("gone", 2))
		e.fill(t, ref, img)
		e.deny(img)
		entry := e.entry(ref, img.Layers[0].Digest)
		require.NoError(t, e.fix.fuse.SetFaults([]alstest.Fault{{
			Path: rel(e, entry) + "/" + part, Op: op, Errno: "ENOENT", After: after,
		}}))
		before := e.state(t)
		_, err := e.pull(ref)
		require.Error(t, err)
		assert.Contains(t, err.Error(), errText)
		assert.Contains(t, err.Error(), entry)
		assert.Equal(t, before, e.state(t))
	}
}

// infoChangedAtCommit: the first layer’s info names another DiffID by the time c/storage reads
// it to create the layer, after the fork checked it. The fork deletes the layer c/storage made
// and fails the pull with an error naming the entry; the store holds what it held before.
func infoChangedAtCommit(t *testing.T, kind string) {
	e := newEnv(t, kind, false)
	img, ref := e.serve(t, "changed", layers("changed", 1))
	entry := e.put(t, ref, &img.Layers[0], img.Layers[0].Digest, alstest.EntryOptions{})
	e.deny(img)
	info := rel(e, entry) + "/info"
	// c/storage’s lookup and the fork’s check open info first; the third open, c/storage’s when
	// it creates the layer, waits until the backing file has been rewritten.
	require.NoError(t, e.fix.fuse.SetFaults([]alstest.Fault{{
		Path: info, Op: "open",
		DelayMS: 1000, After: 2,
	}}))
	rewritten := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			stats, err := e.fix.fuse.Stats()
			if err != nil {
				rewritten <- err
				return
			}
			if stats.Ops["open"][info] >= 3 {
				rewritten <- editInPlace(filepath.Join(e.fix.backing, info),
					func(r *storage.Layer) { r.UncompressedDigest = other })
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		rewritten <- errors.New("c/storage never opened info a third time")
	}()
	before := e.state(t)
	_, err := e.pull(ref)
	require.NoError(t, <-rewritten)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "changed after it was checked")
	assert.Contains(t, err.Error(), entry)
	assert.Contains(t, err.Error(), other.String())
	assert.Equal(t, before, e.state(t))
}

// editInPlace rewrites the info file at path, keeping its inode, with edit applied.
func editInPlace(path string, edit func(*storage.Layer)) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var record storage.Layer
	if err := json.Unmarshal(data, &record); err != nil {
		return err
	}
	edit(&record)
	if data, err = json.Marshal(record); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// rel returns path relative to the FUSE fixture’s mount point.
func rel(e *env, path string) string {
	return strings.TrimPrefix(path, e.fix.root+"/")
}

// eioOnLookup: looking the first layer’s entry up fails with EIO; that layer is pulled normally,
// the others come from the store.
func eioOnLookup(t *testing.T, kind string) {
	e := newEnv(t, kind, false)
	img, ref := e.serve(t, "eio", layers("eio", 2))
	e.fill(t, ref, img)
	require.NoError(t, e.fix.fuse.SetFaults([]alstest.Fault{{
		Path: rel(e, e.entry(ref, img.Layers[0].Digest)), Op: "lookup", Errno: "EIO",
	}}))
	origins := e.mustPull(t, ref, 2)
	checkIdentity(t, img, origins, []string{"", e.entry(ref, img.Layers[1].Digest)})
	e.checkFiles(t, img, origins[1].Layer.ID)
}

// eioOnRead: reading a file of a layer’s diff fails with EIO. A pull does not read layer
// contents (that is the point of the store), so the pull succeeds with the layer from the
// store, and the error reaches whoever reads the file.
func eioOnRead(t *testing.T, kind string) {
	e := newEnv(t, kind, false)
	img, ref := e.serve(t, "eioread", layers("eioread", 1))
	entry := e.put(t, ref, &img.Layers[0], img.Layers[0].Digest, alstest.EntryOptions{})
	e.deny(img)
	require.NoError(t, e.fix.fuse.SetFaults([]alstest.Fault{{
		Path: rel(e, entry) + "/diff/data/last", Op: "read", Errno: "EIO",
	}}))
	origins := e.mustPull(t, ref, 1)
	checkIdentity(t, img, origins, []string{entry})
	_, err := alspull.ReadFiles(e.store, origins[0].Layer.ID, []string{"data/last"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "input/output error")
}

// slowStore: every lookup takes 200 ms; the pull still takes every layer from the store.
func slowStore(t *testing.T, kind string) {
	e := newEnv(t, kind, false)
	img, ref := e.serve(t, "slow", layers("slow", 2))
	e.fill(t, ref, img)
	e.deny(img)
	require.NoError(t, e.fix.fuse.SetFaults([]alstest.Fault{{
		Path: "*", Op: "lookup",
		DelayMS: 200,
	}}))
	origins := e.mustPull(t, ref, 2)
	checkIdentity(t, img, origins, e.entries(ref, img))
}

// unreadableRoot: every lookup under the store’s root fails with EACCES; the image is pulled
// normally.
func unreadableRoot(t *testing.T, kind string) {
	e := newEnv(t, kind, false)
	img, ref := e.serve(t, "unreadable", layers("unreadable", 2))
	e.fill(t, ref, img)
	require.NoError(t, e.fix.fuse.SetFaults([]alstest.Fault{{
		Path: "*", Op: "lookup",
		Errno: "EACCES",
	}}))
	origins := e.mustPull(t, ref, 2)
	checkIdentity(t, img, origins, []string{"", ""})
	assert.Empty(t, warnings.take())
}

// tocLayerByLayerDigest: with the knob at "layer", zstd:chunked layers come from entries keyed
// by layer digest, identified by DiffID, with no TOC digest attached.
func tocLayerByLayerDigest(t *testing.T, kind string) {
	e := newEnv(t, kind, false)
	t.Setenv(keyEnv, "layer")
	img, ref := e.serve(t, "toc", zstdLayers("toc", 2))
	e.fill(t, ref, img)
	e.deny(img)
	origins := e.mustPull(t, ref, 2)
	checkIdentity(t, img, origins, e.entries(ref, img))
	for _, l := range img.Layers {
		found, err := e.store.LayersByTOCDigest(l.TOCDigest)
		if err == nil {
			assert.Empty(t, found)
		}
	}
}

// withAnnotations returns a copy of img whose manifest gives layer 0 the annotations of from.
func withAnnotations(t *testing.T, img *alstest.Image, from *alstest.Layer) *alstest.Image {
	var diffIDs []digest.Digest
	for _, l := range img.Layers {
		diffIDs = append(diffIDs, l.DiffID)
	}
	img.Layers[0].Annotations, img.Layers[0].TOCDigest = from.Annotations, from.TOCDigest
	res, err := img.WithConfigDiffIDs(diffIDs)
	require.NoError(t, err)
	return res
}

// tocOfAnotherImage: an attacker’s image pairs its own layer blob with the victim’s TOC
// annotations. Whichever is pulled first, under either knob, the victim’s image ends up with
// the victim’s contents, and no layer found by layer digest carries the victim’s TOC digest.
func tocOfAnotherImage(t *testing.T, kind string) {
	for _, c := range []struct {
		knob          string
		attackerFirst bool
	}{{"auto", true}, {"auto", false}, {"layer", true}, {"layer", false}} {
		t.Run(c.knob+fmt.Sprintf("-attacker-first=%v", c.attackerFirst), func(t *testing.T) {
			e := newEnv(t, kind, false)
			t.Setenv(keyEnv, c.knob)
			victim, victimRef := e.serve(t, "victim", zstdLayers("victim", 1))
			built, err := alstest.BuildImage(zstdLayers("attacker", 1))
			require.NoError(t, err)
			attacker := withAnnotations(t, built, &victim.Layers[0])
			e.registry.Put("attacker", "1", attacker)
			attackerRef := e.registry.Addr() + "/attacker:1"
			v := &victim.Layers[0]
			e.put(t, victimRef, v, v.TOCDigest, alstest.EntryOptions{})
			e.put(t, victimRef, v, v.Digest, alstest.EntryOptions{})
			a := &attacker.Layers[0]
			e.put(t, attackerRef, a, a.Digest, alstest.EntryOptions{})

			order := []string{victimRef, attackerRef}
			if c.attackerFirst {
				order = []string{attackerRef, victimRef}
			}
			for _, r := range order {
				_, _ = e.pull(r) // The attacker’s pull may fail; the victim’s is checked below.
			}
			origins := e.mustPull(t, victimRef, 1)
			e.checkFiles(t, victim, origins[0].Layer.ID)
			assert.Equal(t, v.DiffID, origins[0].Layer.UncompressedDigest)
			all, err := e.store.Layers()
			require.NoError(t, err)
			for _, l := range all {
				if l.TOCDigest == v.TOCDigest {
					assert.Equal(t, v.DiffID, l.UncompressedDigest, "layer %s", l.ID)
					assert.Equal(t, v.Digest, l.CompressedDigest, "layer %s", l.ID)
				}
			}
		})
	}
}

// layerDigestOfAnotherImage: an attacker’s image lists the victim’s layer blob, but with its own
// TOC annotations and DiffID. The attacker’s pull never gives the victim’s layer digest to a
// layer with other contents, so the victim, pulled after it, gets its own contents.
func layerDigestOfAnotherImage(t *testing.T, kind string) {
	for _, knob := range []string{"auto", "layer"} {
		t.Run(knob, func(t *testing.T) {
			e := newEnv(t, kind, false)
			t.Setenv(keyEnv, knob)
			victim, victimRef := e.serve(t, "victim", layers("victim", 1))
			own, err := alstest.BuildImage(zstdLayers("attacker", 1))
			require.NoError(t, err)
			a := own.Layers[0]
			e.put(t, "", &a, a.TOCDigest, alstest.EntryOptions{})
			// The attacker’s manifest: the victim’s blob, the attacker’s TOC and DiffID.
			forged := *own
			forged.Layers = []alstest.Layer{victim.Layers[0]}
			forged.Layers[0].Annotations, forged.Layers[0].TOCDigest = a.Annotations, a.TOCDigest
			attacker, err := forged.WithConfigDiffIDs([]digest.Digest{a.DiffID})
			require.NoError(t, err)
			e.registry.Put("attacker", "1", attacker)

			_, _ = e.pull(e.registry.Addr() + "/attacker:1")
			origins := e.mustPull(t, victimRef, 1)
			e.checkFiles(t, victim, origins[0].Layer.ID)
			checkIdentity(t, victim, origins, []string{""})
		})
	}
}

// sameBlobTwice: an image lists one blob twice. Overlay cannot stack one directory twice, so
// the second occurrence is not taken from the store again; the image mounts and reads right.
func sameBlobTwice(t *testing.T, kind string) {
	e := newEnv(t, kind, false)
	specs := layers("twice", 2)
	img, ref := e.serve(t, "twice", append(specs, specs[0]))
	require.Equal(t, img.Layers[0].Digest, img.Layers[2].Digest)
	e.fill(t, ref, &alstest.Image{Layers: img.Layers[:2]})
	origins := e.mustPull(t, ref, 3)
	// Layers are looked up in parallel: either occurrence may be the one taken from the store.
	entries := []string{e.entry(ref, img.Layers[0].Digest), e.entry(ref, img.Layers[1].Digest), ""}
	if origins[0].ALSEntry == "" {
		entries[0], entries[2] = entries[2], entries[0]
	}
	checkIdentity(t, img, origins, entries)
	e.checkFiles(t, img, origins[2].Layer.ID)
}

// noConfigDiffIDs: the config lists no DiffIDs, so a layer found by layer digest could get no
// identity: the store is not consulted and the image is pulled normally.
func noConfigDiffIDs(t *testing.T, kind string) {
	e := newEnv(t, kind, false)
	built, err := alstest.BuildImage(layers("nodiffids", 2))
	require.NoError(t, err)
	img, err := built.WithConfigDiffIDs(nil)
	require.NoError(t, err)
	e.registry.Put("nodiffids", "1", img)
	ref := e.registry.Addr() + "/nodiffids:1"
	e.fill(t, ref, img)
	origins := e.mustPull(t, ref, 2)
	for i, o := range origins {
		assert.Empty(t, o.ALSEntry, "layer %d", i)
		assert.Equal(t, img.Layers[i].DiffID, o.Layer.UncompressedDigest, "layer %d", i)
	}
	e.checkFiles(t, img, origins[1].Layer.ID)
}

// manifestList: the reference pulled is an OCI index; the store is keyed (with :ref) by that
// reference, and the chosen instance’s layers come from it.
func manifestList(t *testing.T, kind string) {
	e := newEnv(t, kind, true)
	img, err := alstest.BuildImage(layers("list", 2))
	require.NoError(t, err)
	index, err := img.Index()
	require.NoError(t, err)
	e.registry.PutIndex("list", "1", index, img)
	ref := e.registry.Addr() + "/list:1"
	e.fill(t, ref, img)
	e.deny(img)
	origins := e.mustPull(t, ref, 2)
	checkIdentity(t, img, origins, e.entries(ref, img))
}

// concurrentPulls: 8 pulls at once, into one store, of images sharing their two lower layers;
// every layer comes from the store, and each shared layer exists once.
func concurrentPulls(t *testing.T, kind string) {
	e := newEnv(t, kind, false)
	base := layers("shared", 2)
	var imgs []*alstest.Image
	var refs []string
	for i := range 8 {
		img, ref := e.serve(t, fmt.Sprintf("concurrent%d", i),
			append(append([]alstest.LayerSpec{}, base...), layers(fmt.Sprintf("own%d", i), 1)...))
		if i == 0 {
			e.fill(t, ref, &alstest.Image{Layers: img.Layers[:2]})
		}
		e.put(t, ref, &img.Layers[2], img.Layers[2].Digest, alstest.EntryOptions{})
		e.deny(img)
		imgs, refs = append(imgs, img), append(refs, ref)
	}
	errs := make([]error, len(refs))
	var wg sync.WaitGroup
	for i, ref := range refs {
		wg.Go(func() { _, errs[i] = e.pull(ref) })
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "pull %d", i)
	}
	for i, ref := range refs {
		checkIdentity(t, imgs[i], e.mustPull(t, ref, 3), e.entries(ref, imgs[i]))
	}
	all, err := e.store.Layers()
	require.NoError(t, err)
	assert.Len(t, all, 2+8)
	e.checkFiles(t, imgs[7], e.mustPull(t, refs[7], 3)[2].Layer.ID)
}

// base64SlashPlus: a store with :ref keys entries by the base64 of the reference, and the driver
// joins that into a path, so a "/" in it would make nested directories. No Docker reference can
// produce "/" or "+": base64 encodes each 3 bytes on their own, and no 3 characters a reference
// may contain encode to either, which the first part checks exhaustively. The second part pulls
// a reference with every kind of character a reference may contain.
func base64SlashPlus(t *testing.T, kind string) {
	const refChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:/@"
	group := make([]byte, 3)
	for _, a := range []byte(refChars) {
		for _, b := range []byte(refChars) {
			for _, c := range []byte(refChars) {
				group[0], group[1], group[2] = a, b, c
				for n := 1; n <= 3; n++ { // Also the short groups at the end of a string.
					enc := base64.StdEncoding.EncodeToString(group[:n])
					require.False(t, strings.ContainsAny(enc, "/+"), "%q: %q", group[:n], enc)
				}
			}
		}
	}

	e := newEnv(t, kind, true)
	built, err := alstest.BuildImage(layers("b64", 1))
	require.NoError(t, err)
	e.registry.Put("a.b-c_d/e__f", "T_a-g.9", built)
	ref := e.registry.Addr() + "/a.b-c_d/e__f:T_a-g.9"
	entry := e.put(t, ref, &built.Layers[0], built.Layers[0].Digest, alstest.EntryOptions{})
	key := built.Layers[0].Digest.String()
	require.Equal(t, filepath.Join(e.fix.root, alstest.RefDir(ref), key), entry)
	e.deny(built)
	origins := e.mustPull(t, ref, 1)
	checkIdentity(t, built, origins, []string{entry})
}

// eioStoreBeforeHealthy: a store that answers every lookup with EIO is listed before a healthy
// one. Images the healthy store holds come from it; images no store holds are pulled normally.
func eioStoreBeforeHealthy(t *testing.T, kind string) {
	broken := newFixture(t, "fuse")
	// Only lookups: the driver stats the root when the store is opened, and refuses a store
	// whose root it cannot stat.
	require.NoError(t, broken.fuse.SetFaults([]alstest.Fault{{Op: "lookup", Errno: "EIO"}}))
	e := newEnv(t, kind, false, broken.root)
	held, heldRef := e.serve(t, "held", layers("held", 2))
	e.fill(t, heldRef, held)
	e.deny(held)
	elsewhere, elsewhereRef := e.serve(t, "elsewhere", layers("elsewhere", 2))

	origins := e.mustPull(t, heldRef, 2)
	checkIdentity(t, held, origins, e.entries(heldRef, held))
	origins = e.mustPull(t, elsewhereRef, 2)
	checkIdentity(t, elsewhere, origins, []string{"", ""})
	assert.Empty(t, warnings.take())
}

// garbageKnob: an invalid knob value fails the pull at its first layer, naming the variable,
// the value and the accepted values, and leaves the store as it was.
func garbageKnob(t *testing.T, kind string) {
	e := newEnv(t, kind, false)
	img, ref := e.serve(t, "knob", layers("knob", 2))
	e.fill(t, ref, img)
	for _, value := range []string{"Layer", "toc ", "1", "layer,toc", "überlayer", "auto\n"} {
		t.Setenv(keyEnv, value)
		before := e.state(t)
		_, err := e.pull(ref)
		require.Error(t, err, "%q", value)
		assert.Contains(t, err.Error(), keyEnv)
		assert.Contains(t, err.Error(), fmt.Sprintf("%q", value))
		assert.Contains(t, err.Error(), `"auto"`)
		assert.Equal(t, before, e.state(t), "%q", value)
	}
}
