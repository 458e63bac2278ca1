package alstest

import (
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/archive"
	"golang.org/x/sys/unix"
)

// nestedRef is a reference whose RefDir holds "/" twice, so that a :ref store keeps its
// entries four directories deep. No valid Docker reference does that: base64 only writes "/"
// for a '?', a DEL or a non-ASCII byte at the right offset.
const nestedRef = "127.0.0.1:5000/ns/app:v123?ab?x"

// fuseEntry is the ALS entry of a FUSEStore that startFUSE started.
type fuseEntry struct {
	store *FUSEStore
	layer *Layer
	rel   string // the entry relative to the mount, as the store's counters name it
}

// path returns the path of name in the entry, through the mount.
func (e fuseEntry) path(name string) string {
	return filepath.Join(e.store.Mount, e.rel, name)
}

// startFUSE serves a store whose only entry holds a gzip layer of sampleFiles, keyed by its
// digest and under RefDir(ref) unless ref is "". It closes the store when the test ends and
// checks that this succeeds and that nothing stays mounted. It skips the test unless it runs
// as root with FUSE.
func startFUSE(t *testing.T, ref string) fuseEntry {
	t.Helper()
	e := startFUSEUnchecked(t, ref)
	t.Cleanup(func() { assert.NoError(t, e.store.Close()) })
	return e
}

// startFUSEUnchecked is startFUSE for tests that close the store themselves: it does not check
// what Close returns.
func startFUSEUnchecked(t *testing.T, ref string) fuseEntry {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting FUSE and overlay needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no FUSE: %v", err)
	}
	img, err := BuildImage([]LayerSpec{{Files: sampleFiles(), Compression: Gzip}})
	require.NoError(t, err)
	l := &img.Layers[0]
	backing := t.TempDir()
	_, err = WriteALSEntry(backing, ref, l.Digest, l, EntryOptions{})
	require.NoError(t, err)
	f, err := StartFUSEStore(backing)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = f.Close()
		assertNotMounted(t, f.Mount)
	})
	rel := l.Digest.String()
	if ref != "" {
		rel = path.Join(RefDir(ref), rel)
	}
	return fuseEntry{store: f, layer: l, rel: rel}
}

// assertNotMounted checks that nothing is mounted at dir.
func assertNotMounted(t *testing.T, dir string) {
	t.Helper()
	fstype, err := mountType(dir)
	assert.NoError(t, err)
	assert.Empty(t, fstype, "mounted at %s", dir)
}

// assertMirrors checks that mirror holds what dir holds: the same names, types, modes, owners,
// modification times, contents and symlink targets.
func assertMirrors(t *testing.T, dir, mirror string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		want, err := os.Lstat(p)
		if err != nil {
			return err
		}
		got, err := os.Lstat(filepath.Join(mirror, rel))
		if !assert.NoError(t, err, rel) {
			return nil
		}
		assert.Equal(t, want.Mode(), got.Mode(), rel)
		assert.Equal(t, want.ModTime(), got.ModTime(), rel)
		wantSys, gotSys := want.Sys().(*syscall.Stat_t), got.Sys().(*syscall.Stat_t)
		assert.Equal(t, [2]uint32{wantSys.Uid, wantSys.Gid}, [2]uint32{gotSys.Uid, gotSys.Gid}, rel)
		switch {
		case want.Mode().IsRegular():
			wantData, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			gotData, err := os.ReadFile(filepath.Join(mirror, rel))
			assert.NoError(t, err, rel)
			assert.Equal(t, wantData, gotData, rel)
		case want.Mode()&fs.ModeSymlink != 0:
			wantTarget, err := os.Readlink(p)
			if err != nil {
				return err
			}
			gotTarget, err := os.Readlink(filepath.Join(mirror, rel))
			assert.NoError(t, err, rel)
			assert.Equal(t, wantTarget, gotTarget, rel)
		case want.IsDir():
			assert.Equal(t, dirNames(t, p), dirNames(t, filepath.Join(mirror, rel)), rel)
		}
		return nil
	})
	require.NoError(t, err)
}

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	names := []string{}
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestStartFUSEStore(t *testing.T) {
	require.Contains(t, strings.TrimSuffix(RefDir(nestedRef), "/"), "/")
	for _, ref := range []string{
		"",                         // a store keyed by digest only
		"127.0.0.1:5000/ns/app:v1", // a :ref store
		nestedRef,                  // a :ref store whose reference directory is nested
	} {
		t.Run(RefDir(ref), func(t *testing.T) {
			e := startFUSE(t, ref)
			fstype, err := mountType(e.store.Mount)
			require.NoError(t, err)
			assert.Equal(t, "fuse.alsfuse", fstype)
			assert.True(t, filepath.IsAbs(e.store.Backing))
			assertMirrors(t, e.store.Backing, e.store.Mount)
			checkDiff(t, e.path("diff"))
		})
	}

	before, err := filepath.Glob(filepath.Join(os.TempDir(), "alsfuse-[0-9]*"))
	require.NoError(t, err)
	_, err = StartFUSEStore(filepath.Join(t.TempDir(), "missing"))
	assert.Error(t, err)
	after, err := filepath.Glob(filepath.Join(os.TempDir(), "alsfuse-[0-9]*"))
	require.NoError(t, err)
	assert.Equal(t, before, after, "a failed start leaves nothing behind")
}

// createFile creates and closes p, as c/storage does to send a "use" notification.
func createFile(p string) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	return f.Close()
}

func TestFUSEStoreReadOnly(t *testing.T) {
	e := startFUSE(t, "")
	entryDir, info := filepath.Join(e.store.Mount, e.rel), e.path("info")
	for i, c := range []struct {
		do             func() error
		want           error
		uses, releases int
	}{
		{func() error { return createFile(e.path("use")) }, syscall.ENOENT, 1, 0}, // use
		{func() error { return unix.Rmdir(entryDir) }, syscall.ENOENT, 0, 1},      // release
		{func() error { return createFile(e.path("diff/use")) }, syscall.EROFS, 0, 0},
		{func() error { return unix.Rmdir(e.path("diff")) }, syscall.EROFS, 0, 0},
		{func() error { return unix.Rmdir(e.store.Mount) }, syscall.EBUSY, 0, 0},
		{func() error { return createFile(e.path("used")) }, syscall.EROFS, 0, 0},
		{func() error { return os.WriteFile(info, nil, 0o644) }, syscall.EROFS, 0, 0},
		{func() error { return os.Truncate(e.path("blob"), 0) }, syscall.EROFS, 0, 0},
		{func() error { return os.Chmod(info, 0o600) }, syscall.EROFS, 0, 0},
		{func() error { return os.Remove(info) }, syscall.EROFS, 0, 0},
		{func() error { return os.Mkdir(e.path("new"), 0o755) }, syscall.EROFS, 0, 0},
		{func() error { return os.Symlink("info", e.path("new")) }, syscall.EROFS, 0, 0},
		{func() error { return os.Link(info, e.path("new")) }, syscall.EROFS, 0, 0},
		{func() error { return os.Rename(info, e.path("new")) }, syscall.EROFS, 0, 0},
		{func() error { return unix.Setxattr(info, "user.x", nil, 0) }, syscall.EROFS, 0, 0},
	} {
		require.NoError(t, e.store.ResetStats())
		err := c.do()
		assert.ErrorIs(t, err, c.want, "row %d", i)
		stats, err := e.store.Stats()
		require.NoError(t, err)
		assert.Equal(t, c.uses, stats.Uses[e.rel], "row %d: uses", i)
		assert.Equal(t, c.releases, stats.Releases[e.rel], "row %d: releases", i)
	}

	stats, err := e.store.Stats()
	require.NoError(t, err)
	assert.Equal(t, map[string]int{e.rel: 0}, stats.Refs)
	assertMirrors(t, e.store.Backing, e.store.Mount)
	assert.NoFileExists(t, filepath.Join(e.store.Backing, e.rel, "use"))
}

// readFile, readDir and readLink read p and return only the error.
func readFile(p string) error { _, err := os.ReadFile(p); return err }
func readDir(p string) error  { _, err := os.ReadDir(p); return err }
func readLink(p string) error { _, err := os.Readlink(p); return err }

func TestFUSEStoreSetFaults(t *testing.T) {
	e := startFUSE(t, "")
	eio, enoent, eacces := syscall.EIO, syscall.ENOENT, syscall.EACCES
	slow := 150 * time.Millisecond
	for i, c := range []struct {
		fault Fault // "@" in Path stands for the entry
		read  func(string) error
		file  string        // relative to the entry, read once per element of want
		want  []error       // nil for success
		delay time.Duration // the least each read takes
	}{
		{Fault{"@/info", "lookup", "EIO", 0, 0}, readFile, "info", []error{eio, eio}, 0},
		{Fault{"@/info", "lookup", "ENOENT", 0, 0}, readFile, "info", []error{enoent}, 0},
		{Fault{"@/info", "lookup", "EACCES", 0, 0}, readFile, "info", []error{eacces}, 0},
		{Fault{"@/info", "lookup", "ENOENT", 0, 1}, readFile, "info", []error{nil, enoent}, 0},
		{Fault{"@/info", "open", "EIO", 0, 0}, readFile, "info", []error{eio}, 0},
		{Fault{"@/info", "read", "EIO", 0, 0}, readFile, "info", []error{eio}, 0},
		{Fault{"@/info", "read", "ENOENT", 0, 0}, readFile, "info", []error{enoent}, 0},
		{Fault{"@/info", "read", "EACCES", 0, 0}, readFile, "info", []error{eacces}, 0},
		{Fault{"@/info", "read", "EIO", 0, 2}, readFile, "info", []error{nil, nil, eio}, 0},
		{Fault{"@/info", "*", "EIO", 0, 0}, readFile, "info", []error{eio}, 0},
		{Fault{"", "*", "EIO", 0, 0}, readFile, "blob", []error{eio}, 0},
		{Fault{"@/diff", "readdir", "EIO", 0, 0}, readDir, "diff", []error{eio}, 0},
		{Fault{"@/diff/bin", "readlink", "EIO", 0, 0}, readLink, "diff/bin", []error{eio}, 0},
		{Fault{"*/diff/*", "lookup", "EIO", 0, 0}, readFile, "diff/etc/motd", []error{eio}, 0},
		{Fault{"*/diff/*", "lookup", "EIO", 0, 0}, readFile, "info", []error{nil}, 0},
		{Fault{"@/blob", "read", "", 150, 0}, readFile, "blob", []error{nil}, slow},
		{Fault{"@/blob", "read", "EIO", 150, 0}, readFile, "blob", []error{eio}, slow},
		// Failed operations do not count towards After.
		{Fault{"@/none", "lookup", "EIO", 0, 1}, readFile, "none", []error{enoent, enoent}, 0},
	} {
		fault := c.fault
		fault.Path = strings.ReplaceAll(fault.Path, "@", e.rel)
		require.NoError(t, e.store.SetFaults([]Fault{fault}))
		for j, want := range c.want {
			start := time.Now()
			err := c.read(e.path(c.file))
			if want == nil {
				assert.NoError(t, err, "row %d, read %d", i, j)
			} else {
				assert.ErrorIs(t, err, want, "row %d, read %d", i, j)
			}
			assert.GreaterOrEqual(t, time.Since(start), c.delay, "row %d, read %d", i, j)
		}
	}

	openEIO := Fault{Path: e.rel + "/info", Op: "open", Errno: "EIO"}
	require.NoError(t, e.store.SetFaults([]Fault{openEIO}))
	for _, bad := range []Fault{
		{Op: "write"},                // not an operation a fault can break
		{Op: "read", Errno: "EPERM"}, // not an errno a fault can answer
		{Path: "[", Op: "read"},      // a malformed pattern
		{Op: "read", DelayMS: -1},
		{Op: "read", After: -1},
	} {
		assert.Error(t, e.store.SetFaults([]Fault{bad}), "%+v", bad)
	}
	assert.ErrorIs(t, readFile(e.path("info")), syscall.EIO, "a rejected list replaces nothing")
	require.NoError(t, e.store.SetFaults(nil))
	assert.NoError(t, readFile(e.path("info")))
}

func TestFUSEStoreStats(t *testing.T) {
	e := startFUSE(t, nestedRef)
	require.NoError(t, e.store.ResetStats())
	require.NoError(t, readFile(e.path("info")))
	require.NoError(t, readDir(e.path("diff")))
	require.NoError(t, readLink(e.path("diff/bin")))
	assert.ErrorIs(t, createFile(e.path("use")), syscall.ENOENT)
	assert.ErrorIs(t, unix.Rmdir(filepath.Join(e.store.Mount, e.rel)), syscall.ENOENT)
	assert.ErrorIs(t, createFile(e.path("use")), syscall.ENOENT)

	stats, err := e.store.Stats()
	require.NoError(t, err)
	assert.Equal(t, 1, stats.Ops["open"][e.rel+"/info"])
	assert.Equal(t, 1, stats.Ops["read"][e.rel+"/info"])
	assert.Equal(t, 1, stats.Ops["readdir"][e.rel+"/diff"])
	assert.Equal(t, 1, stats.Ops["readlink"][e.rel+"/diff/bin"])
	assert.Equal(t, 2, stats.Ops["create"][e.rel+"/use"])
	assert.Equal(t, 1, stats.Ops["rmdir"][e.rel])
	for dir := e.rel; dir != "."; dir = path.Dir(dir) {
		assert.Positive(t, stats.Ops["lookup"][dir], "lookups of %s", dir)
	}
	assert.Equal(t, map[string]int{e.rel: 2}, stats.Uses)
	assert.Equal(t, map[string]int{e.rel: 1}, stats.Releases)
	assert.Equal(t, map[string]int{e.rel: 1}, stats.Refs)

	require.NoError(t, e.store.ResetStats())
	stats, err = e.store.Stats()
	require.NoError(t, err)
	assert.Empty(t, stats.Ops)
	assert.Empty(t, stats.Uses)
	assert.Empty(t, stats.Releases)
	assert.Equal(t, map[string]int{e.rel: 1}, stats.Refs, "ResetStats keeps reference counts")
}

// mountOverlay mounts a read-only overlay of lowers (the first on top) on a new directory,
// unmounted when the test ends, and returns the directory.
func mountOverlay(t *testing.T, lowers ...string) string {
	t.Helper()
	escaped := make([]string, 0, len(lowers))
	for _, l := range lowers {
		escaped = append(escaped, strings.NewReplacer(`\`, `\\`, `:`, `\:`, `,`, `\,`).Replace(l))
	}
	target := t.TempDir()
	err := unix.Mount("overlay", target, "overlay", 0, "lowerdir="+strings.Join(escaped, ":"))
	require.NoError(t, err)
	t.Cleanup(func() {
		if fstype, _ := mountType(target); fstype != "" {
			assert.NoError(t, unix.Unmount(target, unix.MNT_DETACH))
		}
	})
	return target
}

func TestFUSEStoreOverlay(t *testing.T) {
	for _, ref := range []string{"", nestedRef} {
		t.Run(RefDir(ref), func(t *testing.T) {
			e := startFUSE(t, ref)
			other := t.TempDir()
			require.NoError(t, os.Mkdir(filepath.Join(other, "etc"), 0o755))
			for name, content := range map[string]string{"motd": "other\n", "hostname": "h\n"} {
				p := filepath.Join(other, "etc", name)
				require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
			}
			require.NoError(t, e.store.ResetStats())
			merged := mountOverlay(t, other, e.path("diff"))

			for file, want := range map[string]string{
				"etc/motd":     "other\n", // in both lowers: the top one wins
				"etc/hostname": "h\n",     // only in the other lower
				"etc/secret":   "s3cret\n",
				"bin/tool":     string(fakeBinary("tool", 70_000)), // through the FUSE symlink
			} {
				got, err := os.ReadFile(filepath.Join(merged, file))
				require.NoError(t, err, file)
				assert.Equal(t, want, string(got), file)
			}
			assert.Equal(t, []string{"hostname", "motd", "secret"},
				dirNames(t, filepath.Join(merged, "etc")))
			stats, err := e.store.Stats()
			require.NoError(t, err)
			assert.Positive(t, stats.Ops["read"][e.rel+"/diff/usr/bin/tool"])
			assert.Positive(t, stats.Ops["read"][e.rel+"/diff/etc/secret"])
			assert.Zero(t, stats.Ops["read"][e.rel+"/diff/etc/motd"], "hidden by the top lower")
			require.NoError(t, unix.Unmount(merged, 0))
		})
	}
}

func TestFUSEStoreClose(t *testing.T) {
	for _, c := range []struct {
		name    string
		before  func(t *testing.T, e fuseEntry)
		wantErr bool
	}{
		{"idle", func(*testing.T, fuseEntry) {}, false},
		{"busy", func(t *testing.T, e fuseEntry) {
			mountOverlay(t, e.path("diff"), t.TempDir())
		}, false},
		{"killed", func(t *testing.T, e fuseEntry) {
			require.NoError(t, e.store.cmd.Process.Kill())
			<-e.store.exited
		}, true},
		{"lifeline cut", func(t *testing.T, e fuseEntry) { // as when the test process dies
			require.NoError(t, e.store.lifeline.Close())
			<-e.store.exited
			assertNotMounted(t, e.store.Mount)
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := startFUSEUnchecked(t, "")
			c.before(t, e)
			err := e.store.Close()
			if c.wantErr {
				assert.Error(t, err)
			} else {
				assert.NoError(t, err)
			}
			assertNotMounted(t, e.store.Mount)
			assert.NoDirExists(t, e.store.Mount)
			assert.Equal(t, err, e.store.Close(), "a second Close")
		})
	}
}

func TestFUSEStoreStorage(t *testing.T) {
	for _, c := range []struct {
		ref string
		put bool // create a layer from the entry, use it, delete it
	}{
		{"", true},
		{"127.0.0.1:5000/ns/app:v1", true},
		{nestedRef, true},
		{"", false}, // looked up and released only
	} {
		t.Run(RefDir(c.ref), func(t *testing.T) {
			e := startFUSE(t, c.ref)
			option := "overlay.additionallayerstore=" + e.store.Mount
			if c.ref != "" {
				option += ":ref"
			}
			wd := t.TempDir()
			store, err := storage.GetStore(storage.StoreOptions{
				RunRoot:            filepath.Join(wd, "run"),
				GraphRoot:          filepath.Join(wd, "root"),
				GraphDriverName:    "overlay",
				GraphDriverOptions: []string{option},
			})
			require.NoError(t, err)
			t.Cleanup(func() { _, _ = store.Shutdown(true) }) // before the FUSE store closes
			require.NoError(t, e.store.ResetStats())

			al, err := store.LookupAdditionalLayer(e.layer.Digest, c.ref)
			require.NoError(t, err)
			var layer *storage.Layer
			if c.put {
				layer, err = al.PutAs(digest.FromString(t.Name()).Encoded(), "", nil)
				require.NoError(t, err)
				assert.Equal(t, e.layer.Digest, layer.CompressedDigest)
				assert.Equal(t, e.layer.DiffID, layer.UncompressedDigest)
			}
			al.Release()
			if c.put {
				stats, err := e.store.Stats()
				require.NoError(t, err)
				assert.Equal(t, 1, stats.Refs[e.rel], "the committed layer holds the entry")
				useAndDeleteLayer(t, store, layer, e.layer.Blob)
			}
			_, err = store.Shutdown(true)
			require.NoError(t, err)

			stats, err := e.store.Stats()
			require.NoError(t, err)
			t.Logf("c/storage sent %d uses and %d releases", stats.Uses[e.rel],
				stats.Releases[e.rel])
			assert.Positive(t, stats.Uses[e.rel])
			assert.Equal(t, stats.Uses[e.rel], stats.Releases[e.rel], "uses and releases")
			assert.Equal(t, map[string]int{e.rel: 0}, stats.Refs)
			if c.put {
				assert.Positive(t, stats.Ops["read"][e.rel+"/blob"])
				assert.Positive(t, stats.Ops["read"][e.rel+"/diff/etc/motd"])
			}
		})
	}
}

// useAndDeleteLayer reads the blob of layer, a gzip layer of sampleFiles taken from an
// Additional Layer Store, as a push does; mounts a writable layer on top of it, reads and
// writes through the mount; and deletes both layers.
func useAndDeleteLayer(t *testing.T, store storage.Store, layer *storage.Layer, blob []byte) {
	t.Helper()
	gzip := archive.Gzip
	diff, err := store.Diff("", layer.ID, &storage.DiffOptions{Compression: &gzip})
	require.NoError(t, err)
	got, err := io.ReadAll(diff)
	assert.NoError(t, err)
	assert.NoError(t, diff.Close())
	assert.Equal(t, blob, got, "the blob, as the store serves it")

	top, err := store.CreateLayer("", layer.ID, nil, "", true, nil)
	require.NoError(t, err)
	merged, err := store.Mount(top.ID, "")
	require.NoError(t, err)
	motd, err := os.ReadFile(filepath.Join(merged, "etc/motd"))
	assert.NoError(t, err)
	assert.Equal(t, "hello\n", string(motd))
	assert.NoError(t, os.WriteFile(filepath.Join(merged, "etc/new"), []byte("x"), 0o644))
	_, err = store.Unmount(top.ID, true)
	require.NoError(t, err)
	require.NoError(t, store.DeleteLayer(top.ID))
	require.NoError(t, store.DeleteLayer(layer.ID))
	_, err = store.Layer(layer.ID)
	assert.ErrorIs(t, err, storage.ErrLayerUnknown)
}
