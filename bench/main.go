// Command bench runs pgbench side by side against PostgreSQL directly, through PgBouncer and
// through cmpool on this machine, and writes a markdown report and a PNG chart.
//
//	go run ./bench                      # the full benchmark (about 13 minutes on 2 cores)
//	go run ./bench -quick               # a one-minute smoke run
//	go run ./bench -workloads select -clients 20,200 -duration 5s -rounds 1 -idle 0
//	go run ./bench -backend fake        # the proxies' own cost, in front of a fake server
//	go run ./bench -sessions=false      # both proxies in the benchmark's CPU scheduling group, with pgbench
//
// It starts a throwaway primary and a streaming replica with the integration harness, fills
// database bench with pgbench -i, starts PgBouncer and a freshly built cmpool binary as
// separate processes (both in transaction mode with 20 server connections per server), and
// runs every workload and client count against the three targets in turn, round after round,
// so that the machine's noise hits all three alike. cmpool is given the replica and routes
// reads to it unless -route=false. Then it holds -idle idle client connections open against
// each proxy and reports the proxy's RSS per client, and with -profile it profiles an
// in-process cmpool under pgbench -S. With -backend fake the proxies are in front of
// fakePostgres instead, which answers every statement at once: what is measured is then the
// proxies alone. Everything it starts is stopped on exit and on Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Targets, in the order of the first round; later rounds rotate it.
const (
	targetDirect    = "direct"
	targetPgbouncer = "pgbouncer"
	targetCmpool    = "cmpool"
)

var targetNames = []string{targetDirect, targetPgbouncer, targetCmpool}

// config is what the flags set.
type config struct {
	clients   []int         // pgbench -c values
	duration  time.Duration // pgbench -T of each run
	rounds    int           // repetitions of every workload × clients × target run
	workloads []string      // keys of workloads
	scale     int           // pgbench -i -s
	jobs      int           // pgbench -j
	warmup    time.Duration // select-only run per target before the first round; 0 means none
	route     bool          // give cmpool the replica, so that it routes reads to it
	fake      bool          // -backend fake: the proxies in front of fakePostgres, not PostgreSQL
	directMax int           // most clients run directly against PostgreSQL; larger counts are not run direct
	idle      int           // idle client connections held open against each proxy; 0 means no idle test
	sessions  bool          // start each proxy in a session, and so a CPU scheduling group, of its own
	cmpoolCfg string        // a cmpool TOML file the cmpool target reads (--config); "" means none
	profile   string        // directory for cmpool's CPU and allocation profiles; "" means no profiling
	profileWL string        // the workload profiled
	out       string        // markdown report file
	chart     string        // PNG chart file; "" means none
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if cfg.profile != "" {
		runtime.MemProfileRate = profileMemRate // before anything worth profiling allocates
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, commandLine(os.Args[1:])); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}

// parseFlags parses the command-line arguments.
func parseFlags(args []string, output io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(output)
	clients := fs.String("clients", "20,200,1000", "pgbench client counts, comma-separated")
	workloadList := fs.String("workloads", strings.Join(workloadNames, ","), "comma-separated workloads: "+strings.Join(workloadNames, ", "))
	quick := fs.Bool("quick", false, "a one-minute run: -workloads select -clients 20 -rounds 1 -duration 5s -warmup 1s -idle 1000,\nunless those flags are given too")
	cfg := config{}
	fs.DurationVar(&cfg.duration, "duration", 6*time.Second, "pgbench run time (-T), rounded up to whole seconds")
	fs.IntVar(&cfg.rounds, "rounds", 3, "rounds; each runs every workload and client count against every target")
	fs.IntVar(&cfg.scale, "scale", 10, "pgbench scale factor (-i -s)")
	fs.IntVar(&cfg.jobs, "jobs", 2, "pgbench threads (-j)")
	fs.DurationVar(&cfg.warmup, "warmup", 3*time.Second, "select-only warm-up run per target before the first round; 0 disables")
	fs.IntVar(&cfg.directMax, "direct-max-clients", 200, "most pgbench clients to run directly against PostgreSQL; direct runs with more are skipped and reported n/a")
	backend := fs.String("backend", "postgres", "what the proxies are in front of: postgres (a real primary and replica), or fake (a server that answers\nevery statement at once, so that the proxies' own cost is measured; it implies -route=false)")
	fs.BoolVar(&cfg.route, "route", true, "give cmpool the replica (--replica), so that it routes reads to it; false points it at the primary only, like PgBouncer")
	fs.BoolVar(&cfg.sessions, "sessions", true, "start each proxy in a session of its own (setsid), which with the kernel's autogroup scheduling\n(/proc/sys/kernel/sched_autogroup_enabled) is a CPU scheduling group of its own, as a service under systemd\nhas; with -sessions=false both proxies share the benchmark's, with pgbench")
	fs.StringVar(&cfg.cmpoolCfg, "cmpool-config", "", "a cmpool TOML file for the cmpool target (--config), such as one with workers = 1 and event_loops = 1;\nthe report prints its contents")
	fs.IntVar(&cfg.idle, "idle", 18000, "idle client connections to hold open against each proxy for the RSS-per-client measurement; 0 disables")
	fs.StringVar(&cfg.profile, "profile", "", "directory for CPU and allocation profiles of an in-process cmpool under pgbench with 20 clients; empty disables")
	fs.StringVar(&cfg.profileWL, "profile-workload", "select", "the workload -profile runs: "+strings.Join(workloadNames, ", "))
	fs.StringVar(&cfg.out, "out", "docs/benchmarks/README.md", "markdown report file")
	fs.StringVar(&cfg.chart, "chart", "docs/benchmarks/tps.png", "PNG chart of TPS by client count; empty disables")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quickDefaults := map[string]string{"workloads": "select", "clients": "20", "rounds": "1", "duration": "5s", "warmup": "1s", "idle": "1000"}
		for name, value := range quickDefaults {
			if !set[name] {
				if err := fs.Set(name, value); err != nil {
					return config{}, err
				}
			}
		}
	}
	switch *backend {
	case "postgres":
	case "fake":
		cfg.fake, cfg.route = true, false
	default:
		return config{}, fmt.Errorf("-backend: %q is neither postgres nor fake", *backend)
	}
	for _, s := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > maxConnections-50 {
			return config{}, fmt.Errorf("-clients: %q is not a client count between 1 and %d", s, maxConnections-50)
		}
		cfg.clients = append(cfg.clients, n)
	}
	for _, w := range strings.Split(*workloadList, ",") {
		w = strings.TrimSpace(w)
		if _, ok := workloads[w]; !ok {
			return config{}, fmt.Errorf("-workloads: unknown workload %q (want %s)", w, strings.Join(workloadNames, ", "))
		}
		cfg.workloads = append(cfg.workloads, w)
	}
	if _, ok := workloads[cfg.profileWL]; !ok {
		return config{}, fmt.Errorf("-profile-workload: unknown workload %q (want %s)", cfg.profileWL, strings.Join(workloadNames, ", "))
	}
	switch {
	case cfg.duration < time.Second:
		return config{}, errors.New("-duration must be at least 1s")
	case cfg.rounds < 1:
		return config{}, errors.New("-rounds must be at least 1")
	case cfg.scale < 1:
		return config{}, errors.New("-scale must be at least 1")
	case cfg.jobs < 1:
		return config{}, errors.New("-jobs must be at least 1")
	case cfg.warmup < 0:
		return config{}, errors.New("-warmup must not be negative")
	case cfg.directMax < 1:
		return config{}, errors.New("-direct-max-clients must be at least 1")
	case cfg.idle < 0:
		return config{}, errors.New("-idle must not be negative")
	case cfg.idle > maxIdle:
		return config{}, fmt.Errorf("-idle must be at most %d (the proxies' max_client_conn, less pgbench's clients)", maxIdle)
	case cfg.out == "":
		return config{}, errors.New("-out must name a file")
	}
	return cfg, nil
}

// runs reports whether target t is run with clients pgbench clients.
func (cfg config) runs(t string, clients int) bool {
	return t != targetDirect || cfg.fake || clients <= cfg.directMax
}

// commandLine renders the invocation for the report.
func commandLine(args []string) string {
	parts := []string{"go", "run", "./bench"}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'$\\") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// logf prints a progress line to stderr.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// run sets everything up, runs the benchmark, writes the report and tears everything down.
func run(ctx context.Context, cfg config, command string) (err error) {
	runs := cfg.rounds * len(cfg.workloads) * len(cfg.clients) * len(targetNames)
	budget := time.Duration(runs)*(cfg.duration+30*time.Second) + 3*(cfg.warmup+30*time.Second) + 20*time.Minute
	if cfg.profile != "" {
		budget += cfg.duration + 5*time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()

	// Our idle clients, pgbench's clients, and the proxies' ends of them: the children
	// inherit the limit.
	want := uint64(cfg.idle) + uint64(slices.Max(cfg.clients)) + 1000
	if got, err := raiseFileLimit(want); err != nil {
		return fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", want, err)
	} else if got < want {
		return fmt.Errorf("-idle %d and -clients %d need %d open files; the hard limit allows %d", cfg.idle, slices.Max(cfg.clients), want, got)
	}
	pgbench, err := findPGTool("pgbench")
	if err != nil {
		return err
	}
	pgbouncer, err := findPgbouncer()
	if err != nil {
		return err
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "cmpool-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil { // PgBouncer may run as the postgres OS user
		return err
	}
	dirs := map[string]string{}
	for _, name := range []string{"bin", "pgbouncer", "cmpool", "txlog"} {
		dirs[name] = filepath.Join(tmp, name)
		if err := os.Mkdir(dirs[name], 0o755); err != nil {
			return err
		}
	}

	machine := readMachine(ctx, pgbouncer, pgbench, root)
	logf("building cmpool %s", machine.Cmpool)
	cmpool, err := buildCmpool(ctx, root, dirs["bin"])
	if err != nil {
		return err
	}
	var pgPort, replicaPort int
	var directURL string
	if cfg.fake {
		logf("starting the fake server")
		fake, err := startFakePostgres()
		if err != nil {
			return err
		}
		defer fake.stop()
		machine.Postgres = fakeVersion
		pgPort = fake.port()
		directURL = fakeURL(pgPort, "bench")
	} else {
		logf("starting postgres")
		cluster, version, err := startPostgres(ctx, pgbench, cfg.scale, logf)
		if cluster != nil {
			defer func() {
				logf("stopping postgres")
				if serr := cluster.Stop(); serr != nil {
					logf("stop postgres: %v", serr)
				}
			}()
		}
		if err != nil {
			return err
		}
		machine.Postgres = version
		pgPort = cluster.Primary.Port
		directURL = cluster.Primary.URL("bench", "")
		if cfg.route {
			replicaPort = cluster.Replicas[0].Port
		}
	}

	logf("starting pgbouncer")
	bouncer, err := startPgbouncer(ctx, pgbouncer, dirs["pgbouncer"], pgPort, cfg.sessions)
	if err != nil {
		return err
	}
	defer stopProxy(bouncer)
	logf("starting cmpool")
	pooler, err := startCmpool(ctx, cmpool, dirs["cmpool"], pgPort, replicaPort, cfg.sessions, cfg.cmpoolCfg)
	if err != nil {
		return err
	}
	defer stopProxy(pooler)

	b := &benchmark{
		cfg:     cfg,
		pgbench: pgbench,
		logDir:  dirs["txlog"],
		root:    root,
		admin:   directURL,
		urls: map[string]string{
			targetDirect:    directURL,
			targetPgbouncer: bouncer.url("bench"),
			targetCmpool:    pooler.url("bench"),
		},
		procs:            map[string]*proxyProcess{targetPgbouncer: bouncer, targetCmpool: pooler},
		pgbouncerVersion: machine.PgBouncer,
	}
	if err := b.runAll(ctx); err != nil {
		return err
	}
	rep := report{cfg: cfg, command: command, machine: machine, runs: b.results}

	if cfg.idle > 0 {
		// Each proxy is measured started afresh: memory the workloads left free in a proxy
		// would be reused by the idle clients and hide what they cost.
		stopProxy(bouncer)
		stopProxy(pooler)
		for _, fresh := range []struct {
			name  string
			start func() (*proxyProcess, error)
		}{
			{targetPgbouncer, func() (*proxyProcess, error) {
				return startPgbouncer(ctx, pgbouncer, dirs["pgbouncer"], pgPort, cfg.sessions)
			}},
			{targetCmpool, func() (*proxyProcess, error) {
				return startCmpool(ctx, cmpool, dirs["cmpool"], pgPort, replicaPort, cfg.sessions, cfg.cmpoolCfg)
			}},
		} {
			var res idleResult
			p, err := fresh.start()
			if err != nil {
				res = idleResult{Target: fresh.name, Err: fmt.Errorf("start afresh: %w", err)}
			} else {
				logf("idle: %d client connections to %s, started afresh", cfg.idle, p.name)
				res = measureIdle(ctx, p, cfg.idle, "postgres", "bench")
				stopProxy(p)
			}
			if res.Err != nil {
				logf("idle %s: FAILED: %v", res.Target, res.Err)
			} else {
				logf("idle %s: RSS %.1f MiB -> %.1f MiB, %.1f KiB per idle client", res.Target,
					float64(res.BaseRSS)/(1<<20), float64(res.HeldRSS)/(1<<20), res.PerClient/1024)
			}
			rep.idle = append(rep.idle, res)
			if ctx.Err() != nil {
				return fmt.Errorf("benchmark interrupted: %w", context.Cause(ctx))
			}
		}
	}
	if cfg.profile != "" {
		logf("profiling an in-process cmpool under pgbench %s -c %d", cfg.profileWL, profileClients)
		prof := profileCmpool(ctx, b, pgPort, replicaPort, cfg.profile, cfg.duration)
		if prof.Err != nil {
			logf("profile: FAILED: %v", prof.Err)
		} else {
			logf("profile: %.0f tps; profiles in %s", prof.Summary.TPS, prof.Dir)
		}
		rep.profile = &prof
	}
	rep.cmpoolLog = pooler.log()
	rep.machine.LoadEnd = loadAverage()

	if err := os.MkdirAll(filepath.Dir(cfg.out), 0o755); err != nil {
		return err
	}
	if cfg.chart != "" {
		if err := rep.writeChart(cfg.chart); err != nil {
			return fmt.Errorf("chart: %w", err)
		}
		logf("wrote %s", cfg.chart)
	}
	text := rep.markdown()
	fmt.Print(text)
	if err := os.WriteFile(cfg.out, []byte(text), 0o644); err != nil {
		return err
	}
	logf("wrote %s", cfg.out)
	for _, line := range rep.ratioLines() {
		logf("%s", line)
	}
	if n := rep.failures(); n > 0 {
		return fmt.Errorf("%d run(s) or measurement(s) failed; see the Failures section of %s", n, cfg.out)
	}
	return nil
}

// stopProxy stops a proxy on the way out and logs what went wrong.
func stopProxy(p *proxyProcess) {
	logf("stopping %s", p.name)
	if err := p.stop(); err != nil {
		logf("%v", err)
	}
}

// benchmark runs the pgbench runs and collects their results.
type benchmark struct {
	cfg     config
	pgbench string
	logDir  string
	root    string                   // module root, trimmed from source paths in the profile listings
	admin   string                   // URL of database bench on the primary, for resetTables
	urls    map[string]string        // target -> URL of database bench
	procs   map[string]*proxyProcess // target -> proxy; none for direct
	results []runResult

	pgbouncerVersion string // for knownLimitation
}

// runAll runs the warm-up, then every round. A failed pgbench run is recorded and the others
// go on; only a cancelled context or a broken setup stops it.
func (b *benchmark) runAll(ctx context.Context) error {
	if b.cfg.warmup > 0 {
		for _, t := range targetNames {
			if c := slices.Min(b.cfg.clients); b.cfg.runs(t, c) { // direct only up to -direct-max-clients
				b.runOne(ctx, 0, "select", c, t, b.cfg.warmup)
			}
		}
	}
	for round := 1; round <= b.cfg.rounds; round++ {
		for _, w := range b.cfg.workloads {
			for _, c := range b.cfg.clients {
				for i := range targetNames {
					t := targetNames[(i+round-1)%len(targetNames)]
					if !b.cfg.runs(t, c) {
						continue
					}
					if writes(w) {
						if err := resetTables(ctx, b.admin); err != nil {
							return fmt.Errorf("reset tables before %s: %w", w, err)
						}
					}
					b.runOne(ctx, round, w, c, t, b.cfg.duration)
					if ctx.Err() != nil {
						return fmt.Errorf("benchmark interrupted: %w", context.Cause(ctx))
					}
				}
			}
		}
	}
	return nil
}

// runOne runs pgbench once against target t and records the result; round 0 is the warm-up.
func (b *benchmark) runOne(ctx context.Context, round int, workload string, clients int, t string, d time.Duration) {
	res := runResult{Round: round, Workload: workload, Clients: clients, Target: t, CPUPerTx: math.NaN()}
	proc := b.procs[t]
	if proc != nil && proc.exited() {
		res.Err = fmt.Errorf("%s is not running (exited: %v)", t, proc.waitErr)
		res.Output = proc.logTail()
		b.record(res)
		return
	}
	var before int64
	if proc != nil {
		before, _ = proc.cpuTicks()
	}
	r := pgbenchRun{Bin: b.pgbench, URL: b.urls[t], Workload: workload, Clients: clients, Jobs: b.cfg.jobs,
		Duration: d + connectAllowance(t, clients), LogDir: b.logDir}
	sum, lat, output, err := r.run(ctx)
	res.Summary, res.Latency = sum, lat
	if proc != nil {
		after, cerr := proc.cpuTicks()
		if cerr == nil && err == nil && sum.Processed > 0 {
			res.CPUPerTx = float64(after-before) * (1e6 / clockTicks) / float64(sum.Processed)
		}
	}
	if err == nil {
		// pgbench reports a failed Prepare and goes on. Such a run completes only when every
		// server connection has kept the same statement from earlier runs: it is not a
		// working prepared mode.
		if why := knownLimitation(t, workload, b.pgbouncerVersion, output); why != "" {
			err = errors.New("pgbench completed, but reported prepared-statement errors: it ran on statements that earlier runs left on the server connections")
		}
	}
	if err != nil {
		res.Err = err
		res.Output = output
		res.Expected = knownLimitation(t, workload, b.pgbouncerVersion, output)
		if proc != nil {
			res.Output += proc.logTail()
		}
	}
	b.record(res)
}

// connectAllowance is added to pgbench's -T, which counts from before its clients connect.
// PostgreSQL forks a backend per connection: 1000 clients take it about 8 s to connect on 2
// busy cores, which would leave no time to measure. A proxy logs a client in without a
// fork. TPS is counted without the connection time either way.
func connectAllowance(target string, clients int) time.Duration {
	if target == targetDirect {
		return time.Duration(clients) * 10 * time.Millisecond
	}
	return time.Duration(clients) * time.Millisecond
}

// record keeps a result and logs it.
func (b *benchmark) record(res runResult) {
	b.results = append(b.results, res)
	name := fmt.Sprintf("round %d/%d", res.Round, b.cfg.rounds)
	if res.Round == 0 {
		name = "warm-up"
	}
	if res.Err != nil && res.Expected != "" {
		logf("%s %s c=%d %s: failed as expected: %s", name, res.Workload, res.Clients, res.Target, res.Expected)
		return
	}
	if res.Err != nil {
		logf("%s %s c=%d %s: FAILED: %v\n%s", name, res.Workload, res.Clients, res.Target, res.Err, indent(abbreviate(res.Output, 4000)))
		return
	}
	cpu := ""
	if !math.IsNaN(res.CPUPerTx) {
		cpu = fmt.Sprintf(", proxy %.1f µs/tx", res.CPUPerTx)
	}
	logf("%s %s c=%d %s: %.0f tps, p50 %.2f ms, p99 %.2f ms%s", name, res.Workload, res.Clients, res.Target,
		res.Summary.TPS, res.Latency.P50, res.Latency.P99, cpu)
}

func indent(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
