package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// variant is one build of bench/pull.
type variant struct {
	ID    string `json:"id"`    // "patched", "pristine" or "v5.30.1"
	Label string `json:"label"` // what the tables call it
	bin   string
}

// pullStep is one pull of a round: which build pulls which image with which stores.
type pullStep struct {
	scenario string // "hit", "miss" or "growth-N"
	v        *variant
	img      *builtImage
	als      string // the overlay driver's additionallayerstore value
	fromALS  bool   // whether every layer must come from the store; otherwise none may
	profile  string // if not empty, where the pull writes a CPU profile of itself
	tmpfs    bool   // put the store on puller.tmpfs instead of under puller.work
}

// pullResult is one timed pull.
type pullResult struct {
	Scenario   string  `json:"scenario"`
	Variant    string  `json:"variant"`
	Round      int     `json:"round"` // 0 is the warm-up round
	Rep        int     `json:"rep"`   // 1 for the first pull of its scenario and build in a round
	WallMS     float64 `json:"wall_ms"`
	SetupMS    float64 `json:"setup_ms"`
	CopyMS     float64 `json:"copy_ms"`
	ShutdownMS float64 `json:"shutdown_ms"`
	ProcessMS  float64 `json:"process_ms"` // from starting the program to its exit
	Layers     int     `json:"layers"`
	FromALS    int     `json:"from_als"`
	LayerBytes int64   `json:"layer_bytes_served"` // from the registry's log
	Bytes      int64   `json:"bytes_served"`       // all responses, manifest and config too
	Requests   int     `json:"requests"`
	agent      string
	img        *builtImage
}

// puller runs bench/pull, one new store per pull, under work (or tmpfs).
type puller struct {
	work  string
	tmpfs string // a directory on a tmpfs, "" if there is none
	reg   *registry
	count int

	mu      sync.Mutex
	running chan struct{} // closed when the pull in progress ends; nil between pulls
}

// start runs cmd, noting it as the pull in progress, and waits for it.
func (p *puller) start(cmd *exec.Cmd) error {
	done := make(chan struct{})
	p.mu.Lock()
	p.running = done
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.running = nil
		p.mu.Unlock()
		close(done)
	}()
	return cmd.Run()
}

// waitIdle waits until no pull is in progress, or timeout has passed.
func (p *puller) waitIdle(timeout time.Duration) {
	p.mu.Lock()
	running := p.running
	p.mu.Unlock()
	if running == nil {
		return
	}
	select {
	case <-running:
	case <-time.After(timeout):
	}
}

// run performs step as pull number p.count of round round and checks where the layers came
// from. Dirty pages are written back before each pull, so that no pull pays for the writes of
// the one before it.
func (p *puller) run(step pullStep, round int) (*pullResult, error) {
	p.count++
	agent := fmt.Sprintf("image-als-bench/%d", p.count)
	store := filepath.Join(p.work, "stores", fmt.Sprintf("pull-%d", p.count))
	if step.tmpfs {
		store = filepath.Join(p.tmpfs, fmt.Sprintf("pull-%d", p.count))
	}
	args := []string{"-ref", p.reg.ref(step.img), "-store", store, "-ua", agent}
	if step.als != "" {
		args = append(args, "-als", step.als)
	}
	if step.profile != "" {
		args = append(args, "-cpuprofile", step.profile)
	}
	syscall.Sync()
	cmd := exec.Command(step.v.bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := p.start(cmd)
	elapsed := time.Since(start)
	if err != nil {
		return nil, fmt.Errorf("%s pull (%s) failed: %w\n%s", step.v.ID, step.scenario, err,
			stderr.String())
	}
	if left := append(mountsUnder(p.work), mountsUnder(p.tmpfs)...); len(left) > 0 {
		return nil, fmt.Errorf("%s pull left mounts behind: %s", step.v.ID,
			strings.Join(left, " "))
	}
	var out struct {
		SetupNS    int64 `json:"setup_ns"`
		CopyNS     int64 `json:"copy_ns"`
		ShutdownNS int64 `json:"shutdown_ns"`
		WallNS     int64 `json:"wall_ns"`
		Layers     int   `json:"layers"`
		FromALS    int   `json:"from_als"`
	}
	dec := json.NewDecoder(&stdout)
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("reading what %s printed: %w", step.v.bin, err)
	}
	r := &pullResult{
		Scenario: step.scenario, Variant: step.v.ID, Round: round,
		WallMS: ms(out.WallNS), SetupMS: ms(out.SetupNS), CopyMS: ms(out.CopyNS),
		ShutdownMS: ms(out.ShutdownNS), ProcessMS: ms(elapsed.Nanoseconds()),
		Layers: out.Layers, FromALS: out.FromALS, agent: agent, img: step.img,
	}
	want := 0
	if step.fromALS {
		want = len(step.img.Layers)
	}
	if r.Layers != len(step.img.Layers) || r.FromALS != want {
		return nil, fmt.Errorf("%s pull (%s): %d of %d layers from the store, want %d of %d",
			step.v.ID, step.scenario, r.FromALS, r.Layers, want, len(step.img.Layers))
	}
	return r, nil
}

// ms converts nanoseconds to milliseconds.
func ms(ns int64) float64 { return float64(ns) / 1e6 }

// mountsUnder returns the mount points at or below dir.
func mountsUnder(dir string) []string {
	if dir == "" {
		return nil
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var res []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			res = append(res, fields[4])
		}
	}
	return res
}

// addServed fills in what the registry's log says it sent for each pull.
func addServed(reg *registry, results []*pullResult) error {
	byAgent, err := reg.servedByAgent()
	if err != nil {
		return fmt.Errorf("reading the registry's log: %w", err)
	}
	for _, r := range results {
		s := byAgent[r.agent]
		if s == nil {
			return fmt.Errorf("the registry's log has no request of pull %s", r.agent)
		}
		r.Requests, r.Bytes, r.LayerBytes = s.requests, s.bytes, s.layerBytesOf(r.img)
	}
	return nil
}

// summary is the median, minimum and maximum of a set of measurements.
type summary struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// summarize returns the summary of xs, which must not be empty. The median of an even count
// is the mean of the middle two.
func summarize(xs []float64) summary {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return summary{Median: med, Min: s[0], Max: s[n-1], N: n}
}

// measured returns the results of scenario and variant outside the warm-up round.
func measured(results []*pullResult, scenario, variant string) []*pullResult {
	var res []*pullResult
	for _, r := range results {
		if r.Scenario == scenario && r.Variant == variant && r.Round > 0 {
			res = append(res, r)
		}
	}
	return res
}

// wallSummary summarizes the wall times of scenario and variant.
func wallSummary(results []*pullResult, scenario, variant string) summary {
	var xs []float64
	for _, r := range measured(results, scenario, variant) {
		xs = append(xs, r.WallMS)
	}
	if len(xs) == 0 {
		return summary{}
	}
	return summarize(xs)
}

// bytesSummary summarizes the layer bytes served to scenario and variant.
func bytesSummary(results []*pullResult, scenario, variant string) summary {
	var xs []float64
	for _, r := range measured(results, scenario, variant) {
		xs = append(xs, float64(r.LayerBytes))
	}
	if len(xs) == 0 {
		return summary{}
	}
	return summarize(xs)
}

// pairedRatio returns the median, over the turns both builds had, of num's wall time divided by
// den's in the same turn (round and repetition), which cancels slow drifts of the machine that a
// ratio of medians does not.
func pairedRatio(results []*pullResult, scenario, num, den string) float64 {
	type turn struct{ round, rep int }
	dens := map[turn]float64{}
	for _, r := range measured(results, scenario, den) {
		dens[turn{r.Round, r.Rep}] = r.WallMS
	}
	var xs []float64
	for _, r := range measured(results, scenario, num) {
		if d, ok := dens[turn{r.Round, r.Rep}]; ok && d > 0 {
			xs = append(xs, r.WallMS/d)
		}
	}
	if len(xs) == 0 {
		return 0
	}
	return summarize(xs).Median
}

// stepMedian returns the median of step over rs, which must not be empty.
func stepMedian(rs []*pullResult, step func(*pullResult) float64) float64 {
	xs := make([]float64, 0, len(rs))
	for _, r := range rs {
		xs = append(xs, step(r))
	}
	return summarize(xs).Median
}

// lookupMissNS measures what one failed lookup of an entry in the empty store root costs: the
// faccessat2 of <root>/<digest>/diff, with the flags c/storage uses, which fails with ENOENT.
// It returns the median over batches of nanoseconds per call.
func lookupMissNS(root string, d digest.Digest) float64 {
	path := filepath.Join(root, d.String(), "diff")
	const batches, calls = 9, 20000
	var perCall []float64
	for range batches {
		start := time.Now()
		for range calls {
			_ = unix.Faccessat(unix.AT_FDCWD, path, unix.F_OK, unix.AT_EACCESS)
		}
		perCall = append(perCall, float64(time.Since(start).Nanoseconds())/calls)
	}
	return summarize(perCall).Median
}
