//go:build !containers_image_storage_stub

package storage

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
	"go.podman.io/image/v5/internal/private"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/parsers"
)

// AdditionalLayerStoreKeyEnv is the environment variable that selects by which digest a pull asks
// an Additional Layer Store for a layer:
//
//   - "auto" (the default, also when unset or empty): by TOC digest where the layer has a usable
//     one, by layer digest (the digest of the blob in the manifest) otherwise;
//   - "toc": by TOC digest only, as upstream c/image does since v5.31;
//   - "layer": by layer digest only, whether or not the layer has a TOC digest.
//
// Any other value makes a pull fail at its first layer.
const AdditionalLayerStoreKeyEnv = "CONTAINERS_ADDITIONAL_LAYER_STORE_KEY"

// additionalLayerStoreKeyPolicy is a parsed AdditionalLayerStoreKeyEnv value.
type additionalLayerStoreKeyPolicy int

const (
	alsKeyPolicyAuto additionalLayerStoreKeyPolicy = iota
	alsKeyPolicyTOC
	alsKeyPolicyLayer
)

// parseAdditionalLayerStoreKeyPolicy parses a value of AdditionalLayerStoreKeyEnv.
func parseAdditionalLayerStoreKeyPolicy(value string) (additionalLayerStoreKeyPolicy, error) {
	switch value {
	case "", "auto":
		return alsKeyPolicyAuto, nil
	case "toc":
		return alsKeyPolicyTOC, nil
	case "layer":
		return alsKeyPolicyLayer, nil
	}
	return 0, fmt.Errorf(`invalid %s value %q: accepted values are "auto" (the default), `+
		`"toc" and "layer"`, AdditionalLayerStoreKeyEnv, value)
}

// additionalLayerStoreKey says by which digest a layer is looked up in the Additional Layer Store.
type additionalLayerStoreKey int

const (
	alsKeyNone        additionalLayerStoreKey = iota // The Additional Layer Store is not consulted.
	alsKeyTOCDigest                                  // By options.TOCDigest, with upstream's rules.
	alsKeyLayerDigest                                // By the layer (blob) digest.
)

// additionalLayerStoreLookup is the decision how tryReusingBlobAsPending consults the Additional
// Layer Store for one layer.
type additionalLayerStoreLookup struct {
	key additionalLayerStoreKey
	// diffID is the config’s DiffID for the layer, the identity a layer found by layer digest gets.
	// Set only if key == alsKeyLayerDigest; its format has been validated.
	diffID digest.Digest
	reason string // Why this key, or why the store is not consulted; for logs and als-inspect.
}

// decideAdditionalLayerStoreLookup decides how to consult the Additional Layer Store for a layer
// of an image. hasSrcRef says whether the copy passed a source reference; useTOCDigest whether
// the layer has a TOC digest that tryReusingBlobAsPending may use. layerDiffID returns the image
// config’s DiffID for the layer; it is called only if the decision depends on it.
func decideAdditionalLayerStoreLookup(policy additionalLayerStoreKeyPolicy, hasSrcRef,
	useTOCDigest bool, layerDiffID func() (digest.Digest, error),
) additionalLayerStoreLookup {
	switch {
	case !hasSrcRef:
		return additionalLayerStoreLookup{reason: "the source has no Docker reference"}
	case policy != alsKeyPolicyLayer && useTOCDigest:
		return additionalLayerStoreLookup{
			key:    alsKeyTOCDigest,
			reason: "the layer has a usable TOC digest",
		}
	case policy == alsKeyPolicyTOC:
		return additionalLayerStoreLookup{reason: "the layer has no usable TOC digest and " +
			AdditionalLayerStoreKeyEnv + "=toc"}
	}
	diffID, err := layerDiffID()
	if err == nil && diffID == "" {
		err = errors.New("the DiffID is empty")
	}
	if err == nil {
		err = diffID.Validate()
	}
	if err != nil {
		return additionalLayerStoreLookup{
			reason: fmt.Sprintf("no usable DiffID for the layer in the image config: %v", err),
		}
	}
	reason := "the layer has no usable TOC digest"
	if policy == alsKeyPolicyLayer {
		reason = AdditionalLayerStoreKeyEnv + "=layer"
	}
	return additionalLayerStoreLookup{key: alsKeyLayerDigest, diffID: diffID, reason: reason}
}

// additionalLayerStoreLookupFor decides how to consult the Additional Layer Store for the blob
// tryReusingBlobAsPending was asked about. useTOCDigest is tryReusingBlobAsPending’s own decision
// whether options.TOCDigest may be used at all.
// It fails only if AdditionalLayerStoreKeyEnv has an invalid value.
//
// The caller must not hold s.lock.
func (s *storageImageDestination) additionalLayerStoreLookupFor(blobDigest digest.Digest,
	options *private.TryReusingBlobOptions, useTOCDigest bool,
) (additionalLayerStoreLookup, error) {
	if options.LayerIndex == nil {
		return additionalLayerStoreLookup{}, nil
	}
	index := *options.LayerIndex
	policy, err := parseAdditionalLayerStoreKeyPolicy(os.Getenv(AdditionalLayerStoreKeyEnv))
	if err != nil {
		return additionalLayerStoreLookup{}, err
	}
	lookup := decideAdditionalLayerStoreLookup(policy, options.SrcRef != nil, useTOCDigest,
		func() (digest.Digest, error) { return s.untrustedLayerDiffID(index) })
	switch lookup.key {
	case alsKeyNone:
		logrus.Debugf("Additional Layer Store: not consulted for layer %d (%s): %s",
			index, blobDigest, lookup.reason)
	case alsKeyTOCDigest:
		logrus.Debugf("Additional Layer Store: looking up layer %d by TOC digest %s: %s",
			index, options.TOCDigest, lookup.reason)
	}
	return lookup, nil
}

// tryReusingAdditionalLayerByLayerDigestLocked looks the layer blobDigest (of size bytes, or -1)
// up in the Additional Layer Store by that digest, and if the store has a usable entry, records it
// to be committed for *options.LayerIndex, identified by lookup.diffID.
//
// The trust argument: the image config’s DiffIDs are authenticated by the manifest digest, so
// identifying the layer by the config’s DiffID is exactly what a full pull that did not verify
// the DiffID against the layer contents would do. We trust the store to serve exactly the blob
// with digest blobDigest, as up to c/image v5.30; we refuse entries whose `info` names another
// compressed digest or DiffID, and entries that claim a TOC digest, because c/storage would record
// that TOC digest for the layer and so let later TOC-based lookups deduplicate against a layer
// whose contents nobody matched to that TOC.
//
// Any failure other than “not found” is logged as a warning and reported as (false, …), so
// that the layer is pulled normally: upstream has not taken such layers from an Additional
// Layer Store since v5.31, and a broken store must not break their pulls.
//
// The caller must hold s.lock; lookup.key must be alsKeyLayerDigest.
func (s *storageImageDestination) tryReusingAdditionalLayerByLayerDigestLocked(
	blobDigest digest.Digest, size int64, options *private.TryReusingBlobOptions,
	lookup additionalLayerStoreLookup,
) (bool, private.ReusedBlob) {
	index := *options.LayerIndex
	for other, al := range s.lockProtected.indexToAdditionalLayer {
		if c, ok := al.(*checkedAdditionalLayer); ok && other != index &&
			c.want.layerDigest == blobDigest {
			logrus.Debugf("Additional Layer Store: not looking up layer %d (%s): %s", index,
				blobDigest, sameEntryTwiceReason(other))
			return false, private.ReusedBlob{}
		}
	}
	store := s.imageRef.transport.store
	ref := options.SrcRef.String()
	logrus.Debugf("Additional Layer Store: looking up layer %d by layer digest %s: %s",
		index, blobDigest, lookup.reason)
	aLayer, err := store.LookupAdditionalLayer(blobDigest, ref)
	if errors.Is(err, storage.ErrLayerUnknown) {
		if logrus.IsLevelEnabled(logrus.DebugLevel) {
			paths := additionalLayerStoreEntryPaths(store, blobDigest, ref)
			logrus.Debugf("Additional Layer Store: layer %d (%s) not found at %s", index,
				blobDigest, strings.Join(paths, ", "))
		}
		return false, private.ReusedBlob{}
	}
	path := additionalLayerStoreEntry(store, blobDigest, ref)
	if err != nil {
		logrus.Warnf("Additional Layer Store entry %s for layer %d (%s) is unusable, "+
			"pulling the layer normally: %v", path, index, blobDigest, err)
		return false, private.ReusedBlob{}
	}
	want := expectedAdditionalLayer{layerDigest: blobDigest, size: size, diffID: lookup.diffID}
	info, err := want.check(path)
	if err != nil {
		aLayer.Release()
		logrus.Warnf("Refusing Additional Layer Store entry %s for layer %d, "+
			"pulling the layer normally: %v", path, index, err)
		return false, private.ReusedBlob{}
	}
	logrus.Debugf("Additional Layer Store: layer %d (%s) found at %s, DiffID %s",
		index, blobDigest, path, lookup.diffID)
	s.lockProtected.indexToDiffID[index] = lookup.diffID
	s.lockProtected.indexToAdditionalLayer[index] = &checkedAdditionalLayer{
		AdditionalLayer: aLayer,
		store:           store,
		path:            path,
		want:            want,
	}
	return true, private.ReusedBlob{
		Digest:                   blobDigest,
		Size:                     info.CompressedSize,
		FromAdditionalLayerStore: true,
	}
}

// expectedAdditionalLayer is what the `info` of an Additional Layer Store entry found by layer
// digest must say.
type expectedAdditionalLayer struct {
	layerDigest digest.Digest // The compressed digest the entry was looked up by.
	size        int64         // The blob’s size from the manifest, or -1 if unknown.
	diffID      digest.Digest // The DiffID the image config gives for the layer.
}

// check reads the `info` of the entry at path and returns it if it agrees with e.
func (e expectedAdditionalLayer) check(path string) (*storage.Layer, error) {
	data, err := os.ReadFile(filepath.Join(path, "info"))
	if err != nil {
		return nil, fmt.Errorf("reading info: %w", err)
	}
	var info storage.Layer
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, fmt.Errorf("parsing info: %w", err)
	}
	if err := e.agrees(&info); err != nil {
		return nil, err
	}
	return &info, nil
}

// agrees returns an error naming the first field of the layer record l that contradicts e or is
// missing.
func (e expectedAdditionalLayer) agrees(l *storage.Layer) error {
	switch {
	case l.CompressedDigest != e.layerDigest:
		return fmt.Errorf("info has compressed-diff-digest %q, the layer digest is %q",
			l.CompressedDigest, e.layerDigest)
	case l.UncompressedDigest != e.diffID:
		return fmt.Errorf("info has diff-digest %q, the image config’s DiffID is %q",
			l.UncompressedDigest, e.diffID)
	case l.TOCDigest != "":
		return fmt.Errorf("info has toc-digest %q, but the layer was looked up by layer digest "+
			"and must not be identified by a TOC digest", l.TOCDigest)
	case e.size != -1 && l.CompressedSize != e.size:
		return fmt.Errorf("info has compressed-size %d, the manifest says %d",
			l.CompressedSize, e.size)
	case l.CompressedSize <= 0:
		return fmt.Errorf("info has no compressed-size")
	}
	return nil
}

// checkedAdditionalLayer is an Additional Layer Store layer found by layer digest. Its PutAs
// verifies the layer record c/storage actually created, because c/storage reads the entry’s
// `info` again when it creates the layer, and the store may have changed it since it was checked.
type checkedAdditionalLayer struct {
	storage.AdditionalLayer
	store storage.Store
	path  string
	want  expectedAdditionalLayer
}

// PutAs creates the layer id on top of parent from the Additional Layer Store. If the created
// record does not match what was checked at lookup, it deletes the layer and fails.
func (c *checkedAdditionalLayer) PutAs(id, parent string, names []string) (*storage.Layer, error) {
	layer, err := c.AdditionalLayer.PutAs(id, parent, names)
	if err != nil {
		return layer, fmt.Errorf("creating a layer from Additional Layer Store entry %s: %w",
			c.path, err)
	}
	err = c.want.agrees(layer)
	if err == nil {
		// c/storage links the layer to the entry’s diff without looking at it.
		if _, statErr := os.Stat(filepath.Join(c.path, "diff")); statErr != nil {
			err = fmt.Errorf("its diff is gone: %w", statErr)
		}
	}
	if err != nil {
		if delErr := c.store.DeleteLayer(layer.ID); delErr != nil {
			logrus.Errorf("Deleting layer %s made from a changed Additional Layer Store entry: %v",
				layer.ID, delErr)
		}
		return nil, fmt.Errorf("Additional Layer Store entry %s changed after it was checked: %w",
			c.path, err)
	}
	return layer, nil
}

// sameEntryTwiceReason explains why a layer whose blob layer other takes from the Additional Layer
// Store already is not taken from there again.
func sameEntryTwiceReason(other int) string {
	return fmt.Sprintf("layer %d of the image takes the same entry, and overlay cannot stack "+
		"one directory twice", other)
}

// AdditionalLayerStore is one Additional Layer Store as configured for the overlay driver.
type AdditionalLayerStore struct {
	Root          string
	WithReference bool // Configured with ":ref": entries are under a directory per image reference.
}

// entry returns the directory a lookup by key for the image reference ref reads in the store.
func (a AdditionalLayerStore) entry(key digest.Digest, ref string) string {
	if a.WithReference {
		return filepath.Join(a.Root, base64.StdEncoding.EncodeToString([]byte(ref)), key.String())
	}
	return filepath.Join(a.Root, key.String())
}

// additionalLayerStores returns the Additional Layer Stores configured for store’s graph driver,
// in the order the overlay driver consults them.
func additionalLayerStores(store storage.Store) []AdditionalLayerStore {
	var res []AdditionalLayerStore
	for _, option := range store.GraphOptions() {
		key, value, err := parsers.ParseKeyValueOpt(option)
		if err != nil || value == "" {
			continue
		}
		driver, name, found := strings.Cut(strings.ToLower(key), ".")
		if !found {
			driver, name = "", driver
		}
		if name != "additionallayerstore" ||
			(driver != "" && driver != "overlay" && driver != "overlay2") {
			continue
		}
		res = append(res, ParseAdditionalLayerStores(value)...)
	}
	return res
}

// ParseAdditionalLayerStores parses a value of the overlay driver’s additionallayerstore option,
// "/path[:ref][,/path[:ref]…]", as the driver reads it. The driver refuses invalid values before
// any lookup happens.
func ParseAdditionalLayerStores(value string) []AdditionalLayerStore {
	var res []AdditionalLayerStore
	for spec := range strings.SplitSeq(value, ",") {
		root, opts, _ := strings.Cut(spec, ":")
		res = append(res, AdditionalLayerStore{
			Root:          filepath.Clean(root),
			WithReference: opts == "ref",
		})
	}
	return res
}

// additionalLayerStoreEntryPaths returns the directories a lookup by key for the image reference
// ref reads, one per configured store.
func additionalLayerStoreEntryPaths(store storage.Store, key digest.Digest, ref string) []string {
	var res []string
	for _, a := range additionalLayerStores(store) {
		res = append(res, a.entry(key, ref))
	}
	return res
}

// additionalLayerStoreEntry returns the directory the overlay driver takes a lookup by key for
// ref from: the first whose diff, info and blob exist; or, if there is none, the first candidate.
func additionalLayerStoreEntry(store storage.Store, key digest.Digest, ref string) string {
	paths := additionalLayerStoreEntryPaths(store, key, ref)
	if len(paths) == 1 {
		return paths[0] // The driver had no other place to take it from.
	}
	for _, p := range paths {
		if additionalLayerStoreEntryComplete(p) {
			return p
		}
	}
	if len(paths) == 0 {
		return "(no Additional Layer Store configured)"
	}
	return paths[0]
}

// additionalLayerStoreEntryComplete reports whether the entry at path has the files the overlay
// driver requires before it uses the entry.
func additionalLayerStoreEntryComplete(path string) bool {
	return len(missingEntryFiles(path)) == 0
}

// missingEntryFiles returns which of the files the overlay driver requires the entry at path
// lacks.
func missingEntryFiles(path string) []string {
	var missing []string
	for _, name := range []string{"diff", "info", "blob"} {
		if _, err := os.Stat(filepath.Join(path, name)); err != nil {
			missing = append(missing, name)
		}
	}
	return missing
}
