package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// recipe says how to make the root filesystem of one image and into how many layers to cut it.
type recipe struct {
	key         string // the cache directory's name; changes whenever the content would
	name        string // the repository name in the registry
	layers      int
	source      string // "debootstrap" or "generated"
	description string
	// makeRootfs fills the empty directory root, writing its progress to log.
	makeRootfs func(root string, log io.Writer) error
	// startsLayer, if not nil, says which entries start a new layer; if nil, the root
	// filesystem is cut into layers of about equal size.
	startsLayer func(rel string) bool
}

// debianSuite and debianPackages define the realistic image: Debian's minbase with compilers,
// a Go toolchain, LLVM's shared library, Python and git, about 1 GB of ordinary files.
const debianSuite = "bookworm"

var debianPackages = []string{
	"build-essential", "golang-1.19-go", "libllvm15", "python3", "git", "ca-certificates",
}

// debootstrapRecipe returns the recipe of the realistic image, cut into layers layers.
func debootstrapRecipe(layers int) recipe {
	mirror := debianMirror()
	sum := sha256.Sum256([]byte(strings.Join(
		append([]string{cacheFormat, debianSuite, fmt.Sprint(layers)}, debianPackages...), "\n")))
	return recipe{
		key:    "debian-" + debianSuite + "-" + hex.EncodeToString(sum[:6]),
		name:   "bench/debian",
		layers: layers,
		source: "debootstrap",
		description: fmt.Sprintf("Debian %s made by debootstrap --variant=minbase --include=%s, "+
			"cut in file order into %d layers of about equal size", debianSuite,
			strings.Join(debianPackages, ","), layers),
		makeRootfs: func(root string, log io.Writer) error {
			// A private mount namespace: debootstrap mounts /proc and /sys in the target, and
			// those mounts must not outlive it even if it is interrupted.
			cmd := exec.Command("unshare", "--mount", "--propagation", "private",
				"debootstrap", "--variant=minbase", "--include="+strings.Join(debianPackages, ","),
				debianSuite, root, mirror)
			cmd.Stdout, cmd.Stderr = log, log
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("debootstrap %s from %s: %w", debianSuite, mirror, err)
			}
			return nil
		},
	}
}

// debianMirror returns the first Debian archive apt is configured with, so that debootstrap
// uses the mirror the machine already uses.
func debianMirror() string {
	if m := os.Getenv("BENCH_DEBIAN_MIRROR"); m != "" {
		return m
	}
	for _, f := range []string{"/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"} {
		if m := firstDebianURI(f); m != "" {
			return m
		}
	}
	return "http://deb.debian.org/debian"
}

// firstDebianURI returns the first archive URI in an apt sources file (deb822 or one-line
// format) that is not the security archive, or "".
func firstDebianURI(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		var uri string
		switch {
		case len(fields) >= 2 && fields[0] == "URIs:":
			uri = fields[1]
		case len(fields) >= 3 && fields[0] == "deb" && !strings.HasPrefix(fields[1], "["):
			uri = fields[1]
		}
		if uri != "" && !strings.Contains(uri, "security") {
			return uri
		}
	}
	return ""
}

// generated describes a made-up root filesystem: groups directories of files files each, of
// fileSize bytes on average, a mix of text and binary-like content.
type generated struct {
	groups   int
	files    int
	fileSize int64
}

// generatedRecipe returns the recipe of an image of g, one layer per group.
func generatedRecipe(name string, g generated, why string) recipe {
	key := fmt.Sprintf("generated-%s-%dx%dx%d", cacheFormat, g.groups, g.files, g.fileSize)
	return recipe{
		key:    key,
		name:   name,
		layers: g.groups,
		source: "generated",
		description: fmt.Sprintf("generated: %d layers of %d files of %s on average, "+
			"three fifths text, two fifths binary-like%s", g.groups, g.files,
			humanBytes(g.fileSize), why),
		makeRootfs: func(root string, _ io.Writer) error { return generateRootfs(root, g) },
		startsLayer: func(rel string) bool {
			group, ok := strings.CutPrefix(rel, generatedGroups+"/")
			return ok && !strings.Contains(group, "/")
		},
	}
}

// generateRootfs writes g under root, deterministically. Text files hold words of a made-up
// vocabulary (gzip makes them about three times smaller), binary-like files hold bytes of
// which about half are zero (gzip saves about a third).
func generateRootfs(root string, g generated) error {
	rng := rand.New(rand.NewPCG(uint64(g.groups), uint64(g.fileSize)))
	vocab := make([][]byte, 4096)
	for i := range vocab {
		w := make([]byte, 2+rng.IntN(9))
		for j := range w {
			w[j] = byte('a' + rng.IntN(26))
		}
		vocab[i] = w
	}
	for grp := range g.groups {
		dir := filepath.Join(root, filepath.FromSlash(generatedGroups), fmt.Sprintf("g%03d", grp))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for i := range g.files {
			size := g.fileSize/2 + rng.Int64N(g.fileSize+1)
			name, content := fmt.Sprintf("f%04d.bin", i), binaryLike(rng, size)
			if rng.IntN(5) < 3 {
				name, content = fmt.Sprintf("f%04d.txt", i), textLike(rng, vocab, size)
			}
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, content, 0o644); err != nil {
				return err
			}
			if err := os.Chtimes(p, fixedTime, fixedTime); err != nil {
				return err
			}
		}
	}
	// Directory times last, after their contents stopped changing them.
	return filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return os.Chtimes(p, fixedTime, fixedTime)
	})
}

// textLike returns size bytes of lines of words from vocab.
func textLike(rng *rand.Rand, vocab [][]byte, size int64) []byte {
	out := make([]byte, 0, size+16)
	for int64(len(out)) < size {
		out = append(out, vocab[rng.IntN(len(vocab))]...)
		if rng.IntN(12) == 0 {
			out = append(out, '\n')
		} else {
			out = append(out, ' ')
		}
	}
	return out[:size]
}

// binaryLike returns size bytes, about half of them zero and the rest random.
func binaryLike(rng *rand.Rand, size int64) []byte {
	out := make([]byte, size)
	for i := range out {
		if rng.IntN(2) == 0 {
			out[i] = byte(rng.Uint32())
		}
	}
	return out
}

// ensureImage returns the image of r from the cache under cacheDir, making it first if needed.
func ensureImage(cacheDir string, r recipe, log io.Writer) (*builtImage, error) {
	dir := filepath.Join(cacheDir, "images", r.key)
	if img, err := cachedImage(dir); err != nil || img != nil {
		if img != nil {
			img.Name, img.Source, img.Description = r.name, r.source, r.description
		}
		return img, err
	}
	fmt.Fprintf(log, "making image %s (%s)\n", r.key, r.source)
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	root := filepath.Join(cacheDir, "rootfs-"+r.key)
	if err := os.RemoveAll(root); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(root) }()
	logPath := filepath.Join(cacheDir, r.key+".log")
	makeLog, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "making its root filesystem (log in %s)\n", logPath)
	err = r.makeRootfs(root, makeLog)
	if closeErr := makeLog.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return nil, fmt.Errorf("%w (log in %s)", err, logPath)
	}
	entries, err := scanRootfs(root)
	if err != nil {
		return nil, err
	}
	runs := splitEntries(entries, r.layers)
	if r.startsLayer != nil {
		runs = splitWhere(entries, r.startsLayer)
	}
	if len(runs) != r.layers {
		return nil, fmt.Errorf("%s: %d entries make %d layers, not %d", r.key, len(entries),
			len(runs), r.layers)
	}
	img := &builtImage{Name: r.name, Source: r.source, Description: r.description}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return nil, err
	}
	if err := writeImage(tmp, root, runs, img); err != nil {
		return nil, fmt.Errorf("writing image %s: %w", r.key, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	img.Layout = dir
	fmt.Fprintf(log, "made image %s: %d layers, %s compressed, %s uncompressed\n", r.key,
		len(img.Layers), humanBytes(img.compressedSize()), humanBytes(img.uncompressedSize()))
	return img, nil
}

// humanBytes formats n bytes with a binary unit.
func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// generatedGroups is the directory of a generated root filesystem that holds one directory per
// layer.
const generatedGroups = "usr/share/bench"

// splitWhere cuts entries, in order, into runs that each start at an entry for which starts
// is true; entries before the first such entry join the first run.
func splitWhere(entries []rootfsEntry, starts func(rel string) bool) [][]rootfsEntry {
	var runs [][]rootfsEntry
	begin, seen := 0, false
	for i, e := range entries {
		if !starts(e.rel) {
			continue
		}
		if seen {
			runs = append(runs, entries[begin:i])
			begin = i
		}
		seen = true
	}
	if begin < len(entries) {
		runs = append(runs, entries[begin:])
	}
	return runs
}
