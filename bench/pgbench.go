package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// workloads maps a -workloads name to the pgbench arguments that select it.
var workloads = map[string][]string{
	"select":          {"-S"},
	"select-extended": {"-S", "-M", "extended"},
	"select-prepared": {"-S", "-M", "prepared"},
	"tpcb":            nil, // pgbench's default TPC-B-like script
}

// workloadNames lists the workloads in the order the usage text shows them.
var workloadNames = []string{"select", "select-extended", "select-prepared", "tpcb"}

// writes reports whether a workload modifies the tables, so that they are vacuumed before it runs.
func writes(workload string) bool { return workload == "tpcb" }

// pgbenchRun is one timed pgbench run against one target.
type pgbenchRun struct {
	Bin      string        // pgbench executable
	URL      string        // connection URL of the target
	Workload string        // key of workloads
	Clients  int           // pgbench -c
	Jobs     int           // pgbench -j; at most Clients is used
	Duration time.Duration // pgbench -T, rounded up to whole seconds
	LogDir   string        // empty directory for the per-transaction logs, emptied again after the run; "" means no logs and no latencies
}

// pgbenchSummary is what pgbench prints at the end of a run.
type pgbenchSummary struct {
	TPS       float64 // "tps = N (without initial connection time)"
	Processed int64   // "number of transactions actually processed"
	Failed    int64   // "number of failed transactions"; 0 when not printed
	AvgMs     float64 // "latency average"
	ConnMs    float64 // "initial connection time"
}

// latencyStats are percentiles of the per-transaction latencies, in milliseconds.
type latencyStats struct {
	P50, P95, P99 float64
	Count         int // transactions logged with a latency
	Failed        int // transactions logged as failed or skipped
}

// pgbenchError is a pgbench run that exited non-zero or printed no summary.
type pgbenchError struct {
	Args   []string
	Output string
	Err    error
}

func (e *pgbenchError) Error() string {
	return fmt.Sprintf("pgbench %s: %v", strings.Join(e.Args, " "), e.Err)
}

func (e *pgbenchError) Unwrap() error { return e.Err }

// args returns the pgbench command line of r, without the executable.
func (r pgbenchRun) args() []string {
	secs := int(math.Ceil(r.Duration.Seconds()))
	a := []string{"-n",
		"-c", strconv.Itoa(r.Clients),
		"-j", strconv.Itoa(max(1, min(r.Jobs, r.Clients))),
		"-T", strconv.Itoa(max(1, secs)),
		"--max-tries=1",
	}
	if r.LogDir != "" {
		a = append(a, "-l", "--log-prefix="+filepath.Join(r.LogDir, "tx"))
	}
	a = append(a, workloads[r.Workload]...)
	return append(a, r.URL)
}

// run runs pgbench and returns its summary and the latency percentiles from its per-transaction
// logs. A non-zero exit is a *pgbenchError holding pgbench's output.
func (r pgbenchRun) run(ctx context.Context) (pgbenchSummary, latencyStats, string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.Duration+2*time.Minute)
	defer cancel()
	if r.LogDir != "" {
		defer clearDir(r.LogDir)
	}
	args := r.args()
	cmd := exec.CommandContext(ctx, r.Bin, args...)
	cmd.Env = clientEnv()
	// Its own process group keeps a terminal's Ctrl-C away from it: we cancel ctx instead.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	output := string(out)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return pgbenchSummary{}, latencyStats{}, output, &pgbenchError{Args: args, Output: output, Err: err}
	}
	sum, err := parseSummary(output)
	if err != nil {
		return pgbenchSummary{}, latencyStats{}, output, &pgbenchError{Args: args, Output: output, Err: err}
	}
	if r.LogDir == "" {
		return sum, latencyStats{}, output, nil
	}
	lat, err := readLatencies(r.LogDir)
	if err != nil {
		return sum, latencyStats{}, output, fmt.Errorf("read pgbench transaction logs: %w", err)
	}
	return sum, lat, output, nil
}

var (
	tpsRe       = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	processedRe = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)`)
	failedRe    = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
	avgRe       = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	connRe      = regexp.MustCompile(`(?m)^initial connection time = ([0-9.]+) ms`)
)

// parseSummary extracts the summary from pgbench's output.
func parseSummary(out string) (pgbenchSummary, error) {
	var s pgbenchSummary
	m := tpsRe.FindStringSubmatch(out)
	if m == nil {
		return s, errors.New(`no "tps = N (without initial connection time)" line in the output`)
	}
	s.TPS, _ = strconv.ParseFloat(m[1], 64)
	m = processedRe.FindStringSubmatch(out)
	if m == nil {
		return s, errors.New(`no "number of transactions actually processed" line in the output`)
	}
	s.Processed, _ = strconv.ParseInt(m[1], 10, 64)
	if m = failedRe.FindStringSubmatch(out); m != nil {
		s.Failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m = avgRe.FindStringSubmatch(out); m != nil {
		s.AvgMs, _ = strconv.ParseFloat(m[1], 64)
	}
	if m = connRe.FindStringSubmatch(out); m != nil {
		s.ConnMs, _ = strconv.ParseFloat(m[1], 64)
	}
	return s, nil
}

// readLatencies reads every per-transaction log in dir ("client_id transaction_no time ...",
// time in microseconds, or "failed"/"skipped") and returns the latency percentiles.
func readLatencies(dir string) (latencyStats, error) {
	files, err := filepath.Glob(filepath.Join(dir, "tx.*"))
	if err != nil {
		return latencyStats{}, err
	}
	if len(files) == 0 {
		return latencyStats{}, fmt.Errorf("no log files in %s", dir)
	}
	var micros []int64
	var st latencyStats
	for _, name := range files {
		failed, err := readLog(name, &micros)
		if err != nil {
			return latencyStats{}, err
		}
		st.Failed += failed
	}
	slices.Sort(micros)
	st.Count = len(micros)
	st.P50 = float64(percentile(micros, 50)) / 1000
	st.P95 = float64(percentile(micros, 95)) / 1000
	st.P99 = float64(percentile(micros, 99)) / 1000
	return st, nil
}

// readLog appends the latencies of one log file to micros and returns the number of lines
// without one.
func readLog(name string, micros *[]int64) (failed int, err error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			return failed, fmt.Errorf("%s:%d: malformed line %q", name, line, sc.Text())
		}
		us, err := strconv.ParseInt(fields[2], 10, 64)
		if err != nil {
			failed++ // "failed", "skipped", "serialization", "deadlock"
			continue
		}
		*micros = append(*micros, us)
	}
	return failed, sc.Err()
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of sorted values, or 0 when
// there are none.
func percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// clientEnv is the environment of pgbench and psql: ours without PG* variables, so that only
// the URL decides where they connect and how.
func clientEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

// clearDir removes the files in dir and keeps dir.
func clearDir(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// findPGTool returns a PostgreSQL client program from the newest /usr/lib/postgresql/*/bin, else
// from $PATH.
func findPGTool(name string) (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { // newest first, numerically
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found in /usr/lib/postgresql/*/bin or on $PATH: %w", name, err)
	}
	return p, nil
}
