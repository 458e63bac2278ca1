package alstest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Registry is a read-only OCI distribution registry served over plain HTTP on 127.0.0.1 by
// the current process. It lets tests and the demo pull real images without network access,
// withdraw blobs to prove they were not needed, and count the layer bytes a pull fetched.
// It is safe for concurrent use.
type Registry struct {
	listener net.Listener
	server   *http.Server
	served   chan error

	closeOnce sync.Once
	closeErr  error

	mu     sync.Mutex
	repos  map[string]*registryRepo
	denied map[digest.Digest]bool
	bytes  map[digest.Digest]int64
}

// registryRepo holds what one repository serves.
type registryRepo struct {
	manifests map[string]storedManifest
	blobs     map[digest.Digest][]byte
}

// storedManifest is a manifest or index with the media type to answer it with.
type storedManifest struct {
	body      []byte
	mediaType string
	digest    digest.Digest
}

// StartRegistry starts a registry listening on 127.0.0.1 on a free port.
func StartRegistry() (*Registry, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting test registry: %w", err)
	}
	r := &Registry{
		listener: ln,
		served:   make(chan error, 1),
		repos:    map[string]*registryRepo{},
		denied:   map[digest.Digest]bool{},
		bytes:    map[digest.Digest]int64{},
	}
	r.server = &http.Server{Handler: r, ReadHeaderTimeout: 30 * time.Second}
	go func() { r.served <- r.server.Serve(ln) }()
	return r, nil
}

// Addr returns the registry address as "127.0.0.1:PORT", the host part of image references.
func (r *Registry) Addr() string {
	return r.listener.Addr().String()
}

// Close stops the registry and drops its open connections. Later calls return the result of
// the first one.
func (r *Registry) Close() error {
	r.closeOnce.Do(func() {
		if err := r.server.Close(); err != nil {
			r.closeErr = fmt.Errorf("closing test registry: %w", err)
			return
		}
		if err := <-r.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.closeErr = fmt.Errorf("serving test registry: %w", err)
		}
	})
	return r.closeErr
}

// repo returns the named repository, creating it. r.mu must be held.
func (r *Registry) repo(name string) *registryRepo {
	rp, ok := r.repos[name]
	if !ok {
		rp = &registryRepo{
			manifests: map[string]storedManifest{},
			blobs:     map[digest.Digest][]byte{},
		}
		r.repos[name] = rp
	}
	return rp
}

// Put makes repo serve img: its manifest by tag (unless tag is "") and by digest, and its
// config and layer blobs.
func (r *Registry) Put(repo, tag string, img *Image) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.putLocked(repo, tag, img)
}

// putLocked implements Put. r.mu must be held.
func (r *Registry) putLocked(repo, tag string, img *Image) {
	rp := r.repo(repo)
	m := storedManifest{
		body:      img.Manifest,
		mediaType: imgspecv1.MediaTypeImageManifest,
		digest:    img.ManifestDigest,
	}
	rp.manifests[img.ManifestDigest.String()] = m
	if tag != "" {
		rp.manifests[tag] = m
	}
	rp.blobs[img.ConfigDigest] = img.Config
	for _, l := range img.Layers {
		rp.blobs[l.Digest] = l.Blob
	}
}

// PutIndex makes repo serve index by tag (unless tag is "") and by digest, together with
// images, which are served by digest only. The index is answered with the media type named in
// its mediaType field, or the OCI index media type if it names none.
func (r *Registry) PutIndex(repo, tag string, index []byte, images ...*Image) {
	var parsed struct {
		MediaType string `json:"mediaType"`
	}
	mediaType := imgspecv1.MediaTypeImageIndex
	if json.Unmarshal(index, &parsed) == nil && parsed.MediaType != "" {
		mediaType = parsed.MediaType
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, img := range images {
		r.putLocked(repo, "", img)
	}
	m := storedManifest{body: index, mediaType: mediaType, digest: digest.FromBytes(index)}
	rp := r.repo(repo)
	rp.manifests[m.digest.String()] = m
	if tag != "" {
		rp.manifests[tag] = m
	}
}

// DenyBlobs makes the registry answer every later request for those blobs, in any
// repository, with 404 BLOB_UNKNOWN, as if they had been deleted.
func (r *Registry) DenyBlobs(digests ...digest.Digest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range digests {
		r.denied[d] = true
	}
}

// BlobBytesServed returns how many response body bytes have been written so far for blob d,
// over all repositories and GET requests, ranged ones included. For a multi-range request the
// multipart framing counts too.
func (r *Registry) BlobBytesServed(d digest.Digest) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bytes[d]
}

// LayerBytesServed returns the sum of BlobBytesServed over img's distinct layer digests.
func (r *Registry) LayerBytesServed(img *Image) int64 {
	seen := map[digest.Digest]bool{}
	var total int64
	for _, l := range img.Layers {
		if !seen[l.Digest] {
			seen[l.Digest] = true
			total += r.BlobBytesServed(l.Digest)
		}
	}
	return total
}

// ServeHTTP answers the read-only subset of the OCI distribution API that pulls use.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		writeRegistryError(w, http.StatusMethodNotAllowed, "UNSUPPORTED",
			"this test registry is read-only")
		return
	}
	if req.URL.Path == "/v2/" || req.URL.Path == "/v2" {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		_, _ = w.Write([]byte("{}"))
		return
	}
	repo, kind, ref, ok := splitRegistryPath(req.URL.Path)
	if !ok {
		writeRegistryError(w, http.StatusNotFound, "NOT_FOUND", "unknown path")
		return
	}
	switch kind {
	case "manifests":
		r.serveManifest(w, req, repo, ref)
	default:
		r.serveBlob(w, req, repo, ref)
	}
}

// splitRegistryPath splits "/v2/<repo>/{manifests,blobs}/<ref>" into its parts; repo may
// contain slashes, so the last marker wins.
func splitRegistryPath(p string) (repo, kind, ref string, ok bool) {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return "", "", "", false
	}
	best := -1
	for _, k := range []string{"manifests", "blobs"} {
		i := strings.LastIndex(rest, "/"+k+"/")
		if i > best {
			best, kind = i, k
		}
	}
	if best <= 0 {
		return "", "", "", false
	}
	repo, ref = rest[:best], rest[best+len(kind)+2:]
	if ref == "" || strings.Contains(ref, "/") {
		return "", "", "", false
	}
	return repo, kind, ref, true
}

// serveManifest answers a manifest request by tag or digest.
func (r *Registry) serveManifest(w http.ResponseWriter, req *http.Request, repo, ref string) {
	r.mu.Lock()
	rp, repoOK := r.repos[repo]
	var m storedManifest
	var ok bool
	if repoOK {
		m, ok = rp.manifests[ref]
	}
	r.mu.Unlock()
	switch {
	case !repoOK:
		writeRegistryError(w, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known")
		return
	case !ok:
		writeRegistryError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
		return
	}
	w.Header().Set("Content-Type", m.mediaType)
	w.Header().Set("Docker-Content-Digest", m.digest.String())
	w.Header().Set("Content-Length", strconv.Itoa(len(m.body)))
	if req.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(m.body)
}

// serveBlob answers a blob request, including Range requests, counting the body bytes.
func (r *Registry) serveBlob(w http.ResponseWriter, req *http.Request, repo, ref string) {
	d, err := digest.Parse(ref)
	if err != nil {
		writeRegistryError(w, http.StatusBadRequest, "DIGEST_INVALID", "invalid digest")
		return
	}
	r.mu.Lock()
	rp, repoOK := r.repos[repo]
	var blob []byte
	ok := false
	if repoOK && !r.denied[d] {
		blob, ok = rp.blobs[d]
	}
	r.mu.Unlock()
	switch {
	case !repoOK:
		writeRegistryError(w, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known")
		return
	case !ok:
		writeRegistryError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Docker-Content-Digest", d.String())
	cw := &countingWriter{ResponseWriter: w, count: func(n int) {
		r.mu.Lock()
		r.bytes[d] += int64(n)
		r.mu.Unlock()
	}}
	http.ServeContent(cw, req, "", time.Time{}, bytes.NewReader(blob))
}

// countingWriter reports the size of every body write to count.
type countingWriter struct {
	http.ResponseWriter
	count func(n int)
}

// Write writes p and counts what was written.
func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.count(n)
	return n, err
}

// writeRegistryError writes an error in the distribution API's JSON format.
func writeRegistryError(w http.ResponseWriter, status int, code, message string) {
	type apiError struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	body, err := json.Marshal(struct {
		Errors []apiError `json:"errors"`
	}{Errors: []apiError{{Code: code, Message: message}}})
	if err != nil {
		body = []byte(`{"errors":[]}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
