// Command pgxsuite runs pgx's own test suite through cmpool and reports the results.
//
// It starts a throwaway PostgreSQL primary (and replicas with -replicas) with the
// integration harness, prepares the pgx_test database the way pgx's CONTRIBUTING.md asks,
// copies the pgx module from the Go module cache to a temporary directory (the cache is
// read-only), and for each pool mode serves cmpool in front of the primary and runs
// `go test -json` on pgx's packages with PGX_TEST_DATABASE pointing at cmpool.
//
//	go run ./integration/pgxsuite                       # session and transaction mode
//	go run ./integration/pgxsuite -modes transaction -run 'TestConnCopyFrom'
//
// It prints, per mode and package, the number of tests (top-level and subtests) that
// passed, failed and were skipped, then every failure with the end of its output. The
// full test2json streams are kept in -out. The exit code is 0 even when tests fail: the
// failures are the report. See docs/compatibility.md.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// setupSQL is pgx's testsetup/postgresql_setup.sql without its psql meta-commands.
const setupSQL = `
create extension if not exists hstore;
create extension if not exists ltree;
create domain uint64 as numeric(20,0);
create user pgx_ssl with superuser password 'secret';
create user pgx_sslcert with superuser password 'secret';
set password_encryption = md5;
create user pgx_md5 with superuser password 'secret';
set password_encryption = 'scram-sha-256';
create user pgx_pw with superuser password 'secret';
create user pgx_scram with superuser password 'secret';
create user " tricky, ' } "" \\ test user " superuser password 'secret';
`

func main() {
	modes := flag.String("modes", "session,transaction", "comma-separated pool modes to run the suite in")
	pkgs := flag.String("pkgs", "./pgconn,.", "comma-separated pgx packages to test")
	run := flag.String("run", "", "go test -run pattern (empty runs everything)")
	replicas := flag.Int("replicas", 0, "streaming replicas behind cmpool (reads are routed to them)")
	out := flag.String("out", "", "directory for the test2json streams and cmpool's logs (default: a new temporary directory)")
	timeout := flag.Duration("timeout", 30*time.Minute, "go test -timeout per mode")
	// Tests that cannot fail cleanly in transaction mode, and would take the rest of the run
	// down with them: TestConnExecBatchImplicitTransaction's temporary table is gone by its
	// second statement and it indexes the empty result (a panic ends the package's run).
	skipTx := flag.String("skip-transaction", "", "go test -skip pattern for transaction and statement mode")
	flag.Parse()
	if err := runSuite(*modes, *pkgs, *run, *skipTx, *replicas, *out, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "pgxsuite:", err)
		os.Exit(1)
	}
}

func runSuite(modes, pkgs, run, skipTx string, replicas int, out string, timeout time.Duration) error {
	if out == "" {
		var err error
		if out, err = os.MkdirTemp("", "pgxsuite-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	src, version, err := pgxModule()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "pgxsuite-src-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	dir := filepath.Join(work, "pgx")
	if b, err := exec.Command("cp", "-r", src, dir).CombinedOutput(); err != nil {
		return fmt.Errorf("copy %s: %v: %s", src, err, b)
	}
	if b, err := exec.Command("chmod", "-R", "u+w", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("chmod: %v: %s", err, b)
	}
	fmt.Printf("pgx %s from %s\n", version, src)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster, err := integration.Start(ctx, integration.Options{Replicas: replicas, Logf: func(f string, a ...any) {
		fmt.Printf(f+"\n", a...)
	}})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	if err := prepareDatabase(ctx, cluster); err != nil {
		return err
	}

	for _, mode := range strings.Split(modes, ",") {
		m, err := pool.ParseMode(mode)
		if err != nil {
			return err
		}
		skip := ""
		if m != pool.ModeSession {
			skip = skipTx
		}
		if err := runMode(cluster, m, dir, strings.Split(pkgs, ","), run, skip, out, timeout); err != nil {
			return err
		}
	}
	fmt.Printf("\ntest2json streams and cmpool logs: %s\n", out)
	return nil
}

// pgxModule returns the directory and version of the pgx module this module requires.
func pgxModule() (dir, version string, err error) {
	b, err := exec.Command("go", "mod", "download", "-json", "github.com/jackc/pgx/v5").Output()
	if err != nil {
		return "", "", fmt.Errorf("go mod download github.com/jackc/pgx/v5: %w", err)
	}
	var m struct{ Dir, Version string }
	if err := json.Unmarshal(b, &m); err != nil {
		return "", "", err
	}
	return m.Dir, m.Version, nil
}

func prepareDatabase(ctx context.Context, c *integration.Cluster) error {
	admin, err := pgx.Connect(ctx, c.Primary.URL("postgres", ""))
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "create database pgx_test"); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, c.Primary.URL("pgx_test", ""))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, setupSQL, pgx.QueryExecModeSimpleProtocol); err != nil {
		return fmt.Errorf("set up pgx_test: %w", err)
	}
	return c.WaitReplication(ctx)
}

func runMode(c *integration.Cluster, mode pool.Mode, dir string, pkgs []string, run, skip, out string, timeout time.Duration) error {
	logFile, err := os.Create(filepath.Join(out, "cmpool-"+string(mode)+".log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	cfg := pool.Config{
		Primary:  c.Primary.URL("", ""),
		Replicas: c.ReplicaURLs(),
		PoolMode: mode,
		AuthType: pool.AuthTrust, // a throwaway cluster, served on loopback
		Logger:   slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	p, err := integration.ServeProxy(cfg)
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	}()

	url := p.URL("pgx_test", "")
	args := []string{"test", "-json", "-count=1", "-p=1", "-timeout=" + timeout.String()}
	if run != "" {
		args = append(args, "-run="+run)
	}
	if skip != "" {
		args = append(args, "-skip="+skip)
	}
	args = append(args, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GOWORK=off", "GOFLAGS=-mod=mod",
		"PGX_TEST_DATABASE="+url,
		"PGX_TEST_TCP_CONN_STRING="+url,
	)
	if mode == pool.ModeTransaction {
		// pgx's PgBouncer tests want a transaction pooler with protocol-level prepared
		// statements: that is cmpool in transaction mode.
		cmd.Env = append(cmd.Env, "PGX_TEST_PGBOUNCER_CONN_STRING="+url)
	}
	stream, err := os.Create(filepath.Join(out, "pgx-"+string(mode)+".json"))
	if err != nil {
		return err
	}
	defer stream.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	fmt.Printf("\n== %s mode: PGX_TEST_DATABASE=%s go %s\n", mode, url, strings.Join(args, " "))
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	res := parse(io.TeeReader(stdout, stream))
	waitErr := cmd.Wait()
	fmt.Printf("   %s\n", time.Since(start).Round(time.Second))
	if stderr.Len() > 0 {
		fmt.Printf("   go test stderr:\n%s\n", stderr.String())
	}
	res.print(mode)
	if waitErr != nil && !res.anyFailed() {
		return fmt.Errorf("go test: %w", waitErr)
	}
	return nil
}

type testKey struct{ pkg, test string }

type results struct {
	order  []testKey
	status map[testKey]string // pass, fail, skip
	output map[testKey][]string
}

type event struct {
	Action, Package, Test, Output string
}

func parse(r io.Reader) *results {
	res := &results{status: map[testKey]string{}, output: map[testKey][]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		k := testKey{e.Package, e.Test}
		switch e.Action {
		case "output":
			res.output[k] = append(res.output[k], e.Output)
		case "pass", "fail", "skip":
			if e.Test == "" {
				res.status[k] = e.Action
				continue
			}
			if _, seen := res.status[k]; !seen {
				res.order = append(res.order, k)
			}
			res.status[k] = e.Action
		}
	}
	return res
}

func (r *results) anyFailed() bool {
	for _, s := range r.status {
		if s == "fail" {
			return true
		}
	}
	return false
}

func (r *results) print(mode pool.Mode) {
	type counts struct{ pass, fail, skip, subPass, subFail, subSkip int }
	byPkg := map[string]*counts{}
	var pkgs []string
	for _, k := range r.order {
		c := byPkg[k.pkg]
		if c == nil {
			c = &counts{}
			byPkg[k.pkg] = c
			pkgs = append(pkgs, k.pkg)
		}
		sub := strings.Contains(k.test, "/")
		switch r.status[k] {
		case "pass":
			if sub {
				c.subPass++
			} else {
				c.pass++
			}
		case "fail":
			if sub {
				c.subFail++
			} else {
				c.fail++
			}
		case "skip":
			if sub {
				c.subSkip++
			} else {
				c.skip++
			}
		}
	}
	for pkg, s := range r.status {
		if pkg.test == "" && s == "fail" && byPkg[pkg.pkg] == nil {
			pkgs = append(pkgs, pkg.pkg)
			byPkg[pkg.pkg] = &counts{}
		}
	}
	slices.Sort(pkgs)
	fmt.Printf("   %-40s %6s %6s %6s   subtests: %6s %6s %6s\n", "package", "pass", "fail", "skip", "pass", "fail", "skip")
	for _, pkg := range pkgs {
		c := byPkg[pkg]
		fmt.Printf("   %-40s %6d %6d %6d             %6d %6d %6d   (package: %s)\n", pkg, c.pass, c.fail, c.skip, c.subPass, c.subFail, c.subSkip, r.status[testKey{pkg, ""}])
	}
	for _, k := range r.order {
		if r.status[k] != "fail" {
			continue
		}
		// A parent fails when a subtest does; show the subtest only.
		if slices.ContainsFunc(r.order, func(o testKey) bool {
			return o.pkg == k.pkg && strings.HasPrefix(o.test, k.test+"/") && r.status[o] == "fail"
		}) {
			continue
		}
		fmt.Printf("\n--- FAIL [%s] %s %s\n", mode, k.pkg, k.test)
		lines := r.output[k]
		if len(lines) > 25 {
			lines = lines[len(lines)-25:]
		}
		for _, l := range lines {
			fmt.Print("      " + l)
		}
	}
	for pkg, s := range r.status {
		if pkg.test == "" && s == "fail" {
			lines := r.output[pkg]
			if len(lines) > 15 {
				lines = lines[len(lines)-15:]
			}
			fmt.Printf("\n--- package %s output tail:\n", pkg.pkg)
			for _, l := range lines {
				fmt.Print("      " + l)
			}
		}
	}
}
