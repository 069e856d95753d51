package main

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// runResult is the outcome of one pgbench run.
type runResult struct {
	Round    int // 1-based; 0 is the warm-up
	Workload string
	Clients  int
	Target   string
	Summary  pgbenchSummary
	Latency  latencyStats
	CPUPerTx float64 // proxy CPU time in µs per transaction; NaN for direct and failed runs
	Err      error   // nil when pgbench succeeded
	Expected string  // for a failure: why it is a known limitation of the target; "" if it is not
	Output   string  // pgbench's output (and the proxy's log tail) when Err is set
}

// report renders the results as markdown.
type report struct {
	cfg     config
	command string
	machine machineInfo
	runs    []runResult

	cmpoolLog string // what cmpool logged at --log-level warn during the whole benchmark
}

// cell is the summary of one workload × clients × target over the rounds.
type cell struct {
	ok       []runResult // successful runs, by ascending TPS
	failed   int
	expected string // the known limitation behind the failures, if any
	failedTx int64
}

// medianTPS returns the median TPS of the successful runs, or NaN when there are none (c may
// be nil).
func (c *cell) medianTPS() float64 {
	if c == nil {
		return math.NaN()
	}
	tps := make([]float64, len(c.ok))
	for i, r := range c.ok {
		tps[i] = r.Summary.TPS
	}
	return median(tps)
}

// medianRun returns the run with the median TPS (the lower one of the middle two for an even
// count).
func (c *cell) medianRun() runResult { return c.ok[(len(c.ok)-1)/2] }

// medianCPU returns the median proxy CPU µs/tx, or NaN.
func (c *cell) medianCPU() float64 {
	var cpu []float64
	for _, r := range c.ok {
		if !math.IsNaN(r.CPUPerTx) {
			cpu = append(cpu, r.CPUPerTx)
		}
	}
	return median(cpu)
}

// median returns the median of values, or NaN when there are none.
func median(values []float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	v := slices.Clone(values)
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

type cellKey struct {
	workload string
	clients  int
	target   string
}

// cells groups the measured runs (not the warm-up).
func (r *report) cells() map[cellKey]*cell {
	cells := map[cellKey]*cell{}
	for _, run := range r.runs {
		if run.Round == 0 {
			continue
		}
		k := cellKey{run.Workload, run.Clients, run.Target}
		c := cells[k]
		if c == nil {
			c = &cell{}
			cells[k] = c
		}
		if run.Err != nil {
			c.failed++
			c.expected = cmp.Or(c.expected, run.Expected)
			continue
		}
		c.ok = append(c.ok, run)
		c.failedTx += run.Summary.Failed + int64(run.Latency.Failed)
	}
	for _, c := range cells {
		slices.SortFunc(c.ok, func(a, b runResult) int { return cmp.Compare(a.Summary.TPS, b.Summary.TPS) })
	}
	return cells
}

// failures counts the failed runs, the warm-up included, that are not known limitations.
func (r *report) failures() int {
	n := 0
	for _, run := range r.runs {
		if run.Err != nil && run.Expected == "" {
			n++
		}
	}
	return n
}

func (r *report) markdown() string {
	var b strings.Builder
	m := r.machine
	fmt.Fprintf(&b, "# pgbench: direct PostgreSQL vs PgBouncer vs cmpool\n\n")
	fmt.Fprintf(&b, "- Command: `%s`\n", r.command)
	fmt.Fprintf(&b, "- Date: %s\n", m.Date)
	fmt.Fprintf(&b, "- Machine: %d CPUs (%s), Linux %s, %s\n", m.CPUs, m.CPUModel, m.Kernel, m.GoVersion)
	fmt.Fprintf(&b, "- PostgreSQL %s from the integration harness: max_connections=%d, fsync=off, synchronous_commit=off, shared_buffers=128MB\n", m.Postgres, maxConnections)
	fmt.Fprintf(&b, "- %s: %s\n", m.PgBouncer, strings.ReplaceAll(strings.TrimSpace(pgbouncerSettings), "\n", ", "))
	fmt.Fprintf(&b, "- cmpool %s (built with `go build ./cmd/cmpool`): `%s`\n", m.Cmpool, strings.Join(cmpoolFlags, " "))
	fmt.Fprintf(&b, "- pgbench %s: scale %d, `-n -j %d -T %d --max-tries=1 -l`, %d round(s); each round runs every workload and client count against the three targets in turn, rotating their order from round to round", m.Pgbench, r.cfg.scale, r.cfg.jobs, int(math.Ceil(r.cfg.duration.Seconds())), r.cfg.rounds)
	if r.cfg.warmup > 0 {
		fmt.Fprintf(&b, "; a %s select-only warm-up per target comes first", r.cfg.warmup)
	}
	fmt.Fprintf(&b, ". TPC-B runs start after VACUUM of pgbench_branches and pgbench_tellers and TRUNCATE of pgbench_history.\n")
	fmt.Fprintf(&b, "- TPS: median over the rounds (without initial connection time). Latency: p50/p95/p99 of pgbench's per-transaction log of the median-TPS run. Proxy CPU: the proxy process's utime+stime (/proc/PID/stat) over the run divided by the transactions processed, median over the rounds. All processes share the same %d CPUs, so a proxy's CPU is taken from PostgreSQL and pgbench.\n\n", m.CPUs)

	cells := r.cells()
	b.WriteString("## Results\n\n")
	b.WriteString("| workload | clients | target | TPS (median) | TPS (min–max) | p50 ms | p95 ms | p99 ms | proxy CPU µs/tx | notes |\n")
	b.WriteString("|---|---:|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, w := range r.cfg.workloads {
		for _, c := range r.cfg.clients {
			for _, t := range targetNames {
				b.WriteString(resultRow(w, c, t, cells[cellKey{w, c, t}]))
			}
		}
	}

	b.WriteString("\n## Ratios of median TPS\n\n")
	b.WriteString("| workload | clients | cmpool / PgBouncer | cmpool / direct | PgBouncer / direct |\n")
	b.WriteString("|---|---:|---:|---:|---:|\n")
	for _, w := range r.cfg.workloads {
		for _, c := range r.cfg.clients {
			tps := func(t string) float64 { return cells[cellKey{w, c, t}].medianTPS() }
			d, p, cm := tps(targetDirect), tps(targetPgbouncer), tps(targetCmpool)
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s |\n", w, c, ratio(cm, p), ratio(cm, d), ratio(p, d))
		}
	}
	if slices.ContainsFunc(r.runs, func(run runResult) bool { return run.Err != nil }) {
		b.WriteString("\n## Failures\n")
		for _, run := range r.runs {
			if run.Err == nil {
				continue
			}
			expected := ""
			if run.Expected != "" {
				expected = " (expected: " + run.Expected + ")"
			}
			fmt.Fprintf(&b, "\n### %s, %s, %d clients, %s%s\n\n%s\n", roundName(run.Round), run.Workload, run.Clients, run.Target, expected, run.Err)
			if out := strings.TrimSpace(run.Output); out != "" {
				fmt.Fprintf(&b, "\n```\n%s\n```\n", abbreviate(out, 6000))
			}
		}
	}

	if log := strings.TrimSpace(r.cmpoolLog); log != "" {
		fmt.Fprintf(&b, "\n## cmpool log (warnings and errors)\n\n```\n%s\n```\n", abbreviate(log, 6000))
	}

	b.WriteString("\n## All runs\n\n")
	b.WriteString("| round | workload | clients | target | TPS | p50 ms | p95 ms | p99 ms | proxy CPU µs/tx | failed tx |\n")
	b.WriteString("|---|---|---:|---|---:|---:|---:|---:|---:|---:|\n")
	for _, run := range r.runs {
		if run.Err != nil {
			fmt.Fprintf(&b, "| %s | %s | %d | %s | FAILED | | | | | |\n", roundName(run.Round), run.Workload, run.Clients, run.Target)
			continue
		}
		l := run.Latency
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %.0f | %.2f | %.2f | %.2f | %s | %d |\n", roundName(run.Round), run.Workload, run.Clients, run.Target,
			run.Summary.TPS, l.P50, l.P95, l.P99, cpuCell(run.CPUPerTx), run.Summary.Failed+int64(l.Failed))
	}
	return b.String()
}

// resultRow renders one row of the results table.
func resultRow(w string, clients int, t string, c *cell) string {
	if c == nil || len(c.ok) == 0 {
		n := 0
		if c != nil {
			n = c.failed
		}
		return fmt.Sprintf("| %s | %d | %s | **FAILED** | | | | | | %s |\n", w, clients, t, failedNote(n, n, c))
	}
	var notes []string
	if c.failed > 0 {
		notes = append(notes, failedNote(c.failed, c.failed+len(c.ok), c))
	}
	if c.failedTx > 0 {
		notes = append(notes, fmt.Sprintf("**%d failed transactions**", c.failedTx))
	}
	mr := c.medianRun()
	return fmt.Sprintf("| %s | %d | %s | %.0f | %.0f–%.0f | %.2f | %.2f | %.2f | %s | %s |\n", w, clients, t,
		c.medianTPS(), c.ok[0].Summary.TPS, c.ok[len(c.ok)-1].Summary.TPS,
		mr.Latency.P50, mr.Latency.P95, mr.Latency.P99, cpuCell(c.medianCPU()), strings.Join(notes, ", "))
}

// failedNote tells how many runs of a cell failed, and why when that was expected.
func failedNote(failed, runs int, c *cell) string {
	if c != nil && c.expected != "" {
		return fmt.Sprintf("%d/%d runs failed, as expected: %s", failed, runs, c.expected)
	}
	return fmt.Sprintf("**%d/%d runs failed**", failed, runs)
}

func cpuCell(us float64) string {
	if math.IsNaN(us) {
		return "–"
	}
	return fmt.Sprintf("%.1f", us)
}

func ratio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func roundName(round int) string {
	if round == 0 {
		return "warm-up"
	}
	return fmt.Sprintf("round %d", round)
}

// abbreviate keeps about the first and the last n/2 bytes of s, cut at line ends: the first
// error and the end of the output tell the most.
func abbreviate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	head, rest := s[:n/2], s[len(s)-n/2:]
	if i := strings.LastIndexByte(head, '\n'); i > 0 {
		head = head[:i]
	}
	if i := strings.IndexByte(rest, '\n'); i >= 0 {
		rest = rest[i+1:]
	}
	return fmt.Sprintf("%s\n[… %d bytes cut …]\n%s", head, len(s)-len(head)-len(rest), rest)
}

// formatDate is the report's timestamp format.
func formatDate(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 MST") }
