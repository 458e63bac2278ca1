# The benchmark of the restored lookup: GNUmakefile includes this file. `make bench` is not
# part of `make test` (its timings are noisy); `make test` runs only bench-smoke.

.PHONY: bench
bench: tree pristine ## time pulls via an ALS against upstream and v5.30.1 (docs/benchmarks.md)
	@bench/run "$(BUILDTAGS)"

.PHONY: bench-smoke
bench-smoke: tree pristine ## one round of the bench on a tiny image: only checks it completes
	@bench/run --smoke "$(BUILDTAGS)"

.PHONY: bench-report
bench-report: tree ## rewrite docs/benchmarks.md from bench/runs.json, e.g. after editing notes.md
	$(GO) run -tags "$(BUILDTAGS)" ./bench/runner -regenerate -runs bench/runs.json \
		-results bench/results.json -doc docs/benchmarks.md -chart docs/benchmarks.svg \
		-notes bench/notes.md
