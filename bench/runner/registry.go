package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/internal/alspull"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/types"
)

// registry is Debian's docker-registry serving from a directory, on 127.0.0.1.
type registry struct {
	addr string // 127.0.0.1:PORT
	log  string // the registry's log: one JSON record per line
	cmd  *exec.Cmd
}

// startRegistry starts docker-registry with its storage and log under dir, logging every
// response with its size.
func startRegistry(dir string) (*registry, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r := &registry{addr: fmt.Sprintf("127.0.0.1:%d", port), log: filepath.Join(dir, "registry.log")}
	config := fmt.Sprintf(`version: 0.1
log:
  level: info
  formatter: json
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "storage"), r.addr)
	configPath := filepath.Join(dir, "registry.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		return nil, err
	}
	logFile, err := os.Create(r.log)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	r.cmd = exec.Command("docker-registry", "serve", configPath)
	r.cmd.Stdout, r.cmd.Stderr = logFile, logFile
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting docker-registry: %w", err)
	}
	for range 100 {
		resp, err := http.Get("http://" + r.addr + "/v2/")
		if err == nil {
			_ = resp.Body.Close()
			return r, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = r.stop()
	return nil, fmt.Errorf("docker-registry did not answer on %s; its log is %s", r.addr, r.log)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// stop ends the registry. docker-registry exits with 143 on SIGTERM, which is not an error.
func (r *registry) stop() error {
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	err := r.cmd.Wait()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && exitErr.ExitCode() == 143 {
		return nil
	}
	if errors.As(err, &exitErr) && !exitErr.Exited() {
		return nil // Killed by the signal before it could exit by itself.
	}
	return err
}

// ref returns the reference of the image img in this registry, without transport.
func (r *registry) ref(img *builtImage) string {
	return r.addr + "/" + img.Name + ":1"
}

// push copies img from its OCI layout into the registry with c/image.
func (r *registry) push(img *builtImage) error {
	src, err := layout.NewReference(img.Layout, layoutTag)
	if err != nil {
		return err
	}
	dest, err := docker.ParseReference("//" + r.ref(img))
	if err != nil {
		return err
	}
	err = alspull.Copy(context.Background(), src, dest, &types.SystemContext{
		DockerInsecureSkipTLSVerify: types.OptionalBoolTrue,
		DockerRegistryUserAgent:     "image-als-bench push",
	}, nil)
	if err != nil {
		return fmt.Errorf("pushing %s: %w", r.ref(img), err)
	}
	return nil
}

// served is what the registry's log says it sent to one client (one User-Agent).
type served struct {
	requests   int
	bytes      int64                   // response body bytes, all requests
	layerBytes map[digest.Digest]int64 // response body bytes of GET requests for each blob
}

// servedByAgent reads the registry's log and sums, for each User-Agent, the body bytes of
// every response ("http.response.written" of each "response completed" record).
func (r *registry) servedByAgent() (map[string]*served, error) {
	f, err := os.Open(r.log)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res := map[string]*served{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec struct {
			Msg     string `json:"msg"`
			Agent   string `json:"http.request.useragent"`
			Method  string `json:"http.request.method"`
			URI     string `json:"http.request.uri"`
			Written int64  `json:"http.response.written"`
		}
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &rec) != nil ||
			!strings.HasPrefix(rec.Msg, "response completed") {
			continue
		}
		s := res[rec.Agent]
		if s == nil {
			s = &served{layerBytes: map[digest.Digest]int64{}}
			res[rec.Agent] = s
		}
		s.requests++
		s.bytes += rec.Written
		if _, blob, ok := strings.Cut(rec.URI, "/blobs/"); ok && rec.Method == http.MethodGet {
			if d, err := digest.Parse(blob); err == nil {
				s.layerBytes[d] += rec.Written
			}
		}
	}
	return res, sc.Err()
}

// layerBytes returns how many bytes of img's layer blobs s got.
func (s *served) layerBytesOf(img *builtImage) int64 {
	if s == nil {
		return 0
	}
	var n int64
	for _, l := range img.Layers {
		n += s.layerBytes[l.Digest]
	}
	return n
}
