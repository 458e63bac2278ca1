package main

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"sync"
	"syscall"
	"time"
)

// faultOps are the operations a fault may name. The first six are those a layer lookup and an
// overlay mount exercise most; the others let a test break xattrs, access checks and statfs.
var faultOps = []string{
	"lookup", "getattr", "open", "read", "readdir", "readlink",
	"getxattr", "listxattr", "access", "statfs",
}

// faultErrnos are the errors a fault may answer with, by name.
var faultErrnos = map[string]syscall.Errno{
	"EIO":    syscall.EIO,
	"ENOENT": syscall.ENOENT,
	"EACCES": syscall.EACCES,
}

// fault is one element of the list PUT /faults receives.
type fault struct {
	// Path is a path.Match pattern for the path relative to the mount root ("." for the root
	// itself); "" matches every path. "*" does not cross "/".
	Path string `json:"path"`
	// Op is one of faultOps, or "*" (or "") for all of them.
	Op string `json:"op"`
	// Errno is a key of faultErrnos, or "" for a fault that only delays.
	Errno string `json:"errno"`
	// DelayMS is how long a matching operation waits before it is answered.
	DelayMS int `json:"delayMs"`
	// After is how many matching operations succeed before the fault applies.
	After int `json:"after"`
}

// rule is a fault as the file system applies it.
type rule struct {
	fault
	errno syscall.Errno // 0 for a delay-only fault
	// passed counts the matching operations that succeeded while passed < After; the rule
	// applies once passed reaches After.
	passed int
}

// matches reports whether the rule is about op on rel.
func (r *rule) matches(op, rel string) bool {
	if r.Op != "" && r.Op != "*" && r.Op != op {
		return false
	}
	if r.Path == "" {
		return true
	}
	ok, _ := path.Match(r.Path, rel) // the pattern was validated by newRules
	return ok
}

// newRules validates faults and returns them as rules, in the same order.
func newRules(faults []fault) ([]*rule, error) {
	rules := make([]*rule, 0, len(faults))
	for i, f := range faults {
		r := &rule{fault: f}
		if f.Op != "" && f.Op != "*" && !slices.Contains(faultOps, f.Op) {
			return nil, fmt.Errorf("fault %d: unknown op %q (want one of %v or \"*\")", i, f.Op,
				faultOps)
		}
		if _, err := path.Match(f.Path, ""); err != nil {
			return nil, fmt.Errorf("fault %d: path %q: %w", i, f.Path, err)
		}
		if f.Errno != "" {
			errno, ok := faultErrnos[f.Errno]
			if !ok {
				return nil, fmt.Errorf("fault %d: unknown errno %q", i, f.Errno)
			}
			r.errno = errno
		}
		if f.DelayMS < 0 || f.After < 0 {
			return nil, fmt.Errorf("fault %d: delayMs and after must not be negative", i)
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// stats is what GET /stats returns. Paths and entries are relative to the mount root.
type stats struct {
	// Ops counts every request the file system answered, by operation and path, including
	// those a fault failed and the write attempts it refused.
	Ops map[string]map[string]int `json:"ops"`
	// Uses counts the "use" files created in each entry.
	Uses map[string]int `json:"uses"`
	// Releases counts the rmdirs of each entry.
	Releases map[string]int `json:"releases"`
	// Refs is each entry's reference count, uses minus releases; unlike the counters above it
	// survives POST /reset, as a store's reference counts would.
	Refs map[string]int `json:"refs"`
}

// behaviour holds what the control socket changes and reports: the faults and the counters.
// It is safe for concurrent use.
type behaviour struct {
	// stop is closed when the file system shuts down, cutting every pending delay short.
	stop <-chan struct{}

	mu    sync.Mutex
	rules []*rule
	stats stats
}

// newBehaviour returns a behaviour with no faults and zero counters.
func newBehaviour(stop <-chan struct{}) *behaviour {
	b := &behaviour{stop: stop}
	b.stats = stats{Refs: map[string]int{}}
	b.resetLocked()
	return b
}

// resetLocked clears the counters except Refs.
func (b *behaviour) resetLocked() {
	b.stats.Ops = map[string]map[string]int{}
	b.stats.Uses = map[string]int{}
	b.stats.Releases = map[string]int{}
}

// setFaults replaces the fault list; each new fault starts with no matching successes.
func (b *behaviour) setFaults(faults []fault) error {
	rules, err := newRules(faults)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rules = rules
	return nil
}

// faults returns the fault list as it was set.
func (b *behaviour) faults() []fault {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]fault, 0, len(b.rules))
	for _, r := range b.rules {
		out = append(out, r.fault)
	}
	return out
}

// reset clears the counters of GET /stats, except Refs; faults are kept.
func (b *behaviour) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.resetLocked()
}

// snapshot returns a copy of the counters.
func (b *behaviour) snapshot() stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := stats{
		Ops:      make(map[string]map[string]int, len(b.stats.Ops)),
		Uses:     cloneCounts(b.stats.Uses),
		Releases: cloneCounts(b.stats.Releases),
		Refs:     cloneCounts(b.stats.Refs),
	}
	for op, byPath := range b.stats.Ops {
		out.Ops[op] = cloneCounts(byPath)
	}
	return out
}

// cloneCounts copies m, never returning nil so that JSON shows an empty object.
func cloneCounts(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	maps.Copy(out, m)
	return out
}

// countLocked records one request for op on rel.
func (b *behaviour) countLocked(op, rel string) {
	byPath := b.stats.Ops[op]
	if byPath == nil {
		byPath = map[string]int{}
		b.stats.Ops[op] = byPath
	}
	byPath[rel]++
}

// count records one request for op on rel that no fault applies to.
func (b *behaviour) count(op, rel string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.countLocked(op, rel)
}

// use records a "use" notification for entry.
func (b *behaviour) use(entry string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stats.Uses[entry]++
	b.stats.Refs[entry]++
}

// release records a release notification for entry.
func (b *behaviour) release(entry string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stats.Releases[entry]++
	b.stats.Refs[entry]--
}

// serve counts op on rel and answers it: every fault that matches and applies delays it by its
// DelayMS, in list order, and the first of them with an errno fails it; otherwise do answers.
// When do succeeds, the operation counts towards the After of every matching fault that does
// not apply yet. Two concurrent operations may both pass a fault that has one success left.
func (b *behaviour) serve(op, rel string, do func() syscall.Errno) syscall.Errno {
	b.mu.Lock()
	b.countLocked(op, rel)
	rules := b.rules
	var delay time.Duration
	var errno syscall.Errno
	for _, r := range rules {
		if !r.matches(op, rel) || r.passed < r.After {
			continue
		}
		delay += time.Duration(r.DelayMS) * time.Millisecond
		if r.errno != 0 {
			errno = r.errno
			break
		}
	}
	b.mu.Unlock()

	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-b.stop:
			t.Stop()
		}
	}
	if errno != 0 {
		return errno
	}
	if errno = do(); errno != 0 {
		return errno
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range rules {
		if r.passed < r.After && r.matches(op, rel) {
			r.passed++
		}
	}
	return 0
}

// errnoOf returns the errno inside err, EIO if it holds none, and 0 for nil.
func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	if errno, ok := errors.AsType[syscall.Errno](err); ok {
		return errno
	}
	return syscall.EIO
}
