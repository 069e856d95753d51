// Command cmpool is a PostgreSQL connection pooler that sends reads to streaming replicas.
//
// Usage:
//
//	cmpool [serve] [flags]   run the proxy
//	cmpool [flags] FILE      run the proxy on a config file (TOML or pgbouncer.ini)
//	cmpool demo [flags]      run the proxy in front of a throwaway primary and replica
//	cmpool version           print the version
//	cmpool help              print the usage
//
// Every flag has an environment twin; flags win over the environment, which wins over the
// config file named by --config: TOML, or a PgBouncer pgbouncer.ini. Run "cmpool help" for
// the list.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/cmlite/cmpool/pool"
)

// version is stamped at build time with -ldflags "-X main.version=..." (stamping
// github.com/cmlite/cmpool/pool.Version works too). It must stay without an initializer: -X
// does nothing to a variable initialized from another one. init hands it to pool.Version,
// which SHOW VERSION reports.
var version string

func init() {
	if version != "" {
		pool.Version = version
	}
	version = pool.Version
}

// The binary serves no profiles, so Go's heap-profile sampling would only cost memory: its
// records grow with the allocation sites it sees, about 1.5 MB more under a burst of
// logins. The pool package leaves the rate to the program that embeds it.
func init() { runtime.MemProfileRate = 0 }

func main() {
	// Buffered for two: the first signal starts a graceful shutdown, the second cuts it short.
	// SIGHUP reloads the configuration, as in PgBouncer.
	sigs := make(chan os.Signal, 4)
	// SIGUSR1 and SIGUSR2 pause and resume, and SIGQUIT shuts down at once, as in PgBouncer.
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, sigs))
}

// run runs the subcommand in args and returns the process exit code.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer, sigs <-chan os.Signal) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve", "demo":
	case "version":
		fmt.Fprintf(stdout, "cmpool %s\n", version)
		return 0
	case "help":
		printUsage(stdout)
		return 0
	default:
		if !isConfigFile(cmd) {
			fmt.Fprintf(stderr, "cmpool: unknown command %q\nRun 'cmpool help' for usage.\n", cmd)
			return 2
		}
		// "cmpool pgbouncer.ini", as PgBouncer is started.
		cmd, args = "serve", append(args, cmd)
	}
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-version") {
		fmt.Fprintf(stdout, "cmpool %s\n", version)
		return 0
	}

	s, err := loadConfig(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "cmpool: %v\nRun 'cmpool help' for usage.\n", err)
		return 2
	}
	var lf *logFile
	if s.LogFile != "" {
		if lf, err = openLogFile(s.LogFile); err != nil {
			fmt.Fprintf(stderr, "cmpool: %v\n", err)
			return 1
		}
		defer lf.Close()
	}
	if s.Quiet {
		stderr = io.Discard
	}
	logger := newLogger(logWriter(stderr, lf), s.LogLevel, s.LogFormat)
	if s.Workers > 0 {
		runtime.GOMAXPROCS(s.Workers) // before anything starts; a reload does not change it
		logger.Info("Go code runs on a set number of threads", "workers", s.Workers)
	}
	if path := getenv("CMPOOL_CPUPROFILE"); path != "" {
		stop, err := startCPUProfile(path)
		if err != nil {
			logger.Error("cannot start", "error", err)
			return 1
		}
		defer stop()
		logger.Info("writing a CPU profile until the process stops", "path", path)
	}
	if cmd == "demo" {
		return runDemo(s, logger, stdout, sigs)
	}
	if s.PidFile != "" {
		remove, err := writePidFile(s.PidFile)
		if err != nil {
			logger.Error("cannot start", "error", err)
			return 1
		}
		defer remove()
	}
	reload := func() (settings, error) { return loadConfig(args, getenv) }
	return runServe(s, reload, logger, lf, sigs)
}

// startCPUProfile profiles the process's CPU into a new file at path, until stop is called
// (when run returns, after a shutdown): what an operator can send with a performance
// report, and what a profile-guided build takes (go build -pgo; docs/operations.md#profiling).
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("CMPOOL_CPUPROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("CMPOOL_CPUPROFILE: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// printUsage writes the help text, with every flag, its environment twin and its default.
func printUsage(w io.Writer) {
	fmt.Fprint(w, `cmpool: a PostgreSQL connection pooler that sends reads to streaming replicas.

Usage:
  cmpool [serve] [flags]   run the proxy
  cmpool demo [flags]      start a throwaway local primary and replica and serve in front of them
                           (--primary, --replica and their environment twins are ignored)
  cmpool version           print the version
  cmpool help              print this help

Flags (environment variable in brackets; flags win over the environment, which wins over
the --config file):
`)
	def := defaultSettings()
	defaults := map[string]string{}
	newFlagSet(&def).VisitAll(func(f *flag.Flag) {
		defaults[f.Name] = strings.ToLower(f.DefValue) // "INFO" reads better as "info"
	})
	for _, o := range options {
		fmt.Fprintf(w, "  --%s %s  [%s]\n", o.flag, o.arg, o.env)
		line := "        " + o.usage
		if d := defaults[o.flag]; d != "" {
			line += fmt.Sprintf(" (default %s)", d)
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprint(w, `
The TOML file takes the same names in snake_case (listen, primary, replicas, pool_mode,
default_pool_size, max_client_conn, metrics_listen, auth_file, log_level, so_reuseport,
peer_id, peer_listen), PgBouncer's min_pool_size, server_idle_timeout, server_lifetime,
server_connect_timeout, query_wait_timeout, query_timeout, client_login_timeout,
server_reset_query, max_packet_size and max_prepared_statements; for routing to replicas
balance, max_replica_lag_bytes, max_replica_lag, replica_check_interval, replica_ban_time,
consistency and rw_wait; [databases.NAME] sections with url, dbname, user, password,
pool_size, pool_mode and route; and a [peers] section mapping peer ids to "host:port".
Durations are Go durations ("2s", "500ms") or a bare number of seconds.

The config file may be a PgBouncer pgbouncer.ini instead (a name ending in .ini, or a
[pgbouncer] section), also given as the last argument: cmpool /etc/pgbouncer/pgbouncer.ini.
The PgBouncer images' variables work too (DATABASES_HOST, DATABASES_PORT, DATABASES_USER,
DATABASES_PASSWORD, DATABASES_DBNAME, LISTEN_ADDR, LISTEN_PORT, AUTH_TYPE, AUTH_FILE,
ADMIN_USERS, STATS_USERS, PGBOUNCER_<KEY>, and REPLICA_URL to add a replica); they come
after the file and before cmpool's own variables. See docs/migrating-from-pgbouncer.md.
Signals: SIGHUP reloads, SIGTERM drains, SIGINT and SIGQUIT stop at once, SIGUSR1 pauses
and SIGUSR2 resumes.
`)
}
