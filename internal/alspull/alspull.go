// Package alspull pulls images into an overlay store configured with an Additional Layer Store
// and reports where each committed layer came from. It uses only c/image’s public API, so the
// same code runs against the patched tree and against pristine upstream; the end-to-end tests
// and the demo use it.
package alspull

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/signature"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
)

// NewStore returns an overlay store under dir whose Additional Layer Store is alsRoot, keyed by
// image reference too if withRef. The caller must call Shutdown(true) on it.
func NewStore(dir, alsRoot string, withRef bool) (storage.Store, error) {
	option := "overlay.additionallayerstore=" + alsRoot
	if withRef {
		option += ":ref"
	}
	store, err := storage.GetStore(storage.StoreOptions{
		RunRoot:            filepath.Join(dir, "run"),
		GraphRoot:          filepath.Join(dir, "root"),
		GraphDriverName:    "overlay",
		GraphDriverOptions: []string{option},
	})
	if err != nil {
		return nil, fmt.Errorf("creating overlay store in %s: %w", dir, err)
	}
	return store, nil
}

// Pull copies the registry image ref (a reference without transport, such as
// "127.0.0.1:5000/demo:latest", served over plain HTTP) into store, writing the copy’s progress
// output to progress (which may be nil), and returns the stored image.
func Pull(ctx context.Context, store storage.Store, ref string, progress io.Writer,
) (*storage.Image, error) {
	destRef, err := istorage.Transport.ParseStoreReference(store, ref)
	if err != nil {
		return nil, fmt.Errorf("parsing %q as a storage reference: %w", ref, err)
	}
	if err := copyFromRegistry(ctx, ref, destRef, progress); err != nil {
		return nil, fmt.Errorf("pulling %s: %w", ref, err)
	}
	_, img, err := istorage.ResolveReference(destRef)
	if err != nil {
		return nil, fmt.Errorf("finding the pulled image: %w", err)
	}
	return img, nil
}

// Push copies the registry image src to the registry image dest, both served over plain HTTP.
func Push(ctx context.Context, src, dest string) error {
	destRef, err := docker.ParseReference("//" + dest)
	if err != nil {
		return fmt.Errorf("parsing %q: %w", dest, err)
	}
	if err := copyFromRegistry(ctx, src, destRef, nil); err != nil {
		return fmt.Errorf("copying %s to %s: %w", src, dest, err)
	}
	return nil
}

// copyFromRegistry copies the registry image src to destRef.
func copyFromRegistry(ctx context.Context, src string, destRef types.ImageReference,
	progress io.Writer,
) error {
	srcRef, err := docker.ParseReference("//" + src)
	if err != nil {
		return fmt.Errorf("parsing %q: %w", src, err)
	}
	insecure := &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue}
	return Copy(ctx, srcRef, destRef, insecure, progress)
}

// Copy copies srcRef to destRef with sys for both, accepting any signature, writing the copy’s
// progress output to progress (which may be nil).
func Copy(ctx context.Context, srcRef, destRef types.ImageReference, sys *types.SystemContext,
	progress io.Writer,
) error {
	policy, err := signature.NewPolicyContext(&signature.Policy{
		Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()},
	})
	if err != nil {
		return fmt.Errorf("creating a signature policy context: %w", err)
	}
	defer func() { _ = policy.Destroy() }()
	if progress == nil {
		progress = io.Discard
	}
	_, err = copy.Image(ctx, policy, destRef, srcRef, &copy.Options{
		ReportWriter:       progress,
		SourceCtx:          sys,
		DestinationCtx:     sys,
		ImageListSelection: copy.CopySystemImage,
	})
	return err
}

// Origin says where one committed layer of an image came from.
type Origin struct {
	Layer storage.Layer
	// ALSEntry is the Additional Layer Store entry the layer’s diff links to, "" if the layer was
	// extracted into local storage.
	ALSEntry string
}

// Origins returns the layers of img, bottom first, and where each came from.
func Origins(store storage.Store, img *storage.Image) ([]Origin, error) {
	var res []Origin
	for id := img.TopLayer; id != ""; {
		layer, err := store.Layer(id)
		if err != nil {
			return nil, fmt.Errorf("reading layer %s: %w", id, err)
		}
		entry, err := alsEntry(store, id)
		if err != nil {
			return nil, err
		}
		res = append([]Origin{{Layer: *layer, ALSEntry: entry}}, res...)
		id = layer.Parent
	}
	return res, nil
}

// alsEntry returns the Additional Layer Store entry the overlay layer id’s diff links to, or "".
func alsEntry(store storage.Store, id string) (string, error) {
	diff := filepath.Join(store.GraphRoot(), store.GraphDriverName(), id, "diff")
	target, err := os.Readlink(diff)
	if err != nil {
		var pathErr *os.PathError
		if errors.As(err, &pathErr) && !errors.Is(err, os.ErrNotExist) {
			return "", nil // A directory: the layer is in local storage.
		}
		return "", fmt.Errorf("reading the diff of layer %s: %w", id, err)
	}
	if filepath.Base(target) != "diff" {
		return "", fmt.Errorf("layer %s links its diff to %s, not to an entry’s diff", id, target)
	}
	return filepath.Dir(target), nil
}

// ReadFiles mounts a writable layer on top of layer id of store, as a container would, and
// returns the contents of the regular files at paths.
func ReadFiles(store storage.Store, id string, paths []string) (map[string][]byte, error) {
	top, err := store.CreateLayer("", id, nil, "", true, nil)
	if err != nil {
		return nil, fmt.Errorf("creating a layer on top of %s: %w", id, err)
	}
	defer func() { _ = store.DeleteLayer(top.ID) }()
	root, err := store.Mount(top.ID, "")
	if err != nil {
		return nil, fmt.Errorf("mounting a layer on top of %s: %w", id, err)
	}
	defer func() { _, _ = store.Unmount(top.ID, true) }()
	res := map[string][]byte{}
	for _, p := range paths {
		data, err := os.ReadFile(filepath.Join(root, strings.TrimPrefix(p, "/")))
		if err != nil {
			return nil, fmt.Errorf("reading %s through the mounted layer: %w", p, err)
		}
		res[p] = data
	}
	return res, nil
}

// ShortDigest returns d’s algorithm and the first 12 hex digits, for tables.
func ShortDigest(d digest.Digest) string {
	if d == "" {
		return "-"
	}
	enc := d.Encoded()
	if len(enc) > 12 {
		enc = enc[:12]
	}
	return d.Algorithm().String() + ":" + enc
}

// VerifyFiles mounts layer id of store as ReadFiles does and checks that the files at the paths
// of want have exactly those contents.
func VerifyFiles(store storage.Store, id string, want map[string][]byte) error {
	paths := make([]string, 0, len(want))
	for p := range want {
		paths = append(paths, p)
	}
	got, err := ReadFiles(store, id, paths)
	if err != nil {
		return err
	}
	for _, p := range paths {
		if !bytes.Equal(got[p], want[p]) {
			return fmt.Errorf("%s read through layer %s has %d bytes that differ from the "+
				"image’s %d", p, id, len(got[p]), len(want[p]))
		}
	}
	return nil
}
