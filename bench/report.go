package main

import (
	"cmp"
	"fmt"
	"math"
	"os"
	"path/filepath"
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
	idle    []idleResult   // one per proxy; none without -idle
	profile *profileResult // nil without -profile

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

// failures counts the failed runs, the warm-up included, that are not known limitations, and
// the failed idle and profile measurements.
func (r *report) failures() int {
	n := 0
	for _, run := range r.runs {
		if run.Err != nil && run.Expected == "" {
			n++
		}
	}
	for _, res := range r.idle {
		if res.Err != nil {
			n++
		}
	}
	if r.profile != nil && r.profile.Err != nil {
		n++
	}
	return n
}

// ratioLines are the TPS ratios and proxy CPU per transaction, one line per workload and
// client count, for the end of the log.
func (r *report) ratioLines() []string {
	cells := r.cells()
	var lines []string
	for _, w := range r.cfg.workloads {
		for _, c := range r.cfg.clients {
			get := func(t string) *cell { return cells[cellKey{w, c, t}] }
			d, p, cm := get(targetDirect), get(targetPgbouncer), get(targetCmpool)
			lines = append(lines, fmt.Sprintf("%-15s c=%-4d cmpool/pgbouncer %s  cmpool/direct %s  proxy CPU µs/tx: cmpool %s, pgbouncer %s",
				w, c, ratio(cm.medianTPS(), p.medianTPS()), ratio(cm.medianTPS(), d.medianTPS()), cpuCell(cm.medianCPUOrNaN()), cpuCell(p.medianCPUOrNaN())))
		}
	}
	return lines
}

// medianCPUOrNaN is medianCPU for a cell that may be nil.
func (c *cell) medianCPUOrNaN() float64 {
	if c == nil {
		return math.NaN()
	}
	return c.medianCPU()
}

func (r *report) markdown() string {
	var b strings.Builder
	m := r.machine
	fmt.Fprintf(&b, "# Benchmarks: direct PostgreSQL vs PgBouncer vs cmpool\n\n")
	b.WriteString("This file is written by the benchmark command; run it again to refresh it. Where cmpool's time goes, per system call and per transaction, and what would close the gap to PgBouncer: [analysis.md](analysis.md).\n\n")
	b.WriteString("```sh\n")
	b.WriteString("go run ./bench            # everything below: 4 workloads × 20/200/1000 clients × 3 targets, 3 rounds, idle clients (~13 min)\n")
	b.WriteString("go run ./bench -quick     # a one-minute smoke run: pgbench -S, 20 clients, 1 round, 1000 idle clients\n")
	b.WriteString("go run ./bench -workloads select,tpcb -clients 20,200 -duration 5s -rounds 1 -idle 0 -out /tmp/bench.md -chart /tmp/bench.png\n")
	b.WriteString("go run ./bench -profile /tmp/cmpool-prof   # adds CPU and allocation profiles of cmpool under pgbench -S -c 20 (-profile-workload tpcb: under TPC-B)\n")
	b.WriteString("go run ./bench -backend fake   # the proxies alone: in front of a fake server that answers at once\n")
	b.WriteString("go run ./bench -sessions=false # both proxies in the benchmark's CPU scheduling group, with pgbench (before 7 December, the default)\n")
	b.WriteString("go test -run '^$' -bench . -benchmem ./protocol/ ./router/ ./pool/   # hot-path micro-benchmarks\n")
	b.WriteString("```\n\n")
	b.WriteString("It needs PostgreSQL's server binaries, pgbench and pgbouncer (`apt-get install postgresql-15 pgbouncer`); as root it runs them as the postgres OS user.\n\n")
	b.WriteString("## Setup\n\n")
	fmt.Fprintf(&b, "- Command: `%s`\n", r.command)
	fmt.Fprintf(&b, "- Date: %s\n", m.Date)
	fmt.Fprintf(&b, "- Machine: %d CPUs (%s), Linux %s, %s. The machine was shared with other work while it ran, so single runs are noisy; compare the medians and the ranges.\n", m.CPUs, m.CPUModel, m.Kernel, m.GoVersion)
	fmt.Fprintf(&b, "- Load average (1, 5, 15 min) at the start: %s; at the end: %s.\n", m.LoadStart, m.LoadEnd)
	b.WriteString(schedulingLine(m.Autogroup, r.cfg.sessions, r.cfg.fake))
	if r.cfg.fake {
		b.WriteString("- No PostgreSQL (`-backend fake`): the proxies are in front of the fake server of bench/fakepg.go, in the benchmark's own process, which answers every statement at once (one row of one int4 column, or the command tag). TPS and proxy CPU are then the proxies' own cost. `direct` is pgbench against the fake server itself: the ceiling of pgbench and the fake server on this machine.\n")
	} else {
		fmt.Fprintf(&b, "- PostgreSQL %s from the integration harness, a primary and a streaming replica: max_connections=%d, fsync=off, synchronous_commit=off, shared_buffers=128MB. Direct runs go up to %d clients (`-direct-max-clients`): PostgreSQL forks a backend per connection, and on this machine 1000 clients took 8 s to connect when it was quiet and more than 18 s under load, so a timed run measured mostly the connection storm or nothing. Above that, direct is n/a.\n", m.Postgres, maxConnections, r.cfg.directMax)
	}
	fmt.Fprintf(&b, "- %s in front of the primary: %s\n", m.PgBouncer, strings.ReplaceAll(strings.TrimSpace(pgbouncerSettings), "\n", ", "))
	if r.cfg.route {
		fmt.Fprintf(&b, "- cmpool %s (built with `go build ./cmd/cmpool`) in front of the primary and the replica (`--primary … --replica …`): `%s`. It routes the read-only transactions (all of `-S`) to the replica with up to 20 server connections there, and the rest to the primary; `-route=false` points it at the primary only, as PgBouncer is. Both servers share the same %d CPUs, so the replica adds no CPU.\n", m.Cmpool, strings.Join(cmpoolFlags, " "), m.CPUs)
	} else {
		fmt.Fprintf(&b, "- cmpool %s (built with `go build ./cmd/cmpool`) in front of the primary only (`-route=false`): `%s`\n", m.Cmpool, strings.Join(cmpoolFlags, " "))
	}
	if r.cfg.cmpoolCfg != "" {
		content, _ := os.ReadFile(r.cfg.cmpoolCfg)
		var lines []string
		for _, l := range strings.Split(string(content), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, l)
			}
		}
		fmt.Fprintf(&b, "- cmpool also reads a configuration file (`-cmpool-config`), whose settings the flags above override: `%s`\n", strings.Join(lines, "; "))
	}
	fmt.Fprintf(&b, "- pgbench %s: scale %d, `-n -j %d -T %d --max-tries=1 -l`, %d round(s); each round runs every workload and client count against the three targets in turn, rotating their order from round to round", m.Pgbench, r.cfg.scale, r.cfg.jobs, int(math.Ceil(r.cfg.duration.Seconds())), r.cfg.rounds)
	if r.cfg.warmup > 0 {
		fmt.Fprintf(&b, "; a %s select-only warm-up per target comes first", r.cfg.warmup)
	}
	fmt.Fprintf(&b, ". pgbench's -T counts from before its clients connect, so each run gets -T of the duration plus a connection allowance of %s per client to PostgreSQL directly (which forks a backend per connection) and %s per client through a proxy", connectAllowance(targetDirect, 1), connectAllowance(targetCmpool, 1))
	fmt.Fprintf(&b, ". TPC-B runs start after VACUUM of pgbench_branches and pgbench_tellers and TRUNCATE of pgbench_history.\n")
	fmt.Fprintf(&b, "- TPS: median over the rounds (without initial connection time). Latency: p50/p95/p99 of pgbench's per-transaction log of the median-TPS run. Proxy CPU: the proxy process's utime+stime (/proc/PID/stat) over the run divided by the transactions processed, median over the rounds. All processes share the same %d CPUs, so a proxy's CPU is taken from PostgreSQL and pgbench.\n\n", m.CPUs)

	cells := r.cells()
	if r.cfg.chart != "" {
		rel, err := filepath.Rel(filepath.Dir(r.cfg.out), r.cfg.chart)
		if err != nil {
			rel = r.cfg.chart
		}
		fmt.Fprintf(&b, "![median TPS by client count, per workload and target](%s)\n\n", filepath.ToSlash(rel))
	}
	b.WriteString("## Results\n\n")
	b.WriteString("| workload | clients | target | TPS (median) | TPS (min–max) | p50 ms | p95 ms | p99 ms | proxy CPU µs/tx | notes |\n")
	b.WriteString("|---|---:|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, w := range r.cfg.workloads {
		for _, c := range r.cfg.clients {
			for _, t := range targetNames {
				if !r.cfg.runs(t, c) {
					fmt.Fprintf(&b, "| %s | %d | %s | n/a | | | | | | not run: more than -direct-max-clients %d |\n", w, c, t, r.cfg.directMax)
					continue
				}
				b.WriteString(resultRow(w, c, t, cells[cellKey{w, c, t}]))
			}
		}
	}

	if t := r.targetsTable(cells); t != "" {
		b.WriteString("\n## Targets\n\n")
		b.WriteString("The performance targets of cmpool, checked against this run.\n\n")
		b.WriteString(t)
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
	if len(r.idle) > 0 {
		b.WriteString("\n## Idle clients\n\n")
		b.WriteString("Each proxy in turn gets idle client connections, opened with a bare StartupMessage and left idle after ReadyForQuery. Each proxy is started afresh for it, after the workloads, so that memory they left free is not reused. RSS is VmRSS of /proc/PID/status, read just before and 5 s after the last login (cmpool parks a client idle for 1 s and returns the freed memory once a burst is parked); the growth divided by the connections is the RSS per idle client.\n\n")
		b.WriteString("| target | idle clients | RSS before MiB | RSS held MiB | RSS per idle client KiB |\n")
		b.WriteString("|---|---:|---:|---:|---:|\n")
		for _, res := range r.idle {
			if res.Err != nil {
				fmt.Fprintf(&b, "| %s | %d | | | **FAILED**: %s |\n", res.Target, res.Clients, oneLine(res.Err.Error()))
				continue
			}
			fmt.Fprintf(&b, "| %s | %d | %.1f | %.1f | %.1f |\n", res.Target, res.Clients,
				float64(res.BaseRSS)/(1<<20), float64(res.HeldRSS)/(1<<20), res.PerClient/1024)
		}
	}
	if p := r.profile; p != nil {
		fmt.Fprintf(&b, "\n## cmpool profile under pgbench %s, %d clients\n\n", r.cfg.profileWL, profileClients)
		if p.Err != nil {
			fmt.Fprintf(&b, "**FAILED**: %s\n", oneLine(p.Err.Error()))
		} else {
			fmt.Fprintf(&b, "cmpool served in the benchmark process itself (same settings as the binary), profiled with runtime/pprof for one %d s run at %.0f TPS; allocations are sampled every %d KiB and are those of that run only (`-base` of a profile taken before it). Profiles: `%s`.\n", int(math.Ceil(r.cfg.duration.Seconds())), p.Summary.TPS, profileMemRate>>10, p.Dir)
			for _, top := range p.Tops {
				fmt.Fprintf(&b, "\n### %s\n\n`go tool pprof %s`\n\n```\n%s\n```\n", top.Title, strings.Join(top.Args, " "), strings.TrimSpace(top.Text))
			}
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
				limit := 6000
				if run.Expected != "" {
					limit = 1000 // the known failure: its start and end suffice
				}
				fmt.Fprintf(&b, "\n```\n%s\n```\n", abbreviate(out, limit))
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

// targetsTable renders cmpool's performance targets with what this run measured, for the
// targets that the run's workloads and client counts cover.
func (r *report) targetsTable(cells map[cellKey]*cell) string {
	tps := func(w string, c int, t string) float64 { return cells[cellKey{w, c, t}].medianTPS() }
	type row struct {
		target, measured string
		met              bool
		known            bool
	}
	var rows []row
	ratioRow := func(w string, c int, want float64, label string) {
		if !slices.Contains(r.cfg.workloads, w) || !slices.Contains(r.cfg.clients, c) {
			return
		}
		got := tps(w, c, targetCmpool) / tps(w, c, targetPgbouncer)
		rows = append(rows, row{label, fmt.Sprintf("%.2f ×", got), got >= want, !math.IsNaN(got)})
	}
	if r.cfg.fake {
		// The proxies alone: cmpool may use every CPU, PgBouncer one.
		for _, w := range r.cfg.workloads {
			for _, c := range r.cfg.clients {
				ratioRow(w, c, 1.5, fmt.Sprintf("fake server, %s, %d clients: cmpool TPS ≥ 1.5 × PgBouncer", w, c))
			}
		}
	} else {
		for _, w := range []string{"select", "select-extended", "tpcb"} {
			for _, c := range r.cfg.clients {
				want := 1.0
				if c <= 20 {
					want = 1.1
				}
				if w == "tpcb" && c > 20 {
					continue
				}
				ratioRow(w, c, want, fmt.Sprintf("%s, %d clients: cmpool TPS ≥ %.1f × PgBouncer", w, c, want))
			}
		}
	}
	if slices.Contains(r.cfg.workloads, "select-prepared") && slices.Contains(r.cfg.workloads, "select-extended") {
		for _, c := range r.cfg.clients {
			p, e := tps("select-prepared", c, targetCmpool), tps("select-extended", c, targetCmpool)
			rows = append(rows, row{fmt.Sprintf("select-prepared, %d clients: cmpool TPS ≥ 1.3 × its own select-extended", c),
				fmt.Sprintf("%.0f vs %.0f TPS (%s)", p, e, ratio(p, e)), p >= 1.3*e, !math.IsNaN(p) && !math.IsNaN(e)})
		}
	}
	for _, w := range r.cfg.workloads {
		for _, c := range r.cfg.clients {
			cm, pb := cells[cellKey{w, c, targetCmpool}].medianCPUOrNaN(), cells[cellKey{w, c, targetPgbouncer}].medianCPUOrNaN()
			if math.IsNaN(pb) {
				continue
			}
			rows = append(rows, row{fmt.Sprintf("%s, %d clients: cmpool CPU per transaction ≤ PgBouncer's", w, c),
				fmt.Sprintf("%s vs %s µs/tx", cpuCell(cm), cpuCell(pb)), cm <= pb, !math.IsNaN(cm)})
		}
	}
	if slices.Contains(r.cfg.clients, 1000) {
		for _, w := range r.cfg.workloads {
			cm, pb := cells[cellKey{w, 1000, targetCmpool}], cells[cellKey{w, 1000, targetPgbouncer}]
			if cm == nil || pb == nil || len(cm.ok) == 0 || len(pb.ok) == 0 {
				continue
			}
			a, b := cm.medianRun().Latency.P99, pb.medianRun().Latency.P99
			rows = append(rows, row{fmt.Sprintf("%s, 1000 clients: cmpool p99 latency ≤ PgBouncer's", w),
				fmt.Sprintf("%.1f vs %.1f ms", a, b), a <= b, true})
		}
	}
	for _, res := range r.idle {
		if res.Target != targetCmpool {
			continue
		}
		label := fmt.Sprintf("%d idle clients held at ≤ 2 KiB RSS each", r.cfg.idle)
		if r.cfg.idle < 50000 {
			label += " (the target is for 50000)"
		}
		rows = append(rows, row{label, fmt.Sprintf("%d held, %.1f KiB each", res.Clients, res.PerClient/1024),
			res.Err == nil && res.Clients == r.cfg.idle && res.PerClient <= 2<<10, res.Err == nil})
	}
	if len(rows) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("| target | measured | |\n|---|---|---|\n")
	for _, rw := range rows {
		verdict := "met"
		switch {
		case !rw.known:
			verdict = "**not measured** (failed)"
		case !rw.met:
			verdict = "**missed**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", rw.target, rw.measured, verdict)
	}
	return b.String()
}

// oneLine joins the lines of s for a table cell.
func oneLine(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(strings.TrimSpace(s), "\n", " "), "|", "\\|")
}

// formatDate is the report's timestamp format.
func formatDate(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 MST") }

// schedulingLine describes the CPU scheduling groups the targets ran in: with the kernel's
// autogroup on, each session is a group, and the groups share the CPUs evenly, which
// changes what a proxy costs (docs/benchmarks/analysis.md).
func schedulingLine(autogroup string, sessions, fake bool) string {
	switch autogroup {
	case "1":
	case "0":
		return "- CPU scheduling: the kernel's autogroup is off (`/proc/sys/kernel/sched_autogroup_enabled` = 0): every process is scheduled on its own.\n"
	default:
		return "- CPU scheduling: whether the kernel groups processes by session (autogroup) is unknown.\n"
	}
	var b strings.Builder
	b.WriteString("- CPU scheduling: the kernel's autogroup is on (`/proc/sys/kernel/sched_autogroup_enabled` = 1), so each session is a scheduling group and the groups share the CPUs evenly. ")
	if !fake {
		b.WriteString("PostgreSQL, started by `pg_ctl`, has a group of its own. ")
	}
	if sessions {
		b.WriteString("Each proxy has a group of its own (`setsid`), as a service under systemd has; pgbench shares the benchmark's.\n")
	} else {
		b.WriteString("pgbench and both proxies share the benchmark's group (`-sessions=false`; by default each proxy has its own, as a service under systemd has).\n")
	}
	return b.String()
}
