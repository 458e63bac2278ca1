package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.podman.io/storage"
	"go.podman.io/storage/pkg/archive"
)

// fillALS writes an Additional Layer Store entry keyed by layer digest for every layer of img
// into the directory root, as a store serving ordinary images would hold it:
//
//	<root>/<layer digest>/diff   the layer, extracted
//	<root>/<layer digest>/info   c/storage's layer record, with the fields the lookup checks
//	<root>/<layer digest>/blob   the gzip blob, as the registry serves it
//
// Layers made by the bench have no whiteouts, so plain extraction gives overlay's format.
func fillALS(root string, img *builtImage) error {
	for _, l := range img.Layers {
		dir := filepath.Join(root, l.Digest.String())
		if _, err := os.Lstat(dir); err == nil {
			continue // Another image has the same layer.
		}
		if err := writeEntry(dir, img, l); err != nil {
			return fmt.Errorf("writing the Additional Layer Store entry of %s: %w", l.Digest, err)
		}
	}
	return nil
}

// writeEntry writes the entry of layer l of img at dir, which must not exist; it writes into a
// temporary directory first so that a failed run leaves no half-written entry.
func writeEntry(dir string, img *builtImage, l builtLayer) error {
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(tmp, "diff"), 0o755); err != nil {
		return err
	}
	blob := img.blobPath(l.Digest)
	f, err := os.Open(blob)
	if err != nil {
		return err
	}
	err = archive.Untar(f, filepath.Join(tmp, "diff"), &archive.TarOptions{})
	_ = f.Close()
	if err != nil {
		return fmt.Errorf("extracting: %w", err)
	}
	if err := linkOrCopy(blob, filepath.Join(tmp, "blob")); err != nil {
		return err
	}
	info, err := json.Marshal(storage.Layer{
		ID:                 l.Digest.Encoded(),
		Created:            fixedTime,
		CompressedDigest:   l.Digest,
		CompressedSize:     l.Size,
		UncompressedDigest: l.DiffID,
		UncompressedSize:   l.DiffSize,
		CompressionType:    archive.Gzip,
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "info"), info, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// linkOrCopy makes dst a hard link to src, or a copy where a link cannot be made.
func linkOrCopy(src, dst string) error {
	if os.Link(src, dst) == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
