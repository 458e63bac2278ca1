//go:build !containers_image_storage_stub

package storage

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/chunked/toc"
)

// AdditionalLayerVerdict is what a pull does with the Additional Layer Store for one layer.
type AdditionalLayerVerdict string

const (
	// AdditionalLayerNotConsulted: the store is not asked for the layer; it is pulled normally.
	AdditionalLayerNotConsulted AdditionalLayerVerdict = "not consulted"
	// AdditionalLayerNotFound: no store has a complete entry; the layer is pulled normally.
	AdditionalLayerNotFound AdditionalLayerVerdict = "not found"
	// AdditionalLayerFound: the entry is complete and consistent; the layer comes from it.
	AdditionalLayerFound AdditionalLayerVerdict = "found and consistent"
	// AdditionalLayerRefused: the entry is refused with a warning; the layer is pulled normally.
	AdditionalLayerRefused AdditionalLayerVerdict = "present but refused"
	// AdditionalLayerFailsPull: the entry, found by TOC digest, makes the pull fail, as upstream.
	AdditionalLayerFailsPull AdditionalLayerVerdict = "present but the pull fails"
)

// AdditionalLayerPlan says how a pull looks one layer up in the Additional Layer Stores, and what
// it finds there.
type AdditionalLayerPlan struct {
	Index       int
	LayerDigest digest.Digest
	TOCDigest   digest.Digest // "" if the layer has no TOC annotations.
	// KeyKind is "layer digest" or "TOC digest"; "" if the stores are not consulted, and then
	// Key and Paths are empty too.
	KeyKind string
	Key     digest.Digest
	Reason  string   // Why this key, or why the stores are not consulted.
	Paths   []string // The entry directories looked at, one per store, in order.
	Entry   string   // The entry that answers (the first complete one), "" if none.
	Verdict AdditionalLayerVerdict
	Problem string // What is wrong with the entries or with Entry; "" if nothing.
}

// PlanAdditionalLayerLookups predicts, layer by layer, what a pull of an image into
// containers-storage with this package does with the Additional Layer Stores stores. keyPolicy
// is a value of AdditionalLayerStoreKeyEnv; srcRef is the Docker reference of the source (nil if
// it has none); layers and config are the image’s layers, as in its manifest, and its config.
// It reads the stores but changes nothing in them.
//
// It fails if keyPolicy is invalid or a TOC digest is malformed, as the pull does.
func PlanAdditionalLayerLookups(keyPolicy string, srcRef reference.Named,
	layers []types.BlobInfo, config *imgspecv1.Image, stores []AdditionalLayerStore,
) ([]AdditionalLayerPlan, error) {
	policy, err := parseAdditionalLayerStoreKeyPolicy(keyPolicy)
	if err != nil {
		return nil, err
	}
	if config == nil {
		config = &imgspecv1.Image{}
	}
	// untrustedLayerDiffID is the function the pull uses to read DiffIDs.
	configReader := &storageImageDestination{}
	configReader.setUntrustedDiffIDValuesFromOCIConfig(config)
	ref := ""
	if srcRef != nil {
		ref = srcRef.String()
	}
	res := make([]AdditionalLayerPlan, 0, len(layers))
	takenBy := map[digest.Digest]int{} // Layer digests found by layer digest, and by which layer.
	for index, layer := range layers {
		plan := AdditionalLayerPlan{Index: index, LayerDigest: layer.Digest}
		tocDigest, err := toc.GetTOCDigest(layer.Annotations)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", index, err)
		}
		// As tryReusingBlobAsPending decides useTOCDigest.
		useTOCDigest := false
		if tocDigest != nil {
			plan.TOCDigest = *tocDigest
			if err := tocDigest.Validate(); err != nil {
				return nil, fmt.Errorf("layer %d: invalid TOC digest: %w", index, err)
			}
			_, err := configReader.untrustedLayerDiffID(index)
			useTOCDigest = err == nil
		}
		lookup := decideAdditionalLayerStoreLookup(policy, srcRef != nil, useTOCDigest,
			func() (digest.Digest, error) { return configReader.untrustedLayerDiffID(index) })
		plan.Reason = lookup.reason
		switch lookup.key {
		case alsKeyNone:
			plan.Verdict = AdditionalLayerNotConsulted
		case alsKeyTOCDigest:
			plan.KeyKind, plan.Key = "TOC digest", plan.TOCDigest
			plan.inspect(stores, ref, func(path string) (AdditionalLayerVerdict, error) {
				return checkTOCEntry(path, plan.TOCDigest)
			})
		case alsKeyLayerDigest:
			plan.KeyKind, plan.Key = "layer digest", layer.Digest
			want := expectedAdditionalLayer{
				layerDigest: layer.Digest, size: layer.Size,
				diffID: lookup.diffID,
			}
			if other, ok := takenBy[layer.Digest]; ok {
				plan.KeyKind, plan.Key = "", ""
				plan.Verdict, plan.Reason = AdditionalLayerNotConsulted, sameEntryTwiceReason(other)
				break
			}
			plan.inspect(stores, ref, func(path string) (AdditionalLayerVerdict, error) {
				if _, err := want.check(path); err != nil {
					return AdditionalLayerRefused, err
				}
				return AdditionalLayerFound, nil
			})
			if plan.Verdict == AdditionalLayerFound {
				takenBy[layer.Digest] = index
			}
		}
		res = append(res, plan)
	}
	return res, nil
}

// inspect fills p.Paths, p.Entry, p.Verdict and p.Problem for a lookup of p.Key in stores, using
// check to judge the entry that answers.
func (p *AdditionalLayerPlan) inspect(stores []AdditionalLayerStore, ref string,
	check func(path string) (AdditionalLayerVerdict, error),
) {
	var incomplete []string
	for _, s := range stores {
		path := s.entry(p.Key, ref)
		p.Paths = append(p.Paths, path)
		if p.Entry != "" {
			continue
		}
		missing := missingEntryFiles(path)
		if len(missing) == 0 {
			p.Entry = path
		} else if _, err := os.Stat(path); err == nil { // An entry, but a partial one.
			incomplete = append(incomplete, fmt.Sprintf("%s lacks %s", path,
				strings.Join(missing, ", ")))
		}
	}
	if p.Entry == "" {
		p.Verdict = AdditionalLayerNotFound
		p.Problem = strings.Join(incomplete, "; ")
		return
	}
	verdict, err := check(p.Entry)
	p.Verdict = verdict
	if err != nil {
		p.Problem = err.Error()
	}
}

// checkTOCEntry judges an entry found by TOC digest by upstream’s rules: c/storage must be able
// to parse its info, and the info must name tocDigest.
func checkTOCEntry(path string, tocDigest digest.Digest) (AdditionalLayerVerdict, error) {
	f, err := os.Open(filepath.Join(path, "info"))
	if err != nil {
		return AdditionalLayerFailsPull, fmt.Errorf("reading info: %w", err)
	}
	defer f.Close()
	var info storage.Layer
	if err := json.NewDecoder(f).Decode(&info); err != nil { // As c/storage reads it.
		return AdditionalLayerFailsPull, fmt.Errorf("parsing info: %w", err)
	}
	if info.TOCDigest != tocDigest {
		return AdditionalLayerFailsPull, fmt.Errorf("info has toc-digest %q, the TOC digest is %q",
			info.TOCDigest, tocDigest)
	}
	return AdditionalLayerFound, nil
}
