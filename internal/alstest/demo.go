package alstest

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// DemoLayers returns four gzip layers forming a small but plausible root filesystem:
// os-release, a few binaries of 64 KiB to 1 MiB of incompressible bytes, documentation,
// a symlink and directories. The last layer replaces files of earlier ones, so that the
// order of layers matters when they are stacked.
func DemoLayers() []LayerSpec {
	base := []File{
		{Path: "/etc", Dir: true},
		{Path: "/etc/os-release", Content: osRelease("1.0")},
		{Path: "/etc/hostname", Content: []byte("alstest\n")},
		{Path: "/usr", Dir: true},
		{Path: "/usr/bin", Dir: true},
		{Path: "/usr/bin/busybox", Content: fakeBinary("busybox", 1<<20), Mode: 0o755},
		{Path: "/bin", Symlink: "usr/bin"},
		{Path: "/tmp", Dir: true, Mode: 0o777},
		{Path: "/var", Dir: true},
	}
	tools := []File{
		{Path: "/usr/bin/fetch", Content: fakeBinary("fetch", 256<<10), Mode: 0o755},
		{Path: "/usr/bin/unpack", Content: fakeBinary("unpack", 64<<10), Mode: 0o755},
		{Path: "/usr/share", Dir: true},
		{Path: "/usr/share/doc", Dir: true},
		{Path: "/usr/share/doc/tools", Dir: true},
		{Path: "/usr/share/doc/tools/README", Content: docText("tools", 40)},
	}
	app := []File{
		{Path: "/opt", Dir: true},
		{Path: "/opt/app", Dir: true},
		{Path: "/opt/app/server", Content: fakeBinary("server", 512<<10), Mode: 0o755},
		{Path: "/etc/app.conf", Content: []byte("listen = 127.0.0.1:8080\nworkers = 2\n")},
		{Path: "/usr/share/doc/app", Dir: true},
		{Path: "/usr/share/doc/app/LICENSE", Content: docText("app", 120)},
	}
	update := []File{
		{Path: "/etc/os-release", Content: osRelease("1.1")},
		{Path: "/usr/bin/unpack", Content: fakeBinary("unpack-1.1", 96<<10), Mode: 0o755},
		{Path: "/var/lib", Dir: true},
		{Path: "/var/lib/app", Dir: true, Mode: 0o700},
	}
	return []LayerSpec{
		{Files: base, Compression: Gzip},
		{Files: tools, Compression: Gzip},
		{Files: app, Compression: Gzip},
		{Files: update, Compression: Gzip},
	}
}

// osRelease returns an os-release file for the given version.
func osRelease(version string) []byte {
	return fmt.Appendf(nil, "NAME=\"ALS Test Linux\"\nID=alstest\nVERSION_ID=%s\n"+
		"PRETTY_NAME=\"ALS Test Linux %s\"\n", version, version)
}

// docText returns a numbered text document of the given number of lines.
func docText(topic string, lines int) []byte {
	var out []byte
	for i := range lines {
		out = fmt.Appendf(out, "%s: line %d of the documentation, kept plain and readable.\n",
			topic, i+1)
	}
	return out
}

// fakeBinary returns size bytes that start with an ELF magic number and continue with bytes
// derived from seed by hashing a counter, so they are stable and do not compress.
func fakeBinary(seed string, size int) []byte {
	out := make([]byte, 0, size+sha256.Size)
	out = append(out, 0x7f, 'E', 'L', 'F', 2, 1, 1, 0)
	var counter [8]byte
	for i := uint64(0); len(out) < size; i++ {
		binary.BigEndian.PutUint64(counter[:], i)
		h := sha256.New()
		h.Write([]byte(seed))
		h.Write(counter[:])
		out = h.Sum(out)
	}
	return out[:size]
}
