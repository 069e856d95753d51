package main

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAbbreviate(t *testing.T) {
	short := "one\ntwo"
	require.Equal(t, short, abbreviate(short, 100))

	long := strings.Repeat("first error\n", 10) + strings.Repeat("x\n", 100) + strings.Repeat("last line\n", 10)
	got := abbreviate(long, 200)
	require.True(t, strings.HasPrefix(got, "first error\n"), got)
	require.True(t, strings.HasSuffix(got, "last line\n"), got)
	require.Contains(t, got, "bytes cut")
	require.Less(t, len(got), 250)
}

func TestMedian(t *testing.T) {
	require.True(t, math.IsNaN(median(nil)))
	require.Equal(t, 2.0, median([]float64{3, 1, 2}))
	require.Equal(t, 2.5, median([]float64{4, 1, 3, 2}))
}

func TestParseFlagsQuick(t *testing.T) {
	cfg, err := parseFlags([]string{"-quick"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, []string{"select"}, cfg.workloads)
	require.Equal(t, []int{20}, cfg.clients)
	require.Equal(t, 1, cfg.rounds)
	require.Equal(t, 5*time.Second, cfg.duration)
	require.Equal(t, 1000, cfg.idle)

	// Flags given with -quick win over its choices.
	cfg, err = parseFlags([]string{"-quick", "-clients", "20,200", "-idle", "0"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, []int{20, 200}, cfg.clients)
	require.Equal(t, 0, cfg.idle)

	cfg, err = parseFlags(nil, io.Discard)
	require.NoError(t, err)
	require.Equal(t, workloadNames, cfg.workloads)
	require.Equal(t, []int{20, 200, 1000}, cfg.clients)
	require.Equal(t, 18000, cfg.idle)

	_, err = parseFlags([]string{"-clients", "5000"}, io.Discard)
	require.ErrorContains(t, err, "-clients")
}

// sampleReport is a report of two rounds of select and select-prepared at 20 and 200
// clients, with PgBouncer failing the prepared runs as it does.
func sampleReport(t *testing.T) *report {
	dir := t.TempDir()
	cfg := config{clients: []int{20, 200}, workloads: []string{"select", "select-prepared"}, rounds: 2,
		duration: 5 * time.Second, scale: 10, jobs: 2, route: true, idle: 100, directMax: 200,
		out: filepath.Join(dir, "README.md"), chart: filepath.Join(dir, "tps.png")}
	r := &report{cfg: cfg, machine: machineInfo{CPUs: 2, PgBouncer: "PgBouncer 1.18.0"}}
	tps := map[string]float64{targetDirect: 10000, targetPgbouncer: 7000, targetCmpool: 8000}
	for round := 1; round <= 2; round++ {
		for _, w := range cfg.workloads {
			for _, c := range cfg.clients {
				for _, tg := range targetNames {
					res := runResult{Round: round, Workload: w, Clients: c, Target: tg, CPUPerTx: math.NaN(),
						Summary: pgbenchSummary{TPS: tps[tg] * float64(round), Processed: 1000}}
					if tg != targetDirect {
						res.CPUPerTx = 20 * float64(round)
					}
					if tg == targetPgbouncer && w == "select-prepared" {
						res = runResult{Round: round, Workload: w, Clients: c, Target: tg, CPUPerTx: math.NaN(),
							Err: errors.New("exit status 2"), Expected: "no prepared statements"}
					}
					r.runs = append(r.runs, res)
				}
			}
		}
	}
	r.idle = []idleResult{
		{Target: targetPgbouncer, Clients: 100, BaseRSS: 10 << 20, HeldRSS: 10<<20 + 100<<10, PerClient: 1 << 10},
		{Target: targetCmpool, Clients: 40, Err: errors.New("40 of 100 connections logged in: EOF")},
	}
	return r
}

func TestReportMarkdown(t *testing.T) {
	r := sampleReport(t)
	md := r.markdown()
	// Medians over two rounds: direct 15000, PgBouncer 10500, cmpool 12000.
	require.Contains(t, md, "| select | 20 | cmpool | 12000 | 8000–16000 |")
	require.Contains(t, md, "| select | 20 | 1.14 | 0.80 | 0.70 |")
	require.Contains(t, md, "| select-prepared | 200 | n/a | 0.80 | n/a |")
	require.Contains(t, md, "2/2 runs failed, as expected: no prepared statements")
	require.Contains(t, md, "| pgbouncer | 100 | 10.0 | 10.1 | 1.0 |")
	require.Contains(t, md, "**FAILED**: 40 of 100 connections logged in: EOF")
	require.Contains(t, md, "![median TPS by client count, per workload and target](tps.png)")
	require.Equal(t, 1, r.failures(), "the failed idle measurement; the prepared runs were expected to fail")
	require.Contains(t, md, "| select, 20 clients: cmpool TPS ≥ 1.1 × PgBouncer | 1.14 × | met |")
	require.Contains(t, md, "| select, 200 clients: cmpool TPS ≥ 1.0 × PgBouncer | 1.14 × | met |")
	require.Contains(t, md, "| select, 200 clients: cmpool CPU per transaction ≤ PgBouncer's | 30.0 vs 30.0 µs/tx | met |")
	require.Contains(t, md, "| 100 idle clients held at ≤ 2 KiB RSS each (the target is for 50000) | 40 held, 0.0 KiB each | **not measured** (failed) |")

	lines := r.ratioLines()
	require.Len(t, lines, 4)
	require.Contains(t, lines[0], "cmpool/pgbouncer 1.14  cmpool/direct 0.80  proxy CPU µs/tx: cmpool 30.0, pgbouncer 30.0")
}

func TestReportDirectNotRun(t *testing.T) {
	r := sampleReport(t)
	r.cfg.directMax = 20
	var runs []runResult
	for _, run := range r.runs {
		if r.cfg.runs(run.Target, run.Clients) {
			runs = append(runs, run)
		}
	}
	require.Len(t, runs, len(r.runs)-4, "direct at 200 clients: 2 workloads, 2 rounds")
	r.runs = runs
	md := r.markdown()
	require.Contains(t, md, "| select | 200 | direct | n/a | | | | | | not run: more than -direct-max-clients 20 |")
	require.Contains(t, md, "| select | 200 | 1.14 | n/a | n/a |")
	require.NoError(t, r.writeChart(r.cfg.chart))
}

func TestWriteChart(t *testing.T) {
	r := sampleReport(t)
	require.NoError(t, r.writeChart(r.cfg.chart))
	data, err := os.ReadFile(r.cfg.chart)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")), "not a PNG")

	// One workload and one client count still draw.
	r.cfg.workloads, r.cfg.clients = []string{"select"}, []int{20}
	require.NoError(t, r.writeChart(r.cfg.chart))
}

func TestSchedulingLine(t *testing.T) {
	require.Contains(t, schedulingLine("1", false, false), "pgbench and both proxies share the benchmark's group")
	require.Contains(t, schedulingLine("1", false, false), "PostgreSQL, started by `pg_ctl`, has a group of its own")
	require.Contains(t, schedulingLine("1", true, false), "Each proxy has a group of its own (`setsid`)")
	require.NotContains(t, schedulingLine("1", true, true), "PostgreSQL")
	require.Contains(t, schedulingLine("0", true, false), "autogroup is off")
	require.Contains(t, schedulingLine("", false, false), "unknown")

	cfg, err := parseFlags(nil, io.Discard)
	require.NoError(t, err)
	require.True(t, cfg.sessions, "each proxy in a group of its own by default")
	cfg, err = parseFlags([]string{"-sessions=false"}, io.Discard)
	require.NoError(t, err)
	require.False(t, cfg.sessions)
}

func TestReportCmpoolConfig(t *testing.T) {
	r := sampleReport(t)
	require.NotContains(t, r.markdown(), "-cmpool-config")
	path := filepath.Join(t.TempDir(), "one-loop.toml")
	require.NoError(t, os.WriteFile(path, []byte("workers = 1\n\nevent_loops = 1\n"), 0o600))
	r.cfg.cmpoolCfg = path
	require.Contains(t, r.markdown(), "configuration file (`-cmpool-config`), whose settings the flags above override: `workers = 1; event_loops = 1`")
}
