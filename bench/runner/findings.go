package main

import (
	"fmt"
	"strings"
)

// scenario returns the row of runs.Scenarios for scenario and variant, or an empty row.
func (runs *runsFile) scenario(scenario, variant string) scenarioRow {
	for _, s := range runs.Scenarios {
		if s.Scenario == scenario && s.Variant == variant {
			return s
		}
	}
	return scenarioRow{}
}

// callsPerLayer returns the calls per layer strace counted inside the first store for variant
// in case ("miss" or "hit"), and whether it was measured.
func (runs *runsFile) callsPerLayer(variant, kind string) (float64, bool) {
	for _, f := range runs.FSCalls {
		if f.Variant == variant && f.Case == kind && len(f.Stores) > 0 {
			return f.Stores[0].PerLayer, true
		}
	}
	return 0, false
}

// findings explains, from this run's own measurements, each target the run missed. It returns
// nothing when every target was met.
func (b *bench) findings(runs *runsFile) []string {
	var res []string
	res0 := runs.Results
	labels := b.variantLabels()
	old := b.c.oldVersion
	hitA, hitB, hitC := runs.scenario("hit", "patched"), runs.scenario("hit", "pristine"),
		runs.scenario("hit", "old")
	missA, missB := runs.scenario("miss", "patched"), runs.scenario("miss", "pristine")

	if res0.HitVsFullRatio > targetHitVsFull {
		res = append(res, fmt.Sprintf("Hit over full pull (%.4f > %.2f): a pull from the store "+
			"took %.1f ms (%.1f ms creating the store, %.1f ms in copy.Image), the full pull "+
			"%.1f ms. What is left of a pull that downloads nothing is creating the store and "+
			"committing one overlay layer per image layer; see scenario 4 for what each costs.",
			res0.HitVsFullRatio, targetHitVsFull, hitA.Wall.Median, hitA.SetupMS, hitA.CopyMS,
			hitB.Wall.Median))
	}
	if res0.LayerBytesServedOnHit != 0 {
		res = append(res, fmt.Sprintf("The registry served %d layer bytes to a pull that took "+
			"every layer from the store: runs.json lists each pull's requests.",
			res0.LayerBytesServedOnHit))
	}
	if res0.MissOverheadRatio > targetMiss {
		res = append(res, b.missFinding(runs, missA, missB))
	}
	if res0.HitVsV530Ratio > targetHitVsOld {
		s := fmt.Sprintf("Hit against %s (%.4f > %.2f): %s took %.1f ms (store %.1f ms, copy "+
			"%.1f ms, shutdown %.1f ms), %s %.1f ms (store %.1f ms, copy %.1f ms, shutdown "+
			"%.1f ms).", old, res0.HitVsV530Ratio, targetHitVsOld, labels["patched"],
			hitA.Wall.Median, hitA.SetupMS, hitA.CopyMS, hitA.ShutdownMS, old, hitC.Wall.Median,
			hitC.SetupMS, hitC.CopyMS, hitC.ShutdownMS)
		a, okA := runs.callsPerLayer("patched", "hit")
		c, okC := runs.callsPerLayer("old", "hit")
		if okA && okC {
			s += fmt.Sprintf(" Per layer taken from the store, image-als makes %.0f file "+
				"system calls on the store and %s %.0f (scenario 5); each costs a few "+
				"microseconds on a local file system (a failed one %.1f µs here).", a, old, c,
				runs.LookupMissNS/1000)
		}
		s += fmt.Sprintf(" The two builds also differ in everything else: %s uses "+
			"c/storage v1.53, image-als the c/storage of %s.", old, b.c.upstream)
		res = append(res, s)
	}
	if flat, worst := flatGrowth(runs.Growth, perLayer); !flat && worst > 0 {
		res = append(res, b.growthFinding(runs, worst))
	}
	return res
}

// missFinding explains a miss overhead over the target with the size of the work that differs
// and the noise of the pulls that do not differ.
func (b *bench) missFinding(runs *runsFile, missA, missB scenarioRow) string {
	s := fmt.Sprintf("Miss overhead (%.4f > %.2f): ", runs.Results.MissOverheadRatio,
		targetMiss)
	a, ok := runs.callsPerLayer("patched", "miss")
	if ok {
		layers := len(runs.Image.Layers)
		extra := a * float64(layers) * runs.LookupMissNS / 1e6
		lookups := fmt.Sprintf("%.2g failed lookups", a)
		if a == 1 {
			lookups = "one failed lookup"
		}
		s += fmt.Sprintf("on a miss image-als does what pristine upstream does plus %s per "+
			"layer and store (scenario 5). A failed lookup costs %.1f µs here, so for this "+
			"image's %d layers the extra work is %.3f ms of a %.0f ms pull (%.2g%%). ", lookups,
			runs.LookupMissNS/1000, layers, extra, missB.Wall.Median,
			100*extra/missB.Wall.Median)
	}
	s += fmt.Sprintf("The same pristine pull took from %.0f to %.0f ms across the rounds "+
		"(%.1f%% of its median apart) and image-als's from %.0f to %.0f ms. ", missB.Wall.Min,
		missB.Wall.Max, 100*(missB.Wall.Max-missB.Wall.Min)/missB.Wall.Median, missA.Wall.Min,
		missA.Wall.Max)
	var pooled []float64
	for _, r := range runs.Pulls {
		if r.Variant == "pristine" && r.Round > 0 {
			pooled = append(pooled, r.WallMS)
		}
	}
	if len(pooled) > 0 {
		all := summarize(pooled)
		s += fmt.Sprintf("Pristine does the same work with the full store (it never asks it, "+
			"scenario 5); over all %d of its full pulls the median is %.0f ms, and image-als's "+
			"miss median is %.4f of that. ", all.N, all.Median, missA.Wall.Median/all.Median)
	}
	diff := missA.Wall.Median - missB.Wall.Median
	if diff <= missB.Wall.Max-missB.Wall.Min {
		s += fmt.Sprintf("The difference of the medians, %.0f ms, is within the spread of "+
			"pristine's own pulls, and the lookups account for a negligible part of it.", diff)
	} else {
		s += fmt.Sprintf("The difference of the medians, %.0f ms, is larger than the spread of "+
			"pristine's own pulls and is not explained by the lookups' cost: runs.json has "+
			"every pull.", diff)
	}
	return s
}

// growthFinding explains a per-layer time that grows with the layer count by comparing the
// builds and the file systems.
func (b *bench) growthFinding(runs *runsFile, worst float64) string {
	fs := runs.Machine.Filesystem
	oldFlat, oldWorst := flatGrowth(runs.Growth, oldPerLayer)
	s := fmt.Sprintf("Per-layer growth (%.2f× at 50 or 100 layers over 10 layers, target "+
		"%.2f×): ", worst, targetFlatGrowth)
	if oldFlat {
		s += fmt.Sprintf("%s stays flat on %s (%.2f×), so the growth is in what image-als "+
			"runs that %s does not: the restored lookup or the newer c/storage.",
			b.c.oldVersion, fs, oldWorst, b.c.oldVersion)
	} else {
		last := runs.Growth[len(runs.Growth)-1]
		s += fmt.Sprintf("%s grows too on %s (%.2f×; at %d layers %.2f ms per layer against "+
			"image-als's %.2f ms), so the growth is not in the lookup.", b.c.oldVersion, fs,
			oldWorst, last.Layers, last.OldPerLayer, last.PerLayerMS)
	}
	flatT, worstT := flatGrowth(runs.Growth, func(g growthRow) float64 { return g.TmpfsPerLayer })
	if worstT > 0 {
		if flatT {
			s += fmt.Sprintf(" With the store on a tmpfs the per-layer time is flat (%.2f×): "+
				"what grows is the cost of creating layers on %s.", worstT, fs)
		} else {
			s += fmt.Sprintf(" With the store on a tmpfs the per-layer time grows too (%.2f×): "+
				"it is not the disk alone.", worstT)
		}
	}
	var rows []string
	for _, g := range runs.Growth {
		if g.MarginalMS != 0 {
			rows = append(rows, fmt.Sprintf("%.2f ms", g.MarginalMS))
		}
	}
	if len(rows) > 0 {
		s += " The marginal cost of a layer from one row of the table to the next: " +
			strings.Join(rows, ", ") + "."
	}
	return s
}
