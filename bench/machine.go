package main

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// machineInfo describes where the benchmark ran, for the report's header.
type machineInfo struct {
	Date      string
	CPUs      int
	CPUModel  string
	Kernel    string
	GoVersion string
	Postgres  string // server_version, filled in once the server runs
	PgBouncer string // first line of pgbouncer --version
	Pgbench   string // pgbench --version
	Cmpool    string // git commit of the module
	LoadStart string // /proc/loadavg's first three fields when the benchmark started
	LoadEnd   string // the same when it ended
	// Autogroup is /proc/sys/kernel/sched_autogroup_enabled ("1": each session is a CPU
	// scheduling group), "" when unknown.
	Autogroup string
}

// loadAverage returns the 1, 5 and 15 minute load averages from /proc/loadavg.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// readMachine gathers the machine's description.
func readMachine(ctx context.Context, pgbouncer, pgbench, root string) machineInfo {
	m := machineInfo{
		Date:      formatDate(time.Now()),
		CPUs:      runtime.NumCPU(),
		CPUModel:  "unknown model",
		Kernel:    "unknown",
		GoVersion: runtime.Version(),
		PgBouncer: pgbouncerVersion(ctx, pgbouncer),
		Pgbench:   toolVersion(ctx, pgbench),
		Cmpool:    gitCommit(ctx, root),
		LoadStart: loadAverage(),
	}
	if data, err := os.ReadFile("/proc/sys/kernel/sched_autogroup_enabled"); err == nil {
		m.Autogroup = strings.TrimSpace(string(data))
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// toolVersion returns what `TOOL --version` prints after "(PostgreSQL) ", such as
// "15.18 (Debian 15.18-0+deb12u1)".
func toolVersion(ctx context.Context, bin string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "unknown"
	}
	v := strings.TrimSpace(string(out))
	if _, after, ok := strings.Cut(v, "(PostgreSQL) "); ok {
		return after
	}
	return v
}
