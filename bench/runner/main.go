// Command runner is the benchmark behind `make bench`: it makes the images, serves them from
// Debian's docker-registry on 127.0.0.1, fills Additional Layer Stores, runs the three builds of
// bench/pull alternately, and writes bench/results.json, bench/runs.json, docs/benchmarks.md
// and docs/benchmarks.svg from what it measured.
//
// bench/run builds it and the pull programs, and is the way to run it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// config is what the command line sets.
type config struct {
	bins         [3]string // bench/pull built against the patched, pristine and v5.30.1 trees
	upstream     string    // the upstream version the fork is laid onto, e.g. v5.42.1
	oldVersion   string    // the old release compared against, e.g. v5.30.1
	cache, work  string
	rounds       int
	repeats      int // pulls from the store per scenario and build in each round
	warmup       int
	layers       int
	imageSource  string // "auto", "debootstrap" or "generated"
	growth       []int
	smoke        bool
	results      string
	runs         string
	doc          string
	chart        string
	notes        string
	buildTags    string
	profileCount int
}

func main() {
	var c config
	flag.StringVar(&c.bins[0], "patched", "", "bench/pull built against the patched tree")
	flag.StringVar(&c.bins[1], "pristine", "", "bench/pull built against pristine upstream")
	flag.StringVar(&c.bins[2], "old", "", "bench/pull built against the old release")
	flag.StringVar(&c.upstream, "upstream-version", "v5.42.1", "the upstream version")
	flag.StringVar(&c.oldVersion, "old-version", "v5.30.1", "the old release's version")
	flag.StringVar(&c.cache, "cache", "", "directory for images kept between runs")
	flag.StringVar(&c.work, "work", "", "directory for this run's registry, stores and pulls")
	flag.IntVar(&c.rounds, "rounds", 5, "measured rounds")
	flag.IntVar(&c.warmup, "warmup", 1, "warm-up rounds, not counted (0 or 1)")
	flag.IntVar(&c.repeats, "repeats", 3, "pulls from the store per scenario and build in a round")
	flag.IntVar(&c.layers, "layers", 12, "layers of the realistic image")
	flag.StringVar(&c.imageSource, "image", "auto", "auto, debootstrap or generated")
	growth := flag.String("growth", "1,10,50,100", "layer counts of the growth scenario")
	flag.BoolVar(&c.smoke, "smoke", false, "a tiny generated image: checks the bench completes")
	flag.StringVar(&c.results, "results", "", "where to write results.json")
	flag.StringVar(&c.runs, "runs", "", "where to write every pull's measurements (JSON)")
	flag.StringVar(&c.doc, "doc", "", "where to write the Markdown report")
	flag.StringVar(&c.chart, "chart", "", "where to write the SVG chart")
	flag.StringVar(&c.notes, "notes", "", "Markdown included in the report as the analysis")
	flag.StringVar(&c.buildTags, "tags", "", "the build tags the pull programs were built with")
	flag.IntVar(&c.profileCount, "profile", 0,
		"after the rounds, pull the hit scenario this many times more per build with a CPU "+
			"profile, and report where the time went")
	regenerate := flag.Bool("regenerate", false, "measure nothing: rewrite -results, -doc and "+
		"-chart from the measurements in -runs, with the current -notes")
	flag.Parse()
	if *regenerate {
		if c.runs == "" || c.results == "" || c.doc == "" || c.chart == "" {
			flag.Usage()
			os.Exit(2)
		}
		if err := regenerateReport(&c); err != nil {
			fatal(err)
		}
		return
	}
	for f := range strings.SplitSeq(*growth, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fatal(fmt.Errorf("bad -growth value %q", *growth))
		}
		c.growth = append(c.growth, n)
	}
	if c.bins[0] == "" || c.bins[1] == "" || c.bins[2] == "" || c.cache == "" || c.work == "" ||
		c.results == "" || c.doc == "" || c.chart == "" || c.runs == "" || c.warmup > 1 ||
		c.rounds < 1 || c.repeats < 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(&c); err != nil {
		fatal(err)
	}
}

// fatal reports err and exits with status 1.
func fatal(err error) {
	fmt.Fprintf(os.Stderr, "bench: %v\n", err)
	os.Exit(1)
}

// bench is the state of one run.
type bench struct {
	c            *config
	variants     []*variant // patched, pristine, old: A, B, C
	main         *builtImage
	growth       []*builtImage
	reg          *registry
	p            *puller
	alsFull      string
	alsEmpty     string
	results      []*pullResult
	fsCalls      []*fsCalls
	profiles     []profileReport
	lookupMissNS float64    // see runsFile.LookupMissNS
	mu           sync.Mutex // held while starting or stopping the registry
	started      time.Time
	machine      *machine // where the measurements were made; nil: this machine
	fallback     string   // why the realistic image could not be made, if it could not
}

// run performs one run of the bench as c says.
func run(c *config) (retErr error) {
	b := &bench{c: c, started: time.Now()}
	b.variants = []*variant{
		{ID: "patched", Label: "image-als " + c.upstream, bin: c.bins[0]},
		{ID: "pristine", Label: "pristine " + c.upstream, bin: c.bins[1]},
		{ID: "old", Label: "pristine " + c.oldVersion, bin: c.bins[2]},
	}
	defer func() {
		if err := b.cleanup(); err != nil && retErr == nil {
			retErr = err
		}
	}()
	// An interrupted run still stops its registry and removes its directory on the tmpfs.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-signals
		fmt.Fprintf(os.Stderr, "bench: %v: stopping\n", sig)
		b.interrupt()
		os.Exit(1)
	}()
	if err := b.prepare(); err != nil {
		return err
	}
	if err := b.measure(); err != nil {
		return err
	}
	if err := addServed(b.reg, b.results); err != nil {
		return err
	}
	return b.report()
}

// cleanup stops the registry and removes the directory on the tmpfs, unless a pull left a
// mount in it. The work directory is bench/run's to remove.
func (b *bench) cleanup() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.p != nil && b.p.tmpfs != "" && len(mountsUnder(b.p.tmpfs)) == 0 {
		_ = os.RemoveAll(b.p.tmpfs)
	}
	if b.reg == nil {
		return nil
	}
	reg := b.reg
	b.reg = nil
	if err := reg.stop(); err != nil {
		return fmt.Errorf("stopping docker-registry: %w", err)
	}
	return nil
}

// prepare makes or loads the images, starts the registry, pushes the images and fills the
// Additional Layer Store.
func (b *bench) prepare() error {
	c := b.c
	for _, d := range []string{c.cache, c.work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	log := io.Writer(os.Stdout)
	var err error
	switch {
	case c.smoke:
		b.main, err = ensureImage(c.cache, generatedRecipe("bench/small",
			generated{groups: 10, files: 8, fileSize: 16 << 10}, " (the smoke run's tiny image)"),
			log)
	case c.imageSource == "generated":
		b.main, err = ensureImage(c.cache, bigGeneratedRecipe(" (-image generated)"), log)
	default:
		b.main, err = ensureImage(c.cache, debootstrapRecipe(c.layers), log)
		if err != nil && c.imageSource == "auto" {
			b.fallback = err.Error()
			fmt.Fprintf(log, "cannot make the Debian image, using generated content: %v\n", err)
			b.main, err = ensureImage(c.cache,
				bigGeneratedRecipe(" (debootstrap failed: see the fallback note)"), log)
		}
	}
	if err != nil {
		return err
	}
	for _, n := range c.growth {
		img, err := ensureImage(c.cache, generatedRecipe(fmt.Sprintf("bench/growth-%d", n),
			generated{groups: n, files: 4, fileSize: 4 << 10}, ""), log)
		if err != nil {
			return err
		}
		b.growth = append(b.growth, img)
	}

	if err := b.startServices(); err != nil {
		return err
	}
	b.alsFull = filepath.Join(c.work, "als-full")
	b.alsEmpty = filepath.Join(c.work, "als-empty")
	for _, d := range []string{b.alsFull, b.alsEmpty} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	for _, img := range append([]*builtImage{b.main}, b.growth...) {
		fmt.Fprintf(log, "pushing %s and filling the Additional Layer Store\n", b.reg.ref(img))
		if err := b.reg.push(img); err != nil {
			return err
		}
		if err := fillALS(b.alsFull, img); err != nil {
			return err
		}
	}
	return nil
}

// interrupt ends the run early: it stops the registry, which makes a pull in progress fail
// (and shut its store down), waits for that pull to end, and then cleans up.
func (b *bench) interrupt() {
	b.mu.Lock()
	reg, p := b.reg, b.p
	b.mu.Unlock()
	if reg != nil {
		_ = reg.cmd.Process.Signal(syscall.SIGTERM)
	}
	if p != nil {
		p.waitIdle(2 * time.Minute)
	}
	_ = b.cleanup()
}

// startServices starts the registry and makes the directory on the tmpfs, holding b.mu so that
// cleanup sees either none or all of what it has to undo.
func (b *bench) startServices() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	reg, err := startRegistry(filepath.Join(b.c.work, "registry"))
	if err != nil {
		return err
	}
	b.reg = reg
	b.p = &puller{work: b.c.work, reg: reg}
	if filesystemType("/dev/shm") == "tmpfs" {
		if b.p.tmpfs, err = os.MkdirTemp("/dev/shm", "image-als-bench-"); err != nil {
			return err
		}
	}
	return nil
}

// bigGeneratedRecipe is the stand-in for the realistic image: about 560 MB of generated files
// in 12 layers, which gzip to more than 200 MB.
func bigGeneratedRecipe(why string) recipe {
	return generatedRecipe("bench/generated", generated{
		groups: 12, files: 200,
		fileSize: 240 << 10,
	}, why)
}

// measure runs the rounds, then the traced pulls and the profiles.
//
// Each round runs every step once, the builds taking turns: the image with the full store
// (image-als, pristine, old), with the empty store (image-als and pristine, in turn first),
// then the growth images. Pulls from the store take a fraction of a second where full pulls take
// many, so each round repeats them b.c.repeats times, still alternating the builds, to give
// their medians as many samples as the machine's noise needs at little cost.
func (b *bench) measure() error {
	a, pr, old := b.variants[0], b.variants[1], b.variants[2]
	hitA := pullStep{scenario: "hit", v: a, img: b.main, als: b.alsFull, fromALS: true}
	hitC := pullStep{scenario: "hit", v: old, img: b.main, als: b.alsFull, fromALS: true}
	steps := []pullStep{hitA, {scenario: "hit", v: pr, img: b.main, als: b.alsFull}, hitC}
	for range b.c.repeats - 1 {
		steps = append(steps, hitA, hitC)
	}
	missAt := len(steps)
	steps = append(steps,
		pullStep{scenario: "miss", v: a, img: b.main, als: b.alsEmpty},
		pullStep{scenario: "miss", v: pr, img: b.main, als: b.alsEmpty})
	var growth []pullStep
	for _, img := range b.growth {
		s := growthScenario(len(img.Layers))
		for _, v := range []*variant{a, old} {
			growth = append(growth,
				pullStep{scenario: s, v: v, img: img, als: b.alsFull, fromALS: true})
		}
		for _, v := range []*variant{a, old} {
			if b.p.tmpfs != "" {
				growth = append(growth, pullStep{
					scenario: s + tmpfsSuffix, v: v, img: img,
					als: b.alsFull, fromALS: true, tmpfs: true,
				})
			}
		}
	}
	for range b.c.repeats {
		steps = append(steps, growth...)
	}

	for round := 1 - b.c.warmup; round <= b.c.rounds; round++ {
		// The two full pulls with the empty store swap places every round, so that neither
		// build always runs right after the other's full pull.
		steps[missAt], steps[missAt+1] = steps[missAt+1], steps[missAt]
		reps := map[string]int{}
		for _, step := range steps {
			key := step.scenario + " " + step.v.ID
			reps[key]++
			r, err := b.p.run(step, round)
			if err != nil {
				return err
			}
			r.Rep = reps[key]
			b.results = append(b.results, r)
			what := fmt.Sprintf("round %d/%d", round, b.c.rounds)
			if round == 0 {
				what = "warm-up"
			}
			fmt.Printf("%-11s %-16s %-9s %10.1f ms  %d/%d layers from the store\n", what,
				step.scenario, step.v.ID, r.WallMS, r.FromALS, r.Layers)
		}
	}
	b.lookupMissNS = lookupMissNS(b.alsEmpty, b.main.Layers[0].Digest)
	if err := b.traceCalls(); err != nil {
		return err
	}
	profiled := []pullStep{hitA, hitC}
	for _, s := range growth {
		if s.scenario == growthScenario(100) && s.v == a && !s.tmpfs {
			profiled = append(profiled, s)
		}
	}
	return b.profile(profiled)
}

// growthScenario names the growth scenario with n layers.
func growthScenario(n int) string { return fmt.Sprintf("growth-%d", n) }

// tmpfsSuffix marks the growth scenarios whose stores are on a tmpfs.
const tmpfsSuffix = "-tmpfs"

// traceCalls counts, with strace, the file system calls each build makes on the stores per
// layer: with two empty stores configured (one plain, one keyed by reference), and with one
// store that holds every layer.
func (b *bench) traceCalls() error {
	img := b.main
	for _, g := range b.growth {
		if len(g.Layers) == 10 {
			img = g
		}
	}
	missA := filepath.Join(b.c.work, "als-miss-a")
	missB := filepath.Join(b.c.work, "als-miss-b")
	for _, d := range []string{missA, missB} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	for _, v := range b.variants {
		for _, tc := range []struct {
			kind  string
			specs []string
		}{
			{"miss", []string{missA, missB + ":ref"}},
			{"hit", []string{b.alsFull}},
		} {
			calls, err := traceStoreCalls(b.p, v, img, tc.specs, tc.kind)
			if errors.Is(err, errNoStrace) {
				fmt.Println("strace is not installed: scenario 5 is left out")
				return nil
			}
			if err != nil {
				return err
			}
			b.fsCalls = append(b.fsCalls, calls)
			for _, s := range calls.Stores {
				fmt.Printf("strace %-4s %-9s %s: %.2f calls per layer, %d on its root\n",
					tc.kind, v.ID, s.Spec, s.PerLayer, s.Root)
			}
		}
	}
	return nil
}
