package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/pgzip"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// cacheFormat changes whenever the way images are made changes, so that stale caches are
// ignored.
const cacheFormat = "v1"

// layoutTag is the tag under which each OCI layout the bench writes holds its image.
const layoutTag = "bench"

// fixedTime is the creation time recorded in configs and ALS entries, so that rebuilding an
// image from the same files gives the same digests.
var fixedTime = time.Date(2024, time.January, 1, 0, 0, 0, 0, time.UTC)

// builtImage is an image in an OCI layout in the cache, with what the bench reports about it.
// It is stored as meta.json next to the layout.
type builtImage struct {
	Name        string       `json:"name"`        // repository name used in the registry
	Layout      string       `json:"-"`           // directory of the OCI layout
	Source      string       `json:"source"`      // "debootstrap" or "generated"
	Description string       `json:"description"` // how the content was made, for the docs
	Files       int          `json:"files"`       // directories, files and links over all layers
	Layers      []builtLayer `json:"layers"`      // bottom first
}

// builtLayer is one gzip layer of a builtImage.
type builtLayer struct {
	Digest   digest.Digest `json:"digest"`    // the layer digest (of the gzip blob)
	Size     int64         `json:"size"`      // the blob's size
	DiffID   digest.Digest `json:"diff_id"`   // the digest of the uncompressed tar
	DiffSize int64         `json:"diff_size"` // the size of the uncompressed tar
}

// compressedSize returns the sum of the layer blob sizes.
func (img *builtImage) compressedSize() int64 {
	var n int64
	for _, l := range img.Layers {
		n += l.Size
	}
	return n
}

// uncompressedSize returns the sum of the uncompressed layer sizes.
func (img *builtImage) uncompressedSize() int64 {
	var n int64
	for _, l := range img.Layers {
		n += l.DiffSize
	}
	return n
}

// blobPath returns where the layout keeps the blob d.
func (img *builtImage) blobPath(d digest.Digest) string {
	return filepath.Join(img.Layout, "blobs", d.Algorithm().String(), d.Encoded())
}

// cachedImage returns the image cached at dir, or (nil, nil) if dir holds no complete image.
func cachedImage(dir string) (*builtImage, error) {
	data, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	img := &builtImage{Layout: dir}
	if err := json.Unmarshal(data, img); err != nil {
		return nil, fmt.Errorf("parsing %s/meta.json: %w", dir, err)
	}
	for _, l := range img.Layers {
		st, err := os.Stat(img.blobPath(l.Digest))
		if err != nil || st.Size() != l.Size {
			return nil, nil // Damaged: the caller rebuilds it.
		}
	}
	return img, nil
}

// rootfsEntry is one directory, regular file or symbolic link of a root filesystem to layer.
type rootfsEntry struct {
	rel  string // path relative to the root, with "/" separators
	info fs.FileInfo
}

// size returns what the entry adds to a layer, roughly: its header and its content.
func (e rootfsEntry) size() int64 {
	if e.info.Mode().IsRegular() {
		return 512 + e.info.Size()
	}
	return 512
}

// scanRootfs lists the directories, regular files and symbolic links under root in lexical
// order, leaving out the contents of the kernel's and the runtime's mount points and every
// other kind of file (devices, sockets, FIFOs), which container images do not carry.
func scanRootfs(root string) ([]rootfsEntry, error) {
	var entries []rootfsEntry
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.IsDir() && !info.Mode().IsRegular() && info.Mode()&fs.ModeSymlink == 0 {
			return nil
		}
		entries = append(entries, rootfsEntry{rel: rel, info: info})
		if info.IsDir() && mountPointDirs[rel] {
			return fs.SkipDir
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scanning %s: %w", root, err)
	}
	return entries, nil
}

// mountPointDirs are the directories whose contents a root filesystem made on a host may hold
// but an image leaves empty.
var mountPointDirs = map[string]bool{
	"dev": true, "proc": true, "sys": true, "run": true,
	"tmp": true,
}

// splitEntries cuts entries, in order, into n contiguous runs of about equal size. Each run
// is filled until it holds its share of what is left, so no run is empty while entries remain.
func splitEntries(entries []rootfsEntry, n int) [][]rootfsEntry {
	var total int64
	for _, e := range entries {
		total += e.size()
	}
	var runs [][]rootfsEntry
	start := 0
	for len(runs) < n && start < len(entries) {
		if len(runs) == n-1 {
			runs = append(runs, entries[start:])
			break
		}
		quota := total / int64(n-len(runs))
		var size int64
		end := start
		for end < len(entries) && size < quota {
			size += entries[end].size()
			end++
		}
		runs = append(runs, entries[start:end])
		total -= size
		start = end
	}
	return runs
}

// writeImage makes an OCI layout at dir holding one gzip layer per run of entries from root,
// and returns the image. dir must not exist.
func writeImage(dir, root string, runs [][]rootfsEntry, img *builtImage) error {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	img.Layout = dir
	img.Layers = nil
	img.Files = 0
	for i, run := range runs {
		l, files, err := writeLayer(dir, root, run)
		if err != nil {
			return fmt.Errorf("writing layer %d: %w", i, err)
		}
		img.Layers = append(img.Layers, l)
		img.Files += files
	}
	if err := writeManifest(dir, img); err != nil {
		return err
	}
	meta, err := json.MarshalIndent(img, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "meta.json"), append(meta, '\n'), 0o644)
}

// hashCounter hashes and counts what is written to it.
type hashCounter struct {
	hash hash.Hash
	n    int64
}

// newHashCounter returns a hashCounter that has seen nothing.
func newHashCounter() *hashCounter { return &hashCounter{hash: sha256.New()} }

// Write hashes and counts p.
func (h *hashCounter) Write(p []byte) (int, error) {
	h.n += int64(len(p))
	return h.hash.Write(p)
}

// digest returns the sha256 digest of everything written.
func (h *hashCounter) digest() digest.Digest {
	return digest.NewDigestFromBytes(digest.SHA256, h.hash.Sum(nil))
}

// writeLayer writes run as a gzip tar blob into the layout dir and returns its description
// and the number of tar entries. Each layer also carries the parent directories of its
// entries, with the same metadata as in the layers that hold them, so that no layer depends
// on another and none needs a whiteout.
func writeLayer(dir, root string, run []rootfsEntry) (builtLayer, int, error) {
	tmp, err := os.CreateTemp(filepath.Join(dir, "blobs"), "layer-*")
	if err != nil {
		return builtLayer{}, 0, err
	}
	defer func() {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
	}()
	blob := newHashCounter()
	gz := pgzip.NewWriter(io.MultiWriter(tmp, blob))
	diff := newHashCounter()
	tw := tar.NewWriter(io.MultiWriter(gz, diff))
	lw := layerWriter{tw: tw, root: root, dirs: map[string]bool{}, links: map[uint64]string{}}
	for _, e := range run {
		if err := lw.add(e); err != nil {
			return builtLayer{}, 0, err
		}
	}
	if err := tw.Close(); err != nil {
		return builtLayer{}, 0, err
	}
	if err := gz.Close(); err != nil {
		return builtLayer{}, 0, err
	}
	if err := tmp.Close(); err != nil {
		return builtLayer{}, 0, err
	}
	l := builtLayer{Digest: blob.digest(), Size: blob.n, DiffID: diff.digest(), DiffSize: diff.n}
	name := filepath.Join(dir, "blobs", "sha256", l.Digest.Encoded())
	if err := os.Rename(tmp.Name(), name); err != nil {
		return builtLayer{}, 0, err
	}
	return l, lw.entries, nil
}

// layerWriter writes rootfs entries into one layer's tar stream.
type layerWriter struct {
	tw      *tar.Writer
	root    string
	dirs    map[string]bool   // directories already written to this layer
	links   map[uint64]string // inode of a multiply-linked file → its first path in this layer
	entries int               // tar entries written
}

// add writes e, after those of its parent directories this layer does not have yet.
func (w *layerWriter) add(e rootfsEntry) error {
	if err := w.addParents(e.rel); err != nil {
		return err
	}
	if e.info.IsDir() {
		if w.dirs[e.rel] {
			return nil
		}
		w.dirs[e.rel] = true
	}
	hdr, err := header(filepath.Join(w.root, e.rel), e.rel, e.info)
	if err != nil {
		return err
	}
	st, _ := e.info.Sys().(*syscall.Stat_t)
	if hdr.Typeflag == tar.TypeReg && st != nil && st.Nlink > 1 {
		if first, ok := w.links[st.Ino]; ok {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
		} else {
			w.links[st.Ino] = e.rel
		}
	}
	if err := w.tw.WriteHeader(hdr); err != nil {
		return err
	}
	w.entries++
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	f, err := os.Open(filepath.Join(w.root, e.rel))
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(w.tw, f); err != nil {
		return fmt.Errorf("copying %s: %w", e.rel, err)
	}
	return nil
}

// addParents writes the parent directories of rel that this layer does not have yet.
func (w *layerWriter) addParents(rel string) error {
	parts := strings.Split(rel, "/")
	for i := 1; i < len(parts); i++ {
		parent := strings.Join(parts[:i], "/")
		if w.dirs[parent] {
			continue
		}
		info, err := os.Lstat(filepath.Join(w.root, parent))
		if err != nil {
			return err
		}
		if err := w.add(rootfsEntry{rel: parent, info: info}); err != nil {
			return err
		}
	}
	return nil
}

// header returns the tar header for the file at path, named rel in the layer. Only what a
// layer needs is kept: no access or change times, no user or group names, no sub-second
// modification times, so that the same files give the same bytes.
func header(path, rel string, info fs.FileInfo) (*tar.Header, error) {
	link := ""
	if info.Mode()&fs.ModeSymlink != 0 {
		var err error
		if link, err = os.Readlink(path); err != nil {
			return nil, err
		}
	}
	hdr, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return nil, fmt.Errorf("tar header for %s: %w", rel, err)
	}
	hdr.Name = rel
	if info.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uname, hdr.Gname = "", ""
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	hdr.ModTime = info.ModTime().Truncate(time.Second)
	hdr.Format = tar.FormatPAX
	return hdr, nil
}

// writeManifest writes the config, the manifest and index.json of img into its layout.
func writeManifest(dir string, img *builtImage) error {
	diffIDs := make([]digest.Digest, 0, len(img.Layers))
	history := make([]imgspecv1.History, 0, len(img.Layers))
	created := fixedTime
	for i := range img.Layers {
		diffIDs = append(diffIDs, img.Layers[i].DiffID)
		history = append(history, imgspecv1.History{
			Created:   &created,
			CreatedBy: fmt.Sprintf("image-als bench: layer %d of %s", i, img.Name),
		})
	}
	config, err := json.Marshal(imgspecv1.Image{
		Created:  &created,
		Platform: imgspecv1.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Config:   imgspecv1.ImageConfig{Cmd: []string{"/bin/sh"}},
		RootFS:   imgspecv1.RootFS{Type: "layers", DiffIDs: diffIDs},
		History:  history,
	})
	if err != nil {
		return err
	}
	m := imgspecv1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: imgspecv1.MediaTypeImageManifest,
		Config: imgspecv1.Descriptor{
			MediaType: imgspecv1.MediaTypeImageConfig,
			Digest:    digest.FromBytes(config), Size: int64(len(config)),
		},
	}
	for _, l := range img.Layers {
		m.Layers = append(m.Layers, imgspecv1.Descriptor{
			MediaType: imgspecv1.MediaTypeImageLayerGzip, Digest: l.Digest, Size: l.Size,
		})
	}
	manifest, err := json.Marshal(m)
	if err != nil {
		return err
	}
	index, err := json.Marshal(imgspecv1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: imgspecv1.MediaTypeImageIndex,
		Manifests: []imgspecv1.Descriptor{{
			MediaType:   imgspecv1.MediaTypeImageManifest,
			Digest:      digest.FromBytes(manifest),
			Size:        int64(len(manifest)),
			Annotations: map[string]string{imgspecv1.AnnotationRefName: layoutTag},
		}},
	})
	if err != nil {
		return err
	}
	for _, blob := range [][]byte{config, manifest} {
		d := digest.FromBytes(blob)
		name := filepath.Join(dir, "blobs", "sha256", d.Encoded())
		if err := os.WriteFile(name, blob, 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), index, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, imgspecv1.ImageLayoutFile),
		[]byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}
