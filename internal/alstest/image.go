// Package alstest builds small, deterministic OCI images, lays out Additional Layer Store
// entries for them and serves them from an in-process registry on 127.0.0.1.
//
// It exists so that tests and the demo program can exercise pulls through an Additional
// Layer Store without network access or prebuilt fixtures. Nothing here fails a test by
// itself: every problem is returned as an error, so the package is usable outside "go test".
package alstest

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// fixedTime is used for every timestamp so that rebuilding an image gives identical bytes.
var fixedTime = time.Date(2024, time.January, 1, 0, 0, 0, 0, time.UTC)

// Compression selects how a layer blob is compressed, which decides the layer media type
// and whether the layer can be pulled partially.
type Compression int

const (
	// Gzip is a tar+gzip layer, the most common kind found in registries.
	Gzip Compression = iota
	// ZstdChunked is a tar+zstd layer written by c/storage's zstd:chunked compressor, carrying a
	// TOC so that c/storage can pull it partially and look it up by TOC digest.
	ZstdChunked
	// Uncompressed is a plain tar layer whose blob digest equals its DiffID.
	Uncompressed
)

// String names the compression as c/image does, for test names and messages.
func (c Compression) String() string {
	switch c {
	case Gzip:
		return "gzip"
	case ZstdChunked:
		return "zstd:chunked"
	case Uncompressed:
		return "uncompressed"
	default:
		return fmt.Sprintf("Compression(%d)", int(c))
	}
}

// File is one entry of a layer. It describes the layer contents once so that both the tar
// blob and an extracted ALS diff directory can be produced from it.
type File struct {
	// Path is the path inside the root filesystem; a leading "/" is optional.
	Path string
	// Content is the content of a regular file.
	Content []byte
	// Mode holds permission bits; 0 means 0o644 for files and 0o755 for directories.
	Mode os.FileMode
	// Dir makes the entry a directory.
	Dir bool
	// Symlink, if not empty, makes the entry a symbolic link to this target.
	Symlink string
}

// LayerSpec describes the contents and compression of one layer to build.
type LayerSpec struct {
	// Files are written to the tar in this order; a later entry for the same path wins.
	// ZstdChunked layers cannot hold the same path twice.
	Files []File
	// Compression selects the blob format.
	Compression Compression
}

// Layer is one built layer, with every digest and size that a manifest, a config or an ALS
// entry needs to refer to it.
type Layer struct {
	// Spec is the specification the layer was built from.
	Spec LayerSpec
	// Blob is the compressed blob as served by the registry.
	Blob []byte
	// Digest is the blob digest.
	Digest digest.Digest
	// Size is the blob size.
	Size int64
	// DiffID is the sha256 digest of the uncompressed tar.
	DiffID digest.Digest
	// DiffSize is the size of the uncompressed tar.
	DiffSize int64
	// TOCDigest is the zstd:chunked TOC digest, "" unless Spec.Compression is ZstdChunked.
	TOCDigest digest.Digest
	// MediaType is the OCI layer media type used in the manifest.
	MediaType string
	// Annotations are the annotations the manifest carries for this layer (the zstd:chunked
	// TOC annotations), nil if there are none.
	Annotations map[string]string
}

// Image is a built single-platform OCI image: its layers, config and manifest.
type Image struct {
	// Layers are the image layers, bottom first.
	Layers []Layer
	// Config is the OCI image config JSON.
	Config []byte
	// ConfigDigest is the digest of Config.
	ConfigDigest digest.Digest
	// Manifest is the OCI image manifest JSON.
	Manifest []byte
	// ManifestDigest is the digest of Manifest.
	ManifestDigest digest.Digest
}

// BuildImage builds an image with one layer per spec. The result is deterministic: the same
// specs give byte-identical blobs, config and manifest, so digests can be compared across
// builds and processes.
func BuildImage(layers []LayerSpec) (*Image, error) {
	img := &Image{Layers: make([]Layer, 0, len(layers))}
	for i, spec := range layers {
		l, err := buildLayer(spec)
		if err != nil {
			return nil, fmt.Errorf("building layer %d: %w", i, err)
		}
		img.Layers = append(img.Layers, l)
	}
	diffIDs := make([]digest.Digest, 0, len(img.Layers))
	for _, l := range img.Layers {
		diffIDs = append(diffIDs, l.DiffID)
	}
	config, err := makeConfig(diffIDs, len(img.Layers))
	if err != nil {
		return nil, fmt.Errorf("building image config: %w", err)
	}
	if err := img.setConfig(config); err != nil {
		return nil, err
	}
	return img, nil
}

// WithConfigDiffIDs returns a copy of img whose config lists diffIDs as rootfs.diff_ids, with a
// manifest re-made for the new config. A nil diffIDs removes the diff_ids key altogether, an
// empty non-nil one writes an empty list; both let tests cover configs that cannot vouch for
// the layers. Blobs are shared with img.
func (img *Image) WithConfigDiffIDs(diffIDs []digest.Digest) (*Image, error) {
	var config map[string]json.RawMessage
	if err := json.Unmarshal(img.Config, &config); err != nil {
		return nil, fmt.Errorf("parsing image config: %w", err)
	}
	var rootfs map[string]json.RawMessage
	if raw, ok := config["rootfs"]; ok {
		if err := json.Unmarshal(raw, &rootfs); err != nil {
			return nil, fmt.Errorf("parsing image config rootfs: %w", err)
		}
	}
	if rootfs == nil {
		rootfs = map[string]json.RawMessage{"type": json.RawMessage(`"layers"`)}
	}
	if diffIDs == nil {
		delete(rootfs, "diff_ids")
	} else {
		raw, err := json.Marshal(diffIDs)
		if err != nil {
			return nil, fmt.Errorf("encoding diff_ids: %w", err)
		}
		rootfs["diff_ids"] = raw
	}
	rawRootfs, err := json.Marshal(rootfs)
	if err != nil {
		return nil, fmt.Errorf("encoding image config rootfs: %w", err)
	}
	config["rootfs"] = rawRootfs
	newConfig, err := json.Marshal(config)
	if err != nil {
		return nil, fmt.Errorf("encoding image config: %w", err)
	}

	out := &Image{Layers: make([]Layer, len(img.Layers))}
	for i, l := range img.Layers {
		l.Spec.Files = slices.Clone(l.Spec.Files)
		l.Annotations = maps.Clone(l.Annotations)
		out.Layers[i] = l
	}
	if err := out.setConfig(newConfig); err != nil {
		return nil, err
	}
	return out, nil
}

// setConfig stores config and a manifest referring to it and to img.Layers.
func (img *Image) setConfig(config []byte) error {
	m := imgspecv1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: imgspecv1.MediaTypeImageManifest,
		Config: imgspecv1.Descriptor{
			MediaType: imgspecv1.MediaTypeImageConfig,
			Digest:    digest.FromBytes(config),
			Size:      int64(len(config)),
		},
		Layers: make([]imgspecv1.Descriptor, 0, len(img.Layers)),
	}
	for _, l := range img.Layers {
		m.Layers = append(m.Layers, imgspecv1.Descriptor{
			MediaType:   l.MediaType,
			Digest:      l.Digest,
			Size:        l.Size,
			Annotations: maps.Clone(l.Annotations),
		})
	}
	manifest, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding image manifest: %w", err)
	}
	img.Config = config
	img.ConfigDigest = m.Config.Digest
	img.Manifest = manifest
	img.ManifestDigest = digest.FromBytes(manifest)
	return nil
}

// makeConfig returns an OCI image config for the running architecture listing diffIDs.
func makeConfig(diffIDs []digest.Digest, layers int) ([]byte, error) {
	created := fixedTime
	cfg := imgspecv1.Image{
		Created: &created,
		Author:  "alstest",
		Platform: imgspecv1.Platform{
			Architecture: runtime.GOARCH,
			OS:           "linux",
		},
		Config: imgspecv1.ImageConfig{
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cmd: []string{"/bin/sh"},
		},
		RootFS: imgspecv1.RootFS{Type: "layers", DiffIDs: diffIDs},
	}
	for i := range layers {
		cfg.History = append(cfg.History, imgspecv1.History{
			Created:   &created,
			CreatedBy: fmt.Sprintf("alstest: layer %d", i),
		})
	}
	return json.Marshal(cfg)
}

// Files returns the contents of every regular file of the image’s root filesystem, by path
// without a leading "/", as stacking its layers gives them.
func (img *Image) Files() map[string][]byte {
	res := map[string][]byte{}
	for _, l := range img.Layers {
		for _, f := range l.Spec.Files {
			p := strings.TrimPrefix(f.Path, "/")
			if f.Dir || f.Symlink != "" {
				delete(res, p)
				continue
			}
			res[p] = f.Content
		}
	}
	return res
}

// Index returns an OCI image index that lists img for the running platform, as a registry
// serves a multi-platform image.
func (img *Image) Index() ([]byte, error) {
	index, err := json.Marshal(imgspecv1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: imgspecv1.MediaTypeImageIndex,
		Manifests: []imgspecv1.Descriptor{{
			MediaType: imgspecv1.MediaTypeImageManifest,
			Digest:    img.ManifestDigest,
			Size:      int64(len(img.Manifest)),
			Platform:  &imgspecv1.Platform{OS: "linux", Architecture: runtime.GOARCH},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("encoding image index: %w", err)
	}
	return index, nil
}
