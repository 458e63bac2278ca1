package alstest

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/archive"
)

// EntryOptions changes what WriteALSEntry writes, so that tests can produce entries that
// are incomplete or that lie about the layer.
type EntryOptions struct {
	// Info, if non-nil, is written verbatim as the info file instead of the generated record.
	Info []byte
	// EditInfo, if non-nil, is called on the generated record before it is written; it is not
	// called when Info is set.
	EditInfo func(l *storage.Layer)
	// NoDiff leaves out the diff directory.
	NoDiff bool
	// NoInfo leaves out the info file.
	NoInfo bool
	// NoBlob leaves out the blob file.
	NoBlob bool
}

// RefDir returns the directory name under which a store that is keyed by image reference
// keeps that reference's layers; it is exported so that tests and docs can show it. ref is
// the reference as c/storage receives it from c/image: the normalized Docker reference, such
// as "docker.io/library/busybox:latest" or "127.0.0.1:5000/ns/app:v1", without "docker://".
func RefDir(ref string) string {
	return base64.StdEncoding.EncodeToString([]byte(ref))
}

// WriteALSEntry writes an Additional Layer Store entry for l at <root>/<key>/, or at
// <root>/<RefDir(ref)>/<key>/ when ref is not empty, and returns that directory. key is a
// full digest such as l.TOCDigest or l.Digest. The entry holds diff/ (the files of
// l.Spec.Files, extracted), info (c/storage's layer record as JSON) and blob (l.Blob). The
// record claims l.TOCDigest only when key is that digest, as a store keyed by blob digest
// would not know one. The entry directory must not exist yet.
func WriteALSEntry(root, ref string, key digest.Digest, l *Layer, opts EntryOptions,
) (string, error) {
	if err := key.Validate(); err != nil {
		return "", fmt.Errorf("validating ALS key %q: %w", key, err)
	}
	parent := root
	if ref != "" {
		parent = filepath.Join(root, RefDir(ref))
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("creating ALS directory: %w", err)
	}
	dir := filepath.Join(parent, key.String())
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating ALS entry: %w", err)
	}
	if !opts.NoDiff {
		if err := writeDiff(filepath.Join(dir, "diff"), l.Spec.Files); err != nil {
			return "", fmt.Errorf("writing ALS diff of %s: %w", key, err)
		}
	}
	if !opts.NoInfo {
		info := opts.Info
		if info == nil {
			var err error
			if info, err = infoRecord(key, l, opts.EditInfo); err != nil {
				return "", fmt.Errorf("making ALS info of %s: %w", key, err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "info"), info, 0o644); err != nil {
			return "", fmt.Errorf("writing ALS info of %s: %w", key, err)
		}
	}
	if !opts.NoBlob {
		if err := os.WriteFile(filepath.Join(dir, "blob"), l.Blob, 0o644); err != nil {
			return "", fmt.Errorf("writing ALS blob of %s: %w", key, err)
		}
	}
	return dir, nil
}

// infoRecord returns the JSON layer record that c/storage reads from an entry's info file.
// The compression type matters: c/storage returns the blob as is when asked for a diff in
// that compression, so it must describe the blob truthfully.
func infoRecord(key digest.Digest, l *Layer, edit func(*storage.Layer)) ([]byte, error) {
	rec := storage.Layer{
		ID:                 key.Encoded(),
		Created:            fixedTime,
		CompressedDigest:   l.Digest,
		CompressedSize:     l.Size,
		UncompressedDigest: l.DiffID,
		UncompressedSize:   l.DiffSize,
	}
	switch l.Spec.Compression {
	case Gzip:
		rec.CompressionType = archive.Gzip
	case ZstdChunked:
		rec.CompressionType = archive.Zstd
	case Uncompressed:
		rec.CompressionType = archive.Uncompressed
	default:
		return nil, fmt.Errorf("unknown compression %v", l.Spec.Compression)
	}
	if l.TOCDigest != "" && key == l.TOCDigest {
		rec.TOCDigest = l.TOCDigest
	}
	if edit != nil {
		edit(&rec)
	}
	return json.Marshal(&rec)
}

// writeDiff extracts files into dir the way a tar extraction would, a later entry replacing
// an earlier one. It refuses to write through symlinks so nothing lands outside dir.
func writeDiff(dir string, files []File) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("creating diff directory: %w", err)
	}
	dirModes := map[string]os.FileMode{}
	for _, f := range files {
		if err := kindCheck(f); err != nil {
			return err
		}
		rel, err := relPath(f.Path)
		if err != nil {
			return err
		}
		if err := makeParents(dir, rel); err != nil {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(rel))
		st, err := os.Lstat(target)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return fmt.Errorf("inspecting %q: %w", rel, err)
		case f.Dir && st.IsDir():
		default:
			if err := os.RemoveAll(target); err != nil {
				return fmt.Errorf("replacing %q: %w", rel, err)
			}
			delete(dirModes, rel)
		}
		switch {
		case f.Dir:
			if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("creating directory %q: %w", rel, err)
			}
			dirModes[rel] = perm(f)
		case f.Symlink != "":
			if err := os.Symlink(f.Symlink, target); err != nil {
				return fmt.Errorf("creating symlink %q: %w", rel, err)
			}
		default:
			if err := os.WriteFile(target, f.Content, perm(f)); err != nil {
				return fmt.Errorf("writing file %q: %w", rel, err)
			}
			if err := os.Chmod(target, perm(f)); err != nil {
				return fmt.Errorf("setting mode of %q: %w", rel, err)
			}
		}
	}
	// Directory modes are set last so that a read-only directory can still be filled.
	for _, rel := range slices.Backward(slices.Sorted(maps.Keys(dirModes))) {
		if err := os.Chmod(filepath.Join(dir, filepath.FromSlash(rel)), dirModes[rel]); err != nil {
			return fmt.Errorf("setting mode of %q: %w", rel, err)
		}
	}
	return nil
}

// makeParents creates the missing parent directories of rel under dir, failing if one of
// them exists as something other than a directory.
func makeParents(dir, rel string) error {
	parts := strings.Split(rel, "/")
	cur := dir
	for _, part := range parts[:len(parts)-1] {
		cur = filepath.Join(cur, part)
		st, err := os.Lstat(cur)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(cur, 0o755); err != nil {
				return fmt.Errorf("creating parent of %q: %w", rel, err)
			}
		case err != nil:
			return fmt.Errorf("inspecting parent of %q: %w", rel, err)
		case !st.IsDir():
			return fmt.Errorf("parent of %q is not a directory (%v)", rel, st.Mode().Type())
		}
	}
	return nil
}
