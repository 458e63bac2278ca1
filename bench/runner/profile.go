package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// profileReport is where the CPU time of a build's hit pulls went, as `go tool pprof -top`
// prints it for the profiles of several pulls together.
type profileReport struct {
	Variant  string   `json:"variant"`
	Scenario string   `json:"scenario"`
	Pulls    int      `json:"pulls"`
	WallMS   float64  `json:"wall_ms"` // the median wall time of the profiled pulls
	Top      []string `json:"top"`     // pprof's lines, by cumulative time
}

// profile pulls each of steps b.c.profileCount more times with a CPU profile, outside the
// measured rounds, and summarizes the profiles of each build.
func (b *bench) profile(steps []pullStep) error {
	if b.c.profileCount <= 0 {
		return nil
	}
	dir := filepath.Join(b.c.work, "profiles")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, step := range steps {
		var files []string
		var walls []float64
		for i := range b.c.profileCount {
			step.profile = filepath.Join(dir, fmt.Sprintf("%s-%s-%d.pprof", step.scenario,
				step.v.ID, i))
			r, err := b.p.run(step, -1)
			if err != nil {
				return err
			}
			files = append(files, step.profile)
			walls = append(walls, r.WallMS)
		}
		args := append([]string{"tool", "pprof", "-top", "-cum", "-nodecount=25", step.v.bin},
			files...)
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("go tool pprof: %w\n%s", err, out)
		}
		rep := profileReport{
			Variant: step.v.ID, Scenario: step.scenario, Pulls: len(files),
			WallMS: summarize(walls).Median,
		}
		for line := range strings.SplitSeq(strings.TrimRight(string(out), "\n"), "\n") {
			// The build ID and the date change with every run and say nothing about it.
			if !strings.HasPrefix(line, "Build ID:") && !strings.HasPrefix(line, "Time:") {
				rep.Top = append(rep.Top, strings.TrimRight(line, " "))
			}
		}
		b.profiles = append(b.profiles, rep)
		fmt.Printf("profiled %d %s pulls of %s\n", len(files), step.scenario, step.v.ID)
	}
	return nil
}
