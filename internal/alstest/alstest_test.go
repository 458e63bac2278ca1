package alstest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/archive"
	"go.podman.io/storage/pkg/chunked/toc"
)

// tocPositionKey is the zstd:chunked annotation locating the compressed TOC in the blob.
const tocPositionKey = "io.github.containers.zstd-chunked.manifest-position"

// sampleFiles covers every kind of entry and a path without parent entries.
func sampleFiles() []File {
	return []File{
		{Path: "/etc", Dir: true},
		{Path: "/etc/motd", Content: []byte("hello\n")},
		{Path: "etc/secret", Content: []byte("s3cret\n"), Mode: 0o600},
		{Path: "/usr/bin/tool", Content: fakeBinary("tool", 70_000), Mode: 0o755},
		{Path: "/bin", Symlink: "usr/bin"},
		{Path: "/srv/empty", Dir: true, Mode: 0o700},
	}
}

// decompress returns the tar stream inside a layer blob.
func decompress(t *testing.T, l Layer) []byte {
	t.Helper()
	switch l.MediaType {
	case imgspecv1.MediaTypeImageLayerGzip:
		zr, err := gzip.NewReader(bytes.NewReader(l.Blob))
		require.NoError(t, err)
		out, err := io.ReadAll(zr)
		require.NoError(t, err)
		return out
	case imgspecv1.MediaTypeImageLayerZstd:
		zr, err := zstd.NewReader(nil)
		require.NoError(t, err)
		defer zr.Close()
		out, err := zr.DecodeAll(l.Blob, nil)
		require.NoError(t, err)
		return out
	case imgspecv1.MediaTypeImageLayer:
		return l.Blob
	}
	t.Fatalf("unexpected media type %q", l.MediaType)
	return nil
}

// tarNames lists the entry names of a tar stream, in order.
func tarNames(t *testing.T, data []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		require.NoError(t, err)
		assert.Equal(t, fixedTime, hdr.ModTime.UTC(), hdr.Name)
		assert.Zero(t, hdr.Uid, hdr.Name)
		assert.Zero(t, hdr.Gid, hdr.Name)
		names = append(names, hdr.Name)
	}
}

func TestBuildImage(t *testing.T) {
	for _, c := range []struct {
		name  string
		specs []LayerSpec
	}{
		{"gzip", []LayerSpec{{Files: sampleFiles(), Compression: Gzip}}},
		{"zstd:chunked", []LayerSpec{{Files: sampleFiles(), Compression: ZstdChunked}}},
		{"uncompressed", []LayerSpec{{Files: sampleFiles(), Compression: Uncompressed}}},
		{"demo", DemoLayers()},
		{"mixed", []LayerSpec{ // one of each, bottom to top
			{Files: sampleFiles(), Compression: ZstdChunked},
			{Files: DemoLayers()[1].Files, Compression: Gzip},
			{Files: DemoLayers()[3].Files, Compression: Uncompressed},
		}},
		{"no layers", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			img, err := BuildImage(c.specs)
			require.NoError(t, err)
			again, err := BuildImage(c.specs)
			require.NoError(t, err)
			assert.Equal(t, img, again, "rebuilding must give identical bytes")

			var config imgspecv1.Image
			require.NoError(t, json.Unmarshal(img.Config, &config))
			assert.Equal(t, digest.FromBytes(img.Config), img.ConfigDigest)
			assert.Equal(t, "linux", config.OS)
			assert.Equal(t, runtime.GOARCH, config.Architecture)
			assert.Equal(t, "layers", config.RootFS.Type)
			require.Len(t, config.RootFS.DiffIDs, len(c.specs))

			var manifest imgspecv1.Manifest
			require.NoError(t, json.Unmarshal(img.Manifest, &manifest))
			assert.Equal(t, digest.FromBytes(img.Manifest), img.ManifestDigest)
			assert.Equal(t, imgspecv1.MediaTypeImageManifest, manifest.MediaType)
			assert.Equal(t, 2, manifest.SchemaVersion)
			assert.Equal(t, imgspecv1.MediaTypeImageConfig, manifest.Config.MediaType)
			assert.Equal(t, img.ConfigDigest, manifest.Config.Digest)
			assert.Equal(t, int64(len(img.Config)), manifest.Config.Size)
			require.Len(t, manifest.Layers, len(c.specs))

			require.Len(t, img.Layers, len(c.specs))
			for i, l := range img.Layers {
				tarball := decompress(t, l)
				assert.Equal(t, digest.FromBytes(tarball), l.DiffID, "layer %d", i)
				assert.Equal(t, int64(len(tarball)), l.DiffSize, "layer %d", i)
				assert.Equal(t, digest.FromBytes(l.Blob), l.Digest, "layer %d", i)
				assert.Equal(t, int64(len(l.Blob)), l.Size, "layer %d", i)
				assert.Equal(t, l.DiffID, config.RootFS.DiffIDs[i], "layer %d", i)
				assert.Equal(t, c.specs[i], l.Spec, "layer %d", i)
				assert.Equal(t, imgspecv1.Descriptor{
					MediaType: l.MediaType, Digest: l.Digest, Size: l.Size,
					Annotations: l.Annotations,
				}, manifest.Layers[i], "layer %d", i)
				assert.Len(t, tarNames(t, tarball), len(c.specs[i].Files), "layer %d", i)
				if c.specs[i].Compression == Uncompressed {
					assert.Equal(t, l.DiffID, l.Digest, "layer %d", i)
				}
			}
		})
	}
}

func TestBuildImageTarEntries(t *testing.T) {
	files := append(sampleFiles(), File{Path: "/etc/motd", Content: []byte("again\n")})
	img, err := BuildImage([]LayerSpec{{Files: files, Compression: Uncompressed}})
	require.NoError(t, err)
	tr := tar.NewReader(bytes.NewReader(img.Layers[0].Blob))
	for _, want := range []struct {
		name     string
		typ      byte
		mode     int64
		linkname string
		content  string
	}{
		{"etc/", tar.TypeDir, 0o755, "", ""},            // default directory mode
		{"etc/motd", tar.TypeReg, 0o644, "", "hello\n"}, // default file mode
		{"etc/secret", tar.TypeReg, 0o600, "", "s3cret\n"},
		{"usr/bin/tool", tar.TypeReg, 0o755, "", string(fakeBinary("tool", 70_000))},
		{"bin", tar.TypeSymlink, 0o777, "usr/bin", ""},
		{"srv/empty/", tar.TypeDir, 0o700, "", ""},
		{"etc/motd", tar.TypeReg, 0o644, "", "again\n"}, // written again, after the first
	} {
		hdr, err := tr.Next()
		require.NoError(t, err, want.name)
		assert.Equal(t, want.name, hdr.Name)
		assert.Equal(t, want.typ, hdr.Typeflag, want.name)
		assert.Equal(t, want.mode, hdr.Mode, want.name)
		assert.Equal(t, want.linkname, hdr.Linkname, want.name)
		content, err := io.ReadAll(tr)
		require.NoError(t, err, want.name)
		assert.Equal(t, want.content, string(content), want.name)
	}
	_, err = tr.Next()
	assert.ErrorIs(t, err, io.EOF)
}

func TestBuildImageErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		file File
	}{
		{"root path", File{Path: "/", Dir: true}},
		{"empty path", File{Path: ""}},
		{"escaping path", File{Path: "../etc/passwd"}},
		{"escaping after clean", File{Path: "/a/../../b"}},
		{"dir and symlink", File{Path: "x", Dir: true, Symlink: "y"}},
		{"dir with content", File{Path: "x", Dir: true, Content: []byte("c")}},
		{"symlink with content", File{Path: "x", Symlink: "y", Content: []byte("c")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := BuildImage([]LayerSpec{{Files: []File{c.file}}})
			assert.ErrorContains(t, err, "building layer 0: ")
		})
	}
	_, err := BuildImage([]LayerSpec{{Compression: Compression(42)}})
	assert.ErrorContains(t, err, "unknown compression Compression(42)")

	dup := []File{{Path: "/etc", Dir: true}, {Path: "etc/", Dir: true, Mode: 0o700}}
	_, err = BuildImage([]LayerSpec{{Files: dup, Compression: ZstdChunked}})
	assert.ErrorContains(t, err, `building layer 0: path "etc" appears twice`)
	_, err = BuildImage([]LayerSpec{{Files: dup, Compression: Gzip}})
	assert.NoError(t, err, "gzip layers may repeat a path")
}

func TestBuildImageZstdChunked(t *testing.T) {
	img, err := BuildImage([]LayerSpec{
		{Files: sampleFiles(), Compression: ZstdChunked},
		{Files: sampleFiles(), Compression: Gzip},
	})
	require.NoError(t, err)

	l := img.Layers[0]
	assert.Equal(t, imgspecv1.MediaTypeImageLayerZstd, l.MediaType)
	require.NotEmpty(t, l.TOCDigest)
	got, err := toc.GetTOCDigest(l.Annotations)
	require.NoError(t, err)
	require.NotNil(t, got)
	assert.Equal(t, l.TOCDigest, *got)
	assert.NotEqual(t, l.Digest, l.TOCDigest)

	// The TOC digest is the digest of the compressed TOC, which the annotation locates.
	pos := strings.Split(l.Annotations[tocPositionKey], ":")
	require.Len(t, pos, 4)
	off, err := strconv.ParseInt(pos[0], 10, 64)
	require.NoError(t, err)
	n, err := strconv.ParseInt(pos[1], 10, 64)
	require.NoError(t, err)
	require.LessOrEqual(t, off+n, l.Size)
	assert.Equal(t, l.TOCDigest, digest.FromBytes(l.Blob[off:off+n]))

	gz := img.Layers[1]
	assert.Empty(t, gz.TOCDigest)
	assert.Nil(t, gz.Annotations)
	got, err = toc.GetTOCDigest(gz.Annotations)
	require.NoError(t, err)
	assert.Nil(t, got)
	assert.Equal(t, l.DiffID, gz.DiffID, "same files, same tar")
}

func TestImageWithConfigDiffIDs(t *testing.T) {
	img, err := BuildImage(DemoLayers()[:2])
	require.NoError(t, err)
	other := digest.FromString("other")
	for _, c := range []struct {
		name    string
		diffIDs []digest.Digest
		present bool
	}{
		{"nil removes diff_ids", nil, false},
		{"empty list", []digest.Digest{}, true},
		{"replaced", []digest.Digest{other, img.Layers[1].DiffID}, true},
		{"unchanged", []digest.Digest{img.Layers[0].DiffID, img.Layers[1].DiffID}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := img.WithConfigDiffIDs(c.diffIDs)
			require.NoError(t, err)
			assert.Equal(t, img.Layers, out.Layers)
			assert.Equal(t, digest.FromBytes(out.Config), out.ConfigDigest)
			assert.Equal(t, digest.FromBytes(out.Manifest), out.ManifestDigest)

			var raw struct {
				RootFS map[string]json.RawMessage `json:"rootfs"`
			}
			require.NoError(t, json.Unmarshal(out.Config, &raw))
			_, present := raw.RootFS["diff_ids"]
			assert.Equal(t, c.present, present)
			assert.JSONEq(t, `"layers"`, string(raw.RootFS["type"]))

			var config, orig imgspecv1.Image
			require.NoError(t, json.Unmarshal(out.Config, &config))
			require.NoError(t, json.Unmarshal(img.Config, &orig))
			assert.Equal(t, c.diffIDs, config.RootFS.DiffIDs)
			config.RootFS, orig.RootFS = imgspecv1.RootFS{}, imgspecv1.RootFS{}
			assert.Equal(t, orig, config, "only rootfs may change")

			var manifest imgspecv1.Manifest
			require.NoError(t, json.Unmarshal(out.Manifest, &manifest))
			assert.Equal(t, out.ConfigDigest, manifest.Config.Digest)
			assert.Equal(t, int64(len(out.Config)), manifest.Config.Size)
			require.Len(t, manifest.Layers, 2)
			assert.Equal(t, img.Layers[1].Digest, manifest.Layers[1].Digest)
		})
	}
}

func TestDemoLayers(t *testing.T) {
	specs := DemoLayers()
	require.Len(t, specs, 4)
	assert.Equal(t, specs, DemoLayers())
	seen := map[string]int{}
	var binaries, symlinks, overwrites int
	for i, spec := range specs {
		assert.Equal(t, Gzip, spec.Compression, "layer %d", i)
		for _, f := range spec.Files {
			p, err := relPath(f.Path)
			require.NoError(t, err)
			if prev, ok := seen[p]; ok && prev < i && !f.Dir {
				overwrites++
			}
			seen[p] = i
			if f.Symlink != "" {
				symlinks++
			}
			if strings.HasPrefix(p, "usr/bin/") {
				binaries++
				assert.GreaterOrEqual(t, len(f.Content), 64<<10, p)
				assert.LessOrEqual(t, len(f.Content), 1<<20, p)
			}
		}
	}
	assert.GreaterOrEqual(t, binaries, 3)
	assert.Positive(t, symlinks)
	assert.Positive(t, overwrites)
	assert.Contains(t, seen, "etc/os-release")
	assert.Contains(t, seen, "usr/share/doc")
}

func TestRefDir(t *testing.T) {
	for _, c := range []struct{ ref, want string }{
		{"a/b:c", "YS9iOmM="}, // padding kept
		{"127.0.0.1:5000/ns/app:v1", "MTI3LjAuMC4xOjUwMDAvbnMvYXBwOnYx"}, // no padding needed
	} {
		assert.Equal(t, c.want, RefDir(c.ref), c.ref)
	}
}

func TestWriteALSEntry(t *testing.T) {
	img, err := BuildImage([]LayerSpec{
		{Files: sampleFiles(), Compression: ZstdChunked},
		{Files: sampleFiles(), Compression: Gzip},
	})
	require.NoError(t, err)
	zl, gl := &img.Layers[0], &img.Layers[1]
	const ref = "127.0.0.1:5000/ns/app:v1"
	bogus := digest.FromString("bogus")
	noDiff, verbatim := EntryOptions{NoDiff: true}, EntryOptions{Info: []byte("{}")}
	edited := EntryOptions{EditInfo: func(l *storage.Layer) { l.UncompressedDigest = bogus }}

	for _, c := range []struct {
		name     string
		ref      string
		layer    *Layer
		key      digest.Digest
		opts     EntryOptions
		wantTOC  bool
		wantInfo string // if set, the exact info file
		diffID   digest.Digest
	}{
		{name: "by TOC", layer: zl, key: zl.TOCDigest, wantTOC: true},
		{name: "by TOC with ref", ref: ref, layer: zl, key: zl.TOCDigest, wantTOC: true},
		{name: "zstd by blob digest", layer: zl, key: zl.Digest},           // no TOC claimed
		{name: "gzip by blob digest", ref: ref, layer: gl, key: gl.Digest}, // no TOC at all
		{name: "no diff", layer: zl, key: zl.TOCDigest, opts: noDiff, wantTOC: true},
		{name: "no info", layer: zl, key: zl.TOCDigest, opts: EntryOptions{NoInfo: true}},
		{name: "no blob", layer: gl, key: gl.Digest, opts: EntryOptions{NoBlob: true}},
		{name: "verbatim info", layer: gl, key: gl.Digest, opts: verbatim, wantInfo: "{}"},
		{name: "edited info", layer: gl, key: gl.Digest, opts: edited, diffID: bogus},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			dir, err := WriteALSEntry(root, c.ref, c.key, c.layer, c.opts)
			require.NoError(t, err)
			want := filepath.Join(root, c.key.String())
			if c.ref != "" {
				want = filepath.Join(root, RefDir(c.ref), c.key.String())
			}
			assert.Equal(t, want, dir)

			if c.opts.NoDiff {
				assert.NoFileExists(t, filepath.Join(dir, "diff"))
				assert.NoDirExists(t, filepath.Join(dir, "diff"))
			} else {
				checkDiff(t, filepath.Join(dir, "diff"))
			}

			blob, err := os.ReadFile(filepath.Join(dir, "blob"))
			if c.opts.NoBlob {
				assert.ErrorIs(t, err, fs.ErrNotExist)
			} else {
				require.NoError(t, err)
				assert.Equal(t, c.layer.Blob, blob)
			}

			info, err := os.ReadFile(filepath.Join(dir, "info"))
			switch {
			case c.opts.NoInfo:
				assert.ErrorIs(t, err, fs.ErrNotExist)
				return
			case c.wantInfo != "":
				require.NoError(t, err)
				assert.Equal(t, c.wantInfo, string(info))
				return
			}
			require.NoError(t, err)
			var rec storage.Layer
			require.NoError(t, json.Unmarshal(info, &rec))
			wantDiffID := c.layer.DiffID
			if c.diffID != "" {
				wantDiffID = c.diffID
			}
			assert.Equal(t, c.layer.Digest, rec.CompressedDigest)
			assert.Equal(t, c.layer.Size, rec.CompressedSize)
			assert.Equal(t, wantDiffID, rec.UncompressedDigest)
			assert.Equal(t, c.layer.DiffSize, rec.UncompressedSize)
			wantCompression := archive.Gzip
			if c.layer.Spec.Compression == ZstdChunked {
				wantCompression = archive.Zstd
			}
			assert.Equal(t, wantCompression, rec.CompressionType)
			var fields map[string]any
			require.NoError(t, json.Unmarshal(info, &fields))
			if c.wantTOC {
				assert.Equal(t, c.layer.TOCDigest.String(), fields["toc-digest"])
			} else {
				assert.NotContains(t, fields, "toc-digest")
			}
		})
	}
}

// checkDiff checks that dir holds sampleFiles extracted.
func checkDiff(t *testing.T, dir string) {
	t.Helper()
	for _, c := range []struct {
		path    string
		mode    fs.FileMode
		content string
	}{
		{"etc", fs.ModeDir | 0o755, ""},
		{"etc/motd", 0o644, "hello\n"},
		{"etc/secret", 0o600, "s3cret\n"},
		{"usr", fs.ModeDir | 0o755, ""}, // implied parent
		{"usr/bin/tool", 0o755, string(fakeBinary("tool", 70_000))},
		{"srv/empty", fs.ModeDir | 0o700, ""},
	} {
		p := filepath.Join(dir, c.path)
		st, err := os.Lstat(p)
		require.NoError(t, err, c.path)
		assert.Equal(t, c.mode, st.Mode(), c.path)
		if !st.IsDir() {
			content, err := os.ReadFile(p)
			require.NoError(t, err, c.path)
			assert.Equal(t, c.content, string(content), c.path)
		}
	}
	target, err := os.Readlink(filepath.Join(dir, "bin"))
	require.NoError(t, err)
	assert.Equal(t, "usr/bin", target)
}

func TestWriteALSEntryLaterWins(t *testing.T) {
	for _, c := range []struct {
		name  string
		files []File
		mode  fs.FileMode // of "x" in the end
		data  string      // of "x", or the target if a symlink
	}{
		{
			"file over file",
			[]File{{Path: "x", Content: []byte("1")}, {Path: "x", Content: []byte("2")}},
			0o644, "2",
		},
		{"mode change", []File{{Path: "x", Mode: 0o755}, {Path: "x", Mode: 0o600}}, 0o600, ""},
		{
			"symlink over file",
			[]File{{Path: "x"}, {Path: "x", Symlink: "t"}},
			fs.ModeSymlink | 0o777,
			"t",
		},
		{"file over symlink", []File{{Path: "x", Symlink: "t"}, {Path: "x"}}, 0o644, ""},
		{"file over dir", []File{{Path: "x/y"}, {Path: "x", Content: []byte("f")}}, 0o644, "f"},
		{
			"dir over dir keeps children",
			[]File{{Path: "x/y"}, {Path: "x", Dir: true, Mode: 0o750}},
			fs.ModeDir | 0o750, "",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := &Layer{Spec: LayerSpec{Files: c.files}}
			dir, err := WriteALSEntry(t.TempDir(), "", digest.FromString(c.name), l,
				EntryOptions{NoInfo: true, NoBlob: true})
			require.NoError(t, err)
			p := filepath.Join(dir, "diff", "x")
			st, err := os.Lstat(p)
			require.NoError(t, err)
			assert.Equal(t, c.mode, st.Mode())
			switch {
			case st.Mode()&fs.ModeSymlink != 0:
				target, err := os.Readlink(p)
				require.NoError(t, err)
				assert.Equal(t, c.data, target)
			case st.IsDir():
				assert.FileExists(t, filepath.Join(p, "y"))
			default:
				data, err := os.ReadFile(p)
				require.NoError(t, err)
				assert.Equal(t, c.data, string(data))
			}
		})
	}
}

func TestWriteALSEntryErrors(t *testing.T) {
	img, err := BuildImage([]LayerSpec{{Files: sampleFiles(), Compression: Gzip}})
	require.NoError(t, err)
	l := &img.Layers[0]
	root := t.TempDir()
	_, err = WriteALSEntry(root, "", l.Digest, l, EntryOptions{})
	require.NoError(t, err)

	through := *l
	through.Spec.Files = []File{
		{Path: "/lib", Symlink: root},
		{Path: "/lib/escaped", Content: []byte("x")},
	}
	for _, c := range []struct {
		name  string
		key   digest.Digest
		layer *Layer
		want  string
	}{
		{"entry exists", l.Digest, l, "creating ALS entry: "},
		{"invalid key", "sha256:../../x", l, "validating ALS key"},
		{"through symlink", digest.FromString("x"), &through, "parent of \"lib/escaped\""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := WriteALSEntry(root, "", c.key, c.layer, EntryOptions{})
			assert.ErrorContains(t, err, c.want)
		})
	}
	assert.NoFileExists(t, filepath.Join(root, "escaped"))
}

// registryResponse is what a test request got back.
type registryResponse struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request to reg.
func do(t *testing.T, reg *Registry, method, path string, header map[string]string,
) registryResponse {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+reg.Addr()+path, nil)
	require.NoError(t, err)
	for k, v := range header {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return registryResponse{status: res.StatusCode, header: res.Header, body: body}
}

// errorCode returns the first error code of a distribution API error body.
func errorCode(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	require.NoError(t, json.Unmarshal(body, &e), string(body))
	require.NotEmpty(t, e.Errors)
	return e.Errors[0].Code
}

func TestRegistry(t *testing.T) {
	img, err := BuildImage([]LayerSpec{
		{Files: sampleFiles(), Compression: ZstdChunked},
		{Files: DemoLayers()[0].Files, Compression: Gzip},
	})
	require.NoError(t, err)
	reg, err := StartRegistry()
	require.NoError(t, err)
	defer func() { assert.NoError(t, reg.Close()) }()
	assert.True(t, strings.HasPrefix(reg.Addr(), "127.0.0.1:"), reg.Addr())
	reg.Put("ns/app", "v1", img)

	layer := img.Layers[1]
	const mPath, bPath = "/v2/ns/app/manifests/", "/v2/ns/app/blobs/"
	const oct = "application/octet-stream"
	mt, md, ld := imgspecv1.MediaTypeImageManifest, img.ManifestDigest, layer.Digest
	cd := img.ConfigDigest
	blob := bPath + ld.String()
	for _, c := range []struct {
		name, method, path, rng string
		status                  int
		body                    []byte
		ctype                   string
		dgst                    digest.Digest
	}{
		{"ping", "GET", "/v2/", "", 200, []byte("{}"), "application/json", ""},
		{"manifest by tag", "GET", mPath + "v1", "", 200, img.Manifest, mt, md},
		{"manifest by digest", "GET", mPath + md.String(), "", 200, img.Manifest, mt, md},
		{"manifest HEAD", "HEAD", mPath + "v1", "", 200, []byte{}, mt, md},
		{"config", "GET", bPath + cd.String(), "", 200, img.Config, oct, cd},
		{"blob", "GET", blob, "", 200, layer.Blob, oct, ld},
		{"blob HEAD", "HEAD", blob, "", 200, []byte{}, oct, ld},
		{"blob range", "GET", blob, "bytes=10-19", 206, layer.Blob[10:20], oct, ld},
		{"blob open range", "GET", blob, "bytes=100-", 206, layer.Blob[100:], oct, ld},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := do(t, reg, c.method, c.path, map[string]string{"Range": c.rng})
			require.Equal(t, c.status, res.status, string(res.body))
			assert.Equal(t, c.body, res.body)
			assert.Equal(t, c.ctype, res.header.Get("Content-Type"))
			assert.Equal(t, c.dgst.String(), res.header.Get("Docker-Content-Digest"))
			wantLength := len(c.body)
			if c.method == "HEAD" {
				wantLength = len(img.Manifest)
				if c.path == blob {
					wantLength = len(layer.Blob)
				}
			}
			assert.Equal(t, strconv.Itoa(wantLength), res.header.Get("Content-Length"))
		})
	}
	for _, c := range []struct {
		name, method, path string
		status             int
		code               string
	}{
		{"unknown tag", "GET", mPath + "v2", 404, "MANIFEST_UNKNOWN"},
		{"unknown repo", "GET", "/v2/ns/other/manifests/v1", 404, "NAME_UNKNOWN"},
		{"unknown blob", "GET", bPath + digest.FromString("x").String(), 404, "BLOB_UNKNOWN"},
		{"bad digest", "GET", bPath + "sha256:nothex", 400, "DIGEST_INVALID"},
		{"tags list", "GET", "/v2/ns/app/tags/list", 404, "NOT_FOUND"}, // not implemented
		{"upload", "POST", bPath + "uploads/", 405, "UNSUPPORTED"},     // read-only
		{"no repo", "GET", "/v2/manifests/v1", 404, "NOT_FOUND"},
		{"outside API", "GET", "/v1/_ping", 404, "NOT_FOUND"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := do(t, reg, c.method, c.path, nil)
			require.Equal(t, c.status, res.status, string(res.body))
			assert.Equal(t, "application/json", res.header.Get("Content-Type"))
			assert.Equal(t, c.code, errorCode(t, res.body))
		})
	}
	// Full GET, then 10 and len-100 bytes of ranges; HEADs and the config do not count.
	assert.Equal(t, layer.Size+10+layer.Size-100, reg.BlobBytesServed(layer.Digest))
	assert.Equal(t, reg.BlobBytesServed(layer.Digest), reg.LayerBytesServed(img))
}

func TestRegistryMultiRange(t *testing.T) {
	img, err := BuildImage([]LayerSpec{{Files: sampleFiles(), Compression: ZstdChunked}})
	require.NoError(t, err)
	reg, err := StartRegistry()
	require.NoError(t, err)
	defer func() { assert.NoError(t, reg.Close()) }()
	reg.Put("a/b/c", "", img)

	l := img.Layers[0]
	res := do(t, reg, "GET", "/v2/a/b/c/blobs/"+l.Digest.String(),
		map[string]string{"Range": "bytes=0-3,100-199,1000-1009"})
	require.Equal(t, http.StatusPartialContent, res.status)
	mediaType, params, err := mime.ParseMediaType(res.header.Get("Content-Type"))
	require.NoError(t, err)
	require.Equal(t, "multipart/byteranges", mediaType)
	mr := multipart.NewReader(bytes.NewReader(res.body), params["boundary"])
	for _, want := range []struct{ from, to int }{{0, 3}, {100, 199}, {1000, 1009}} {
		part, err := mr.NextPart()
		require.NoError(t, err)
		data, err := io.ReadAll(part)
		require.NoError(t, err)
		assert.Equal(t, l.Blob[want.from:want.to+1], data)
		assert.Equal(t, fmt.Sprintf("bytes %d-%d/%d", want.from, want.to, l.Size),
			part.Header.Get("Content-Range"))
	}
	_, err = mr.NextPart()
	assert.ErrorIs(t, err, io.EOF)
	assert.Equal(t, int64(len(res.body)), reg.LayerBytesServed(img), "framing counts too")

	noTag := do(t, reg, "GET", "/v2/a/b/c/manifests/"+img.ManifestDigest.String(), nil)
	assert.Equal(t, http.StatusOK, noTag.status)
}

func TestRegistryDenyBlobs(t *testing.T) {
	img, err := BuildImage(DemoLayers()[:2])
	require.NoError(t, err)
	reg, err := StartRegistry()
	require.NoError(t, err)
	defer func() { assert.NoError(t, reg.Close()) }()
	reg.Put("ns/app", "v1", img)
	reg.Put("ns/copy", "v1", img)

	denied, kept := img.Layers[0], img.Layers[1]
	reg.DenyBlobs(denied.Digest)
	for _, c := range []struct {
		method, repo string
		l            Layer
		status       int
	}{
		{"GET", "ns/app", denied, 404},
		{"HEAD", "ns/app", denied, 404},
		{"GET", "ns/copy", denied, 404}, // denied in every repository
		{"GET", "ns/app", denied, 404},  // and for good
		{"GET", "ns/app", kept, 200},
		{"HEAD", "ns/app", kept, 200},
	} {
		res := do(t, reg, c.method, "/v2/"+c.repo+"/blobs/"+c.l.Digest.String(), nil)
		require.Equal(t, c.status, res.status, "%s %s %s", c.method, c.repo, c.l.Digest)
		if c.status == 404 && c.method == "GET" {
			assert.Equal(t, "BLOB_UNKNOWN", errorCode(t, res.body))
		}
	}
	assert.Zero(t, reg.BlobBytesServed(denied.Digest))
	assert.Equal(t, kept.Size, reg.BlobBytesServed(kept.Digest))
	assert.Equal(t, kept.Size, reg.LayerBytesServed(img))
	manifest := do(t, reg, "GET", "/v2/ns/app/manifests/v1", nil)
	assert.Equal(t, http.StatusOK, manifest.status, "manifests stay available")
}

func TestRegistryPutIndex(t *testing.T) {
	img, err := BuildImage(DemoLayers()[:1])
	require.NoError(t, err)
	index, err := img.Index()
	require.NoError(t, err)
	reg, err := StartRegistry()
	require.NoError(t, err)
	defer func() { assert.NoError(t, reg.Close()) }()
	reg.PutIndex("multi", "latest", index, img)

	it, mt, l := imgspecv1.MediaTypeImageIndex, imgspecv1.MediaTypeImageManifest, img.Layers[0]

	for _, c := range []struct {
		path  string
		body  []byte
		ctype string
	}{
		{"/v2/multi/manifests/latest", index, it},
		{"/v2/multi/manifests/" + digest.FromBytes(index).String(), index, it},
		{"/v2/multi/manifests/" + img.ManifestDigest.String(), img.Manifest, mt},
		{"/v2/multi/blobs/" + l.Digest.String(), l.Blob, "application/octet-stream"},
	} {
		res := do(t, reg, "GET", c.path, nil)
		require.Equal(t, http.StatusOK, res.status, c.path)
		assert.Equal(t, c.body, res.body, c.path)
		assert.Equal(t, c.ctype, res.header.Get("Content-Type"), c.path)
	}
}

func TestRegistryConcurrent(t *testing.T) {
	img, err := BuildImage(DemoLayers())
	require.NoError(t, err)
	reg, err := StartRegistry()
	require.NoError(t, err)
	reg.Put("ns/app", "v1", img)

	const rounds = 3
	var wg sync.WaitGroup
	errs := make(chan error, rounds*len(img.Layers))
	for range rounds {
		for _, l := range img.Layers {
			wg.Go(func() {
				url := "http://" + reg.Addr() + "/v2/ns/app/blobs/" + l.Digest.String()
				res, err := http.Get(url)
				if err != nil {
					errs <- err
					return
				}
				defer res.Body.Close()
				body, err := io.ReadAll(res.Body)
				if err == nil && !bytes.Equal(body, l.Blob) {
					err = fmt.Errorf("blob %s: got %d bytes, want %d", l.Digest, len(body), l.Size)
				}
				if err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	var total int64
	for _, l := range img.Layers {
		total += l.Size
	}
	assert.Equal(t, rounds*total, reg.LayerBytesServed(img))
	require.NoError(t, reg.Close())
	require.NoError(t, reg.Close(), "closing twice is harmless")
	_, err = http.Get("http://" + reg.Addr() + "/v2/")
	assert.Error(t, err, "closed registry must not answer")
}
