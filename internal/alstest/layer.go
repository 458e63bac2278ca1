package alstest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/storage/pkg/chunked/compressor"
	"go.podman.io/storage/pkg/chunked/toc"
)

// relPath returns p as a clean path relative to the layer root, rejecting paths that would
// escape it or name the root itself.
func relPath(p string) (string, error) {
	rel := path.Clean(strings.TrimLeft(p, "/"))
	if rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("invalid layer path %q", p)
	}
	return rel, nil
}

// kindCheck rejects File values that combine incompatible kinds.
func kindCheck(f File) error {
	switch {
	case f.Dir && f.Symlink != "":
		return fmt.Errorf("%q is both a directory and a symlink", f.Path)
	case (f.Dir || f.Symlink != "") && len(f.Content) > 0:
		return fmt.Errorf("%q has content but is not a regular file", f.Path)
	}
	return nil
}

// perm returns the permission bits to record for f.
func perm(f File) os.FileMode {
	switch {
	case f.Symlink != "":
		return 0o777
	case f.Mode.Perm() != 0:
		return f.Mode.Perm()
	case f.Dir:
		return 0o755
	default:
		return 0o644
	}
}

// buildTar writes files as a tar stream with fixed metadata, in the given order.
func buildTar(files []File) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if err := kindCheck(f); err != nil {
			return nil, err
		}
		name, err := relPath(f.Path)
		if err != nil {
			return nil, err
		}
		hdr := &tar.Header{
			Name:    name,
			Mode:    int64(perm(f)),
			ModTime: fixedTime,
		}
		switch {
		case f.Dir:
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case f.Symlink != "":
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = f.Symlink
		default:
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(f.Content))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("writing tar header of %q: %w", name, err)
		}
		if _, err := tw.Write(f.Content); err != nil {
			return nil, fmt.Errorf("writing tar content of %q: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing tar stream: %w", err)
	}
	return buf.Bytes(), nil
}

// uniquePaths fails if two files name the same path, which the zstd:chunked compressor
// (through tar-split) cannot represent.
func uniquePaths(files []File) error {
	seen := map[string]bool{}
	for _, f := range files {
		rel, err := relPath(f.Path)
		if err != nil {
			return err
		}
		if seen[rel] {
			return fmt.Errorf("path %q appears twice, which zstd:chunked does not support", rel)
		}
		seen[rel] = true
	}
	return nil
}

// buildLayer builds the tar for spec and compresses it as requested.
func buildLayer(spec LayerSpec) (Layer, error) {
	if spec.Compression == ZstdChunked {
		if err := uniquePaths(spec.Files); err != nil {
			return Layer{}, err
		}
	}
	tarball, err := buildTar(spec.Files)
	if err != nil {
		return Layer{}, err
	}
	l := Layer{
		Spec:     LayerSpec{Files: slices.Clone(spec.Files), Compression: spec.Compression},
		DiffID:   digest.FromBytes(tarball),
		DiffSize: int64(len(tarball)),
	}
	switch spec.Compression {
	case Gzip:
		l.MediaType = imgspecv1.MediaTypeImageLayerGzip
		l.Blob, err = gzipBytes(tarball)
	case ZstdChunked:
		l.MediaType = imgspecv1.MediaTypeImageLayerZstd
		l.Blob, l.Annotations, l.TOCDigest, err = zstdChunkedBytes(tarball)
	case Uncompressed:
		l.MediaType = imgspecv1.MediaTypeImageLayer
		l.Blob = tarball
	default:
		err = fmt.Errorf("unknown compression %v", spec.Compression)
	}
	if err != nil {
		return Layer{}, err
	}
	l.Digest = digest.FromBytes(l.Blob)
	l.Size = int64(len(l.Blob))
	return l, nil
}

// gzipBytes compresses data with gzip; the header carries no name or time, so the output
// depends on data only.
func gzipBytes(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		return nil, fmt.Errorf("gzip-compressing layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip-compressing layer: %w", err)
	}
	return buf.Bytes(), nil
}

// zstdChunkedBytes compresses a tar stream with c/storage's zstd:chunked compressor and
// returns the blob, the layer annotations the compressor produced and the TOC digest they
// carry.
func zstdChunkedBytes(tarball []byte) ([]byte, map[string]string, digest.Digest, error) {
	var buf bytes.Buffer
	annotations := map[string]string{}
	zw, err := compressor.ZstdCompressor(&buf, annotations, nil)
	if err != nil {
		return nil, nil, "", fmt.Errorf("starting zstd:chunked compressor: %w", err)
	}
	if _, err := zw.Write(tarball); err != nil {
		_ = zw.Close()
		return nil, nil, "", fmt.Errorf("zstd:chunked-compressing layer: %w", err)
	}
	// The compressor fills annotations from its own goroutine; they are complete only once
	// Close has returned.
	if err := zw.Close(); err != nil {
		return nil, nil, "", fmt.Errorf("zstd:chunked-compressing layer: %w", err)
	}
	tocDigest, err := toc.GetTOCDigest(annotations)
	if err != nil {
		return nil, nil, "", fmt.Errorf("reading TOC digest of zstd:chunked layer: %w", err)
	}
	if tocDigest == nil {
		return nil, nil, "", errors.New("zstd:chunked compressor produced no TOC digest annotation")
	}
	return buf.Bytes(), annotations, *tocDigest, nil
}
