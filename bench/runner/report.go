package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Targets the issue sets; the report says which are met.
const (
	targetHitVsFull  = 0.05
	targetMiss       = 1.02
	targetHitVsOld   = 1.05
	targetFlatGrowth = 1.10 // per-layer cost at 50 and 100 layers over that at 10 layers
)

// results is results.json: the headline figures, exactly these keys.
type results struct {
	HitVsFullRatio         float64            `json:"hit_vs_full_ratio"`
	MissOverheadRatio      float64            `json:"miss_overhead_ratio"`
	HitVsV530Ratio         float64            `json:"hit_vs_v5_30_ratio"`
	LayerBytesServedOnHit  int64              `json:"layer_bytes_served_on_hit"`
	PerLayerMSByLayerCount map[string]float64 `json:"per_layer_ms"`
}

// growthRow is one layer count of the growth scenario.
type growthRow struct {
	Layers      int     `json:"layers"`
	MedianMS    float64 `json:"median_ms"`
	PerLayerMS  float64 `json:"per_layer_ms"`
	MarginalMS  float64 `json:"marginal_ms"` // per layer added since the previous row; 0 first
	OldMedianMS float64 `json:"old_median_ms"`
	OldPerLayer float64 `json:"old_per_layer_ms"`
	OldMarginal float64 `json:"old_marginal_ms"`
	// The same pulls with the store on a tmpfs; zero if there is no tmpfs.
	TmpfsMedianMS    float64 `json:"tmpfs_median_ms"`
	TmpfsPerLayer    float64 `json:"tmpfs_per_layer_ms"`
	OldTmpfsMedianMS float64 `json:"old_tmpfs_median_ms"`
	OldTmpfsPerLayer float64 `json:"old_tmpfs_per_layer_ms"`
}

// scenarioRow is one line of the scenario table.
type scenarioRow struct {
	Scenario   string  `json:"scenario"`
	Variant    string  `json:"variant"`
	Wall       summary `json:"wall_ms"`
	LayerBytes summary `json:"layer_bytes_served"`
	FromALS    int     `json:"layers_from_store"`
	Layers     int     `json:"layers"`
	// Medians of the steps the wall time is made of.
	SetupMS    float64 `json:"setup_ms"`
	CopyMS     float64 `json:"copy_ms"`
	ShutdownMS float64 `json:"shutdown_ms"`
}

// runsFile is runs.json: everything the report is computed from.
type runsFile struct {
	Date         string          `json:"date"`
	Smoke        bool            `json:"smoke"`
	Machine      machine         `json:"machine"`
	BuildTags    string          `json:"build_tags"`
	Rounds       int             `json:"rounds"`
	Repeats      int             `json:"repeats"`
	Warmup       int             `json:"warmup_rounds"`
	Image        *builtImage     `json:"image"`
	Fallback     string          `json:"fallback,omitempty"`
	Variants     []*variant      `json:"variants"`
	Results      results         `json:"results"`
	PairedRatios map[string]any  `json:"paired_ratios"`
	Scenarios    []scenarioRow   `json:"scenarios"`
	Growth       []growthRow     `json:"growth"`
	FSCalls      []*fsCalls      `json:"fs_calls"`
	Profiles     []profileReport `json:"profiles,omitempty"`
	// LookupMissNS is what one failed lookup of an entry costs here, measured directly: the
	// faccessat2 of <store>/<digest>/diff that c/storage makes, in nanoseconds.
	LookupMissNS float64       `json:"lookup_miss_ns"`
	Pulls        []*pullResult `json:"pulls"`
}

// report computes the figures and writes every output file.
func (b *bench) report() error {
	rs := b.results
	hit := func(v string) float64 { return wallSummary(rs, "hit", v).Median }
	miss := func(v string) float64 { return wallSummary(rs, "miss", v).Median }
	res := results{
		HitVsFullRatio:         round4(hit("patched") / hit("pristine")),
		MissOverheadRatio:      round4(miss("patched") / miss("pristine")),
		HitVsV530Ratio:         round4(hit("patched") / hit("old")),
		PerLayerMSByLayerCount: map[string]float64{},
	}
	for _, r := range rs {
		if r.Scenario == "hit" && r.Variant == "patched" && r.Round > 0 {
			res.LayerBytesServedOnHit = max(res.LayerBytesServedOnHit, r.LayerBytes)
		}
	}
	growth := b.growthRows()
	for _, g := range growth {
		res.PerLayerMSByLayerCount[strconv.Itoa(g.Layers)] = round4(g.PerLayerMS)
	}
	runs := runsFile{
		Date: b.started.UTC().Format(time.RFC3339), Smoke: b.c.smoke,
		Machine: b.describeMachine(), BuildTags: b.c.buildTags,
		Rounds: b.c.rounds, Repeats: b.c.repeats, Warmup: b.c.warmup, Image: b.main,
		Fallback: b.fallback,
		Variants: b.variants, Results: res, Growth: growth, FSCalls: b.fsCalls,
		Profiles: b.profiles, Pulls: rs, LookupMissNS: b.lookupMissNS,
		PairedRatios: map[string]any{
			"hit_vs_full_ratio":   round4(pairedRatio(rs, "hit", "patched", "pristine")),
			"miss_overhead_ratio": round4(pairedRatio(rs, "miss", "patched", "pristine")),
			"hit_vs_v5_30_ratio":  round4(pairedRatio(rs, "hit", "patched", "old")),
		},
	}
	for _, s := range []struct{ scenario, variant string }{
		{"hit", "patched"},
		{"hit", "pristine"},
		{"hit", "old"},
		{"miss", "patched"},
		{"miss", "pristine"},
	} {
		m := measured(rs, s.scenario, s.variant)
		runs.Scenarios = append(runs.Scenarios, scenarioRow{
			Scenario: s.scenario, Variant: s.variant,
			Wall:       wallSummary(rs, s.scenario, s.variant),
			LayerBytes: bytesSummary(rs, s.scenario, s.variant),
			FromALS:    m[0].FromALS, Layers: m[0].Layers,
			SetupMS:    stepMedian(m, func(r *pullResult) float64 { return r.SetupMS }),
			CopyMS:     stepMedian(m, func(r *pullResult) float64 { return r.CopyMS }),
			ShutdownMS: stepMedian(m, func(r *pullResult) float64 { return r.ShutdownMS }),
		})
	}
	if err := writeJSON(b.c.results, res); err != nil {
		return err
	}
	if b.machine == nil { // Regenerating leaves the measurements as they were.
		if err := writeJSON(b.c.runs, runs); err != nil {
			return err
		}
	}
	svg := chart(&runs, b.variantLabels())
	if err := os.WriteFile(b.c.chart, []byte(svg), 0o644); err != nil {
		return err
	}
	doc, err := b.markdown(&runs)
	if err != nil {
		return err
	}
	if err := os.WriteFile(b.c.doc, []byte(doc), 0o644); err != nil {
		return err
	}
	written := []string{b.c.results, b.c.doc, b.c.chart}
	if b.machine == nil {
		written = append(written, b.c.runs)
	}
	fmt.Printf("\nhit/full %.4f, miss overhead %.4f, hit vs %s %.4f, layer bytes on hit %d, "+
		"per-layer ms %v\nwrote %s\n", res.HitVsFullRatio, res.MissOverheadRatio,
		b.c.oldVersion, res.HitVsV530Ratio, res.LayerBytesServedOnHit,
		res.PerLayerMSByLayerCount, strings.Join(written, ", "))
	return nil
}

// growthRows computes the growth table from the growth scenarios.
func (b *bench) growthRows() []growthRow {
	var rows []growthRow
	for i, img := range b.growth {
		n := len(img.Layers)
		s := growthScenario(n)
		row := growthRow{
			Layers:      n,
			MedianMS:    wallSummary(b.results, s, "patched").Median,
			OldMedianMS: wallSummary(b.results, s, "old").Median,
		}
		row.PerLayerMS = row.MedianMS / float64(n)
		row.OldPerLayer = row.OldMedianMS / float64(n)
		row.TmpfsMedianMS = wallSummary(b.results, s+tmpfsSuffix, "patched").Median
		row.OldTmpfsMedianMS = wallSummary(b.results, s+tmpfsSuffix, "old").Median
		row.TmpfsPerLayer = row.TmpfsMedianMS / float64(n)
		row.OldTmpfsPerLayer = row.OldTmpfsMedianMS / float64(n)
		if i > 0 {
			prev := rows[i-1]
			added := float64(n - prev.Layers)
			row.MarginalMS = (row.MedianMS - prev.MedianMS) / added
			row.OldMarginal = (row.OldMedianMS - prev.OldMedianMS) / added
		}
		rows = append(rows, row)
	}
	return rows
}

// variantLabels maps variant IDs to their labels.
func (b *bench) variantLabels() map[string]string {
	res := map[string]string{}
	for _, v := range b.variants {
		res[v.ID] = v.Label
	}
	return res
}

// round4 rounds x to four decimals, and NaN or an infinity (a ratio of nothing) to 0.
func round4(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	return math.Round(x*1e4) / 1e4
}

// writeJSON writes v to path as indented JSON.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// verdict returns "met" or "missed".
func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// flatGrowth reports whether the per-layer time perLayer gives for every count above 10
// layers is at most targetFlatGrowth times the time at 10 layers, and returns the largest such
// quotient, or 0 if there is nothing to compare.
func flatGrowth(rows []growthRow, perLayer func(growthRow) float64) (bool, float64) {
	var base, worst float64
	for _, r := range rows {
		if r.Layers == 10 {
			base = perLayer(r)
		}
	}
	if base == 0 {
		return false, 0
	}
	for _, r := range rows {
		if r.Layers > 10 && perLayer(r) > 0 {
			worst = max(worst, perLayer(r)/base)
		}
	}
	return worst <= targetFlatGrowth, worst
}

// markdown returns docs/benchmarks.md.
func (b *bench) markdown(runs *runsFile) (string, error) {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	res := runs.Results
	labels := b.variantLabels()
	img := runs.Image
	old := b.c.oldVersion

	p("# Benchmarks: what the restored lookup saves, and what it costs\n\n")
	p("<!-- Generated by `make bench` (bench/runner); edit bench/notes.md or the runner, " +
		"not this file. -->\n\n")
	p("Measured on %s. Every figure below comes from that one run: %s after %s, the builds "+
		"taking turns in each round, pulls from the store repeated %s per round.\n\n",
		b.started.UTC().Format("2006-01-02 15:04 MST"), count(runs.Rounds, "measured round"),
		count(runs.Warmup, "warm-up round"), count(runs.Repeats, "time"))
	if runs.Smoke {
		p("**This is a smoke run** (tiny image, one round): its figures mean nothing.\n\n")
	}

	p("## The figures\n\n")
	p("| figure | measured | target | |\n|---|---|---|---|\n")
	p("| time of a pull with every layer in the store, over a full pull (image-als over "+
		"%s) | %.4f | ≤ %.2f | %s |\n", labels["pristine"], res.HitVsFullRatio, targetHitVsFull,
		verdict(res.HitVsFullRatio <= targetHitVsFull))
	p("| layer bytes the registry served to those pulls (the most of any round) | %d | 0 | "+
		"%s |\n", res.LayerBytesServedOnHit, verdict(res.LayerBytesServedOnHit == 0))
	p("| time of a pull with an empty store configured, image-als over %s | %.4f | ≤ %.2f "+
		"| %s |\n", labels["pristine"], res.MissOverheadRatio, targetMiss,
		verdict(res.MissOverheadRatio <= targetMiss))
	p("| time of a pull with every layer in the store, image-als over %s | %.4f | ≤ %.2f "+
		"| %s |\n", old, res.HitVsV530Ratio, targetHitVsOld,
		verdict(res.HitVsV530Ratio <= targetHitVsOld))
	flat, worst := flatGrowth(runs.Growth, perLayer)
	flatVerdict := verdict(flat)
	if worst == 0 {
		flatVerdict = "not measured"
	}
	p("| per-layer time of a pull from the store, at 50 and 100 layers over 10 layers "+
		"(the larger) | %.3f | ≤ %.2f (flat) | %s |\n\n", worst, targetFlatGrowth, flatVerdict)
	p("Ratios are of medians. The same ratios taken round by round (each pull over the other "+
		"build's pull of the same round), then the median: hit/full %.4f, miss overhead %.4f, "+
		"hit vs %s %.4f.\n\n", runs.PairedRatios["hit_vs_full_ratio"],
		runs.PairedRatios["miss_overhead_ratio"], old, runs.PairedRatios["hit_vs_v5_30_ratio"])
	p("![Median pull times and per-layer cost](benchmarks.svg)\n\n")

	m := runs.Machine
	p("## Machine\n\n")
	p("| | |\n|---|---|\n| CPU | %s, %d cores |\n| memory | %s |\n| kernel | %s |\n"+
		"| system | %s |\n| stores and ALS on | %s |\n| Go | %s |\n| registry | %s |\n"+
		"| build tags | `%s` |\n\n", m.CPU, m.Cores, m.Memory, m.Kernel, m.OS, m.Filesystem, m.Go,
		m.Registry, runs.BuildTags)

	p("## The image\n\n")
	p("%s. %d layers, %s compressed (gzip), %s uncompressed, %d tar entries.\n\n",
		upperFirst(img.Description), len(img.Layers), humanBytes(img.compressedSize()),
		humanBytes(img.uncompressedSize()), img.Files)
	if runs.Fallback != "" {
		p("The Debian image could not be made, so generated content stands in for it: %s\n\n",
			"`"+strings.ReplaceAll(runs.Fallback, "\n", " ")+"`")
	}
	p("| layer | layer digest | compressed | uncompressed |\n|---|---|---|---|\n")
	for i, l := range img.Layers {
		p("| %d | `%s` | %s | %s |\n", i, l.Digest.Encoded()[:12], humanBytes(l.Size),
			humanBytes(l.DiffSize))
	}
	p("\n")

	p("## Scenarios 1 to 3: the image, every layer in the store or none\n\n")
	p("Wall time of the pull in milliseconds (median, min, max over the measured rounds) and the " +
		"layer bytes docker-registry's log says it sent (median).\n\n")
	p("| store | build | median | min | max | layer bytes served | layers from the store |\n" +
		"|---|---|---|---|---|---|---|\n")
	for _, s := range runs.Scenarios {
		store := "every layer"
		switch {
		case s.Scenario == "miss":
			store = "configured, empty"
		case s.FromALS == 0:
			store = "every layer (not asked: a full pull)"
		}
		p("| %s | %s | %.1f | %.1f | %.1f | %.0f | %d of %d |\n", store, labels[s.Variant],
			s.Wall.Median, s.Wall.Min, s.Wall.Max, s.LayerBytes.Median, s.FromALS, s.Layers)
	}
	p("\n")
	p("The same pulls step by step (medians, ms): creating the store, `copy.Image`, " +
		"`store.Shutdown`.\n\n| store | build | creating the store | copy.Image | Shutdown |\n" +
		"|---|---|---|---|---|\n")
	for _, s := range runs.Scenarios {
		store := "every layer"
		if s.Scenario == "miss" {
			store = "configured, empty"
		}
		p("| %s | %s | %.1f | %.1f | %.1f |\n", store, labels[s.Variant], s.SetupMS, s.CopyMS,
			s.ShutdownMS)
	}
	p("\n")

	p("## Scenario 4: growth with the layer count, every layer in the store\n\n")
	p("Generated images of 1 to 100 small layers (four files of about 4 KiB each). Per layer "+
		"is the median over the layer count; marginal is the median's growth per layer added "+
		"since the row above. The stores are on %s like every other store of the bench; the "+
		"last two columns repeat the pulls with the store on a tmpfs, which takes the disk "+
		"out of the measurement.\n\n", runs.Machine.Filesystem)
	p("| layers | %s median | per layer | marginal | %s median | per layer | marginal "+
		"| on tmpfs: %s per layer | on tmpfs: %s per layer |\n"+
		"|---|---|---|---|---|---|---|---|---|\n", labels["patched"], old, labels["patched"], old)
	for _, g := range runs.Growth {
		p("| %d | %.1f ms | %.2f ms | %s | %.1f ms | %.2f ms | %s | %s | %s |\n", g.Layers,
			g.MedianMS, g.PerLayerMS, marginal(g, g.MarginalMS), g.OldMedianMS, g.OldPerLayer,
			marginal(g, g.OldMarginal), optionalMS(g.TmpfsPerLayer),
			optionalMS(g.OldTmpfsPerLayer))
	}
	p("\n")
	for _, s := range []struct {
		what string
		val  func(growthRow) float64
	}{
		{labels["patched"] + " on " + runs.Machine.Filesystem, perLayer},
		{old + " on " + runs.Machine.Filesystem, oldPerLayer},
		{labels["patched"] + " on tmpfs", func(g growthRow) float64 { return g.TmpfsPerLayer }},
		{old + " on tmpfs", func(g growthRow) float64 { return g.OldTmpfsPerLayer }},
	} {
		if flat, worst := flatGrowth(runs.Growth, s.val); worst > 0 {
			p("- %s: per-layer time at 50 and 100 layers at most %.2f× that at 10 layers (%s)\n",
				s.what, worst, map[bool]string{true: "flat", false: "not flat"}[flat])
		}
	}
	p("\n")

	p("## Scenario 5: file system calls on the stores\n\n")
	if len(runs.FSCalls) == 0 {
		p("Not measured: strace is not installed.\n\n")
	} else {
		p("strace -f of one pull of the %d-layer growth image per row, counting the system "+
			"calls that take a path (strace's `%%file` class) and name one inside a store. "+
			"Misses: two empty stores configured, the second keyed by reference (`:ref`). "+
			"Hits: one store holding every layer. Calls on a store's root itself are made "+
			"once per pull, when the overlay driver starts.\n\n", runs.FSCalls[0].Layers)
		p("| case | build | store | calls per layer | calls by kind | on the root |\n" +
			"|---|---|---|---|---|---|\n")
		for _, f := range runs.FSCalls {
			for i, s := range f.Stores {
				p("| %s | %s | %s | %.2f | %s | %d |\n", f.Case, labels[f.Variant],
					storeName(i, s.Spec), s.PerLayer, syscallList(s.BySyscall), s.Root)
			}
		}
		p("\n")
	}

	p("## Targets missed in this run\n\n")
	if found := b.findings(runs); len(found) == 0 {
		p("None: every target was met.\n\n")
	} else {
		p("Each explained from this run's own measurements:\n\n")
		for _, f := range found {
			p("- %s\n", f)
		}
		p("\n")
	}

	p("## How it was measured\n\n")
	for _, line := range methodNotes(b) {
		p("- %s\n", line)
	}
	p("\n")

	if b.c.notes != "" {
		notes, err := os.ReadFile(b.c.notes)
		if err != nil {
			return "", err
		}
		p("%s", notes)
		if !strings.HasSuffix(string(notes), "\n") {
			p("\n")
		}
		p("\n")
	}
	if len(runs.Profiles) > 0 {
		p("## CPU profiles of pulls from the store\n\n")
		for _, pr := range runs.Profiles {
			what := "the image"
			if pr.Scenario != "hit" {
				what = strings.TrimPrefix(pr.Scenario, "growth-") + " layers of the growth scenario"
			}
			p("%s pulling %s, %d pulls together (median %.1f ms), `go tool pprof -top -cum`:"+
				"\n\n```\n", labels[pr.Variant], what, pr.Pulls, pr.WallMS)
			for _, line := range pr.Top {
				p("%s\n", line)
			}
			p("```\n\n")
		}
	}
	p("## Running it\n\n")
	p("`make bench` (as root, on Debian with Go; it installs docker-registry, strace and " +
		"debootstrap with apt-get when they are missing) writes bench/results.json, " +
		"bench/runs.json (every pull), this page and its chart. `make bench-smoke` runs one " +
		"round on a tiny image and only checks that the bench completes. Set " +
		"`BENCH_ROUNDS` to measure more rounds (5), `BENCH_REPEATS` for more pulls from the " +
		"store in each (3), `BENCH_IMAGE=generated` to skip debootstrap, " +
		"`BENCH_CACHE` to keep the images elsewhere than /var/cache/image-als-bench, and " +
		"`BENCH_PROFILE` to change how many CPU-profiled pulls each profile above is made of (5; " +
		"0 leaves the profiles out).\n")
	return w.String(), nil
}

// marginal formats a growth row's marginal cost, which the first row does not have.
func marginal(g growthRow, v float64) string {
	if g.MarginalMS == 0 && g.OldMarginal == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f ms", v)
}

// storeName describes the i-th configured store for the table.
func storeName(i int, spec string) string {
	if strings.HasSuffix(spec, ":ref") {
		return fmt.Sprintf("%d (`:ref`)", i+1)
	}
	return strconv.Itoa(i + 1)
}

// syscallList formats counts by system call, most frequent first.
func syscallList(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	type kv struct {
		k string
		v int
	}
	var kvs []kv
	for k, v := range m {
		kvs = append(kvs, kv{k, v})
	}
	for i := range kvs {
		for j := i + 1; j < len(kvs); j++ {
			if kvs[j].v > kvs[i].v || (kvs[j].v == kvs[i].v && kvs[j].k < kvs[i].k) {
				kvs[i], kvs[j] = kvs[j], kvs[i]
			}
		}
	}
	parts := make([]string, 0, len(kvs))
	for _, e := range kvs {
		parts = append(parts, fmt.Sprintf("%s %d", e.k, e.v))
	}
	return strings.Join(parts, ", ")
}

// upperFirst returns s with its first letter in upper case.
func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// methodNotes says how the figures were obtained.
func methodNotes(b *bench) []string {
	return []string{
		"One source, bench/pull/main.go, is built three times: against this tree (image-als), " +
			"against pristine " + b.c.upstream + " (`.pristine`), and against " +
			"github.com/containers/image/v5 " + b.c.oldVersion + " with github.com/containers/" +
			"storage v1.53.0, its module paths rewritten; each is a separate module with " +
			"`replace` or `require`.",
		"Each pull is a new process pulling into a new, empty overlay store, with the " +
			"overlay driver's `additionallayerstore` option. The time reported is measured in " +
			"that process: creating the store, `copy.Image`, and `store.Shutdown(true)`. " +
			"Checking where each layer came from and deleting the store are not timed; the " +
			"bench fails if any pull took a layer from a different place than expected, or " +
			"left a mount behind.",
		"Every round runs the same pulls, alternating the builds: with the full " +
			"store image-als, pristine, " + b.c.oldVersion + "; with the empty store image-als " +
			"and pristine, the one first that went second in the round before; then the growth " +
			"images, image-als and " + b.c.oldVersion + ", on the disk " +
			"and on a tmpfs. Pulls from the store are repeated in each round (image-als and " +
			b.c.oldVersion + " still alternating), since they are short and cheap. Dirty pages " +
			"are written back (`sync`) before each pull; caches are not dropped, so after the " +
			"warm-up round the registry's blobs and the store's entries are in memory.",
		"The registry is Debian's docker-registry on 127.0.0.1, logging in JSON. Each pull " +
			"sends its own User-Agent, and the bytes served to it are the sum of " +
			"`http.response.written` over its GET requests for layer blobs in that log.",
		"The Additional Layer Store is a plain directory keyed by layer digest, each entry " +
			"holding `diff/` (the layer extracted with c/storage's archive package), `info` " +
			"(compressed-diff-digest, compressed-size, diff-digest, diff-size, compression) and " +
			"`blob`. It is not a FUSE store that counts uses: c/storage's `use` file is really " +
			"created and removed, and its `rmdir` of the entry on release fails because the " +
			"entry is not empty; scenario 5 counts these calls too.",
	}
}

// perLayer returns the per-layer time of image-als on the bench's own file system.
func perLayer(g growthRow) float64 { return g.PerLayerMS }

// oldPerLayer returns the per-layer time of the old release on the bench's own file system.
func oldPerLayer(g growthRow) float64 { return g.OldPerLayer }

// optionalMS formats milliseconds, or a dash for a figure that was not measured.
func optionalMS(v float64) string {
	if v == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f ms", v)
}

// count formats n things, with a plural s where needed.
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// describeMachine returns where the measurements were made.
func (b *bench) describeMachine() machine {
	if b.machine != nil {
		return *b.machine
	}
	return describeMachine(b.c.work)
}

// regenerateReport rewrites results.json, the Markdown report and the chart from the
// measurements a run wrote to c.runs, for example after bench/notes.md changed.
func regenerateReport(c *config) error {
	data, err := os.ReadFile(c.runs)
	if err != nil {
		return err
	}
	var runs runsFile
	if err := json.Unmarshal(data, &runs); err != nil {
		return fmt.Errorf("parsing %s: %w", c.runs, err)
	}
	started, err := time.Parse(time.RFC3339, runs.Date)
	if err != nil {
		return fmt.Errorf("parsing the date in %s: %w", c.runs, err)
	}
	c.rounds, c.repeats, c.warmup, c.smoke = runs.Rounds, runs.Repeats, runs.Warmup, runs.Smoke
	c.buildTags = runs.BuildTags
	for _, v := range runs.Variants {
		switch v.ID {
		case "patched":
			c.upstream = strings.TrimPrefix(v.Label, "image-als ")
		case "old":
			c.oldVersion = strings.TrimPrefix(v.Label, "pristine ")
		}
	}
	b := &bench{
		c: c, variants: runs.Variants, main: runs.Image, results: runs.Pulls,
		fsCalls: runs.FSCalls, profiles: runs.Profiles, lookupMissNS: runs.LookupMissNS,
		started: started, fallback: runs.Fallback, machine: &runs.Machine,
	}
	for _, g := range runs.Growth {
		b.growth = append(b.growth, &builtImage{Layers: make([]builtLayer, g.Layers)})
	}
	return b.report()
}
