package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// errNoStrace reports that strace, which scenario 5 needs, is not installed.
var errNoStrace = errors.New("strace is not installed")

// fsCalls is what strace saw one pull do on the Additional Layer Stores.
type fsCalls struct {
	Variant string `json:"variant"`
	Case    string `json:"case"` // "miss" (every store empty) or "hit"
	Layers  int    `json:"layers"`
	// Stores holds, per configured store (in the order configured), the calls on paths inside
	// it (the per-layer lookups and uses) and on the store's root itself (setup).
	Stores []storeCalls `json:"stores"`
}

// storeCalls counts the file system calls on one store.
type storeCalls struct {
	Spec      string         `json:"spec"`      // as configured, with ":ref" if keyed by reference
	Inside    int            `json:"inside"`    // calls on paths below the root
	PerLayer  float64        `json:"per_layer"` // Inside / layers
	Root      int            `json:"root"`      // calls on the root itself
	BySyscall map[string]int `json:"by_syscall"`
}

// traceStoreCalls pulls img with v under strace, the stores configured as specs, and counts
// the calls that name a path in each store. Only system calls that take a path are traced
// (strace's %file class: open, stat, access, readlink, mkdir, unlink, rename and the like).
func traceStoreCalls(p *puller, v *variant, img *builtImage, specs []string, kind string,
) (*fsCalls, error) {
	if _, err := exec.LookPath("strace"); err != nil {
		return nil, errNoStrace
	}
	p.count++
	out := filepath.Join(p.work, fmt.Sprintf("strace-%d.txt", p.count))
	store := filepath.Join(p.work, "stores", fmt.Sprintf("pull-%d", p.count))
	args := []string{
		"-f", "-qq", "-e", "trace=%file", "-o", out, v.bin,
		"-ref", p.reg.ref(img), "-store", store, "-ua", fmt.Sprintf("image-als-bench/%d", p.count),
		"-als", strings.Join(specs, ","),
	}
	cmd := exec.Command("strace", args...)
	var msg bytes.Buffer
	cmd.Stdout, cmd.Stderr = &msg, &msg
	if err := p.start(cmd); err != nil {
		return nil, fmt.Errorf("strace of %s pull: %w\n%s", v.ID, err, msg.String())
	}
	if left := mountsUnder(p.work); len(left) > 0 {
		return nil, fmt.Errorf("%s pull left mounts behind: %s", v.ID, strings.Join(left, " "))
	}
	res := &fsCalls{Variant: v.ID, Case: kind, Layers: len(img.Layers)}
	for _, s := range specs {
		res.Stores = append(res.Stores, storeCalls{Spec: s, BySyscall: map[string]int{}})
	}
	f, err := os.Open(out)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		name, path, ok := tracedPath(sc.Text())
		if !ok {
			continue
		}
		for i, s := range specs {
			root, _, _ := strings.Cut(s, ":")
			switch {
			case path == root:
				res.Stores[i].Root++
			case strings.HasPrefix(path, root+"/"):
				res.Stores[i].Inside++
				res.Stores[i].BySyscall[name]++
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for i := range res.Stores {
		res.Stores[i].PerLayer = float64(res.Stores[i].Inside) / float64(res.Layers)
	}
	return res, os.Remove(out)
}

// tracedPath returns the system call and the first quoted path of one line of strace -f
// output, such as `1234 newfstatat(AT_FDCWD, "/als/sha256:…/diff", 0xc000, 0) = -1 ENOENT`.
// The second half of a call strace split in two ("<... resumed>") is not counted again.
func tracedPath(line string) (name, path string, ok bool) {
	call := strings.TrimLeft(line, "0123456789 ")
	if strings.HasPrefix(call, "<...") {
		return "", "", false
	}
	name, args, found := strings.Cut(call, "(")
	if !found {
		return "", "", false
	}
	_, rest, found := strings.Cut(args, `"`)
	if !found {
		return "", "", false
	}
	path, _, found = strings.Cut(rest, `"`)
	return name, filepath.Clean(path), found
}
