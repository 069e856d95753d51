package integration_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// The driver matrix: real client libraries run a small workload through cmpool in
// transaction mode with routing on. Each workload is a program under drivers/ that takes the
// proxy's URL and an empty table (id int primary key, note text), and prints
// "DRIVER-OK <name>" last. The workloads: connect; an autocommit read that must land on the
// replica; a simple and a parameterised query; a statement reused 10 times (inserting ids
// 1..10, then counting them back); a rolled-back transaction (id 1000 must not exist
// afterwards); 1/0 failing with 22012, inside and outside a transaction, with the
// connection still usable; and COPY in and out (ids 2001..2100) where the driver has it.
//
// A missing driver or runtime skips its subtest, or fails it when CI=true (.ci/run installs
// them).

const (
	systemPython = "/usr/bin/python3" // Debian's python3-psycopg2 serves this interpreter only
	pgJDBCJar    = "/usr/share/java/postgresql.jar"
)

type driverCase struct {
	name   string
	table  string
	copies bool // the workload COPYs ids 2001..2100 into its table
	// cmd returns the workload's command for the proxy and the table; it skips or fails
	// t when the driver is not installed.
	cmd func(t *testing.T, p *integration.Proxy, table string) *exec.Cmd
}

func TestDrivers(t *testing.T) {
	// Per connection: each driver's first reads must reach the replica right after the
	// writes of the driver before it.
	c, p := routedProxy(t, pool.Config{Consistency: "session"})
	jdbcDir := t.TempDir()
	var jdbcOnce sync.Once
	var jdbcOut string
	var jdbcErr error
	// Prisma 7 over @prisma/adapter-pg: npm ci and prisma generate once. generate wants a
	// schema engine it does not use for generation; any file stands in for it, so that it
	// downloads nothing.
	var prismaOnce sync.Once
	var prismaErr error
	prisma := func(mode string) func(t *testing.T, p *integration.Proxy, table string) *exec.Cmd {
		return func(t *testing.T, p *integration.Proxy, table string) *exec.Cmd {
			node, err := exec.LookPath("node")
			driverNeeds(t, err, "node")
			npm, err := exec.LookPath("npm")
			driverNeeds(t, err, "npm")
			dir := filepath.Join("drivers", "prisma")
			prismaOnce.Do(func() {
				if _, err := os.Stat(filepath.Join(dir, "node_modules", "prisma")); err != nil {
					npmCI := exec.Command(npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts")
					npmCI.Dir = dir
					if out, err := npmCI.CombinedOutput(); err != nil {
						prismaErr = fmt.Errorf("npm ci in %s: %w: %s", dir, err, out)
						return
					}
				}
				standIn := filepath.Join(t.TempDir(), "no-schema-engine")
				if prismaErr = os.WriteFile(standIn, nil, 0o755); prismaErr != nil {
					return
				}
				generate := exec.Command(node, filepath.Join("node_modules", "prisma", "build", "index.js"), "generate", "--schema", "schema.prisma")
				generate.Dir = dir
				generate.Env = append(os.Environ(), "PRISMA_SCHEMA_ENGINE_BINARY="+standIn,
					"PRISMA_HIDE_UPDATE_MESSAGE=1", "CHECKPOINT_DISABLE=1")
				if out, err := generate.CombinedOutput(); err != nil {
					prismaErr = fmt.Errorf("prisma generate: %w: %s", err, out)
				}
			})
			require.NoError(t, prismaErr)
			args := []string{"workload.js", p.URL("", ""), table}
			if mode != "" {
				args = append(args, mode)
			}
			cmd := exec.Command(node, args...)
			cmd.Dir = dir
			return cmd
		}
	}
	jdbc := func(threshold int) func(t *testing.T, p *integration.Proxy, table string) *exec.Cmd {
		return func(t *testing.T, p *integration.Proxy, table string) *exec.Cmd {
			_, statErr := os.Stat(pgJDBCJar)
			driverNeeds(t, statErr, "PgJDBC (Debian libpostgresql-jdbc-java)")
			javac, err := exec.LookPath("javac")
			driverNeeds(t, err, "javac (Debian default-jdk-headless)")
			java, err := exec.LookPath("java")
			driverNeeds(t, err, "java")
			jdbcOnce.Do(func() {
				src, err := filepath.Abs(filepath.Join("drivers", "jdbc", "Workload.java"))
				if err != nil {
					jdbcErr = err
					return
				}
				out, err := exec.Command(javac, "-cp", pgJDBCJar, "-d", jdbcDir, src).CombinedOutput()
				jdbcOut, jdbcErr = string(out), err
			})
			require.NoError(t, jdbcErr, "javac Workload.java: %s", jdbcOut)
			url := fmt.Sprintf("jdbc:postgresql://%s/postgres?user=postgres&sslmode=disable", p.Addr)
			if threshold != 5 { // 5 is PgJDBC's default: leave it implicit
				url += fmt.Sprintf("&prepareThreshold=%d", threshold)
			}
			return exec.Command(java, "-cp", jdbcDir+string(os.PathListSeparator)+pgJDBCJar,
				"Workload", url, table, fmt.Sprintf("jdbc-prepareThreshold=%d", threshold))
		}
	}

	cases := []driverCase{
		{name: "psycopg2", table: "drv_psycopg2", copies: true,
			cmd: func(t *testing.T, p *integration.Proxy, table string) *exec.Cmd {
				return psycopg2Command(t, "psycopg2_workload.py", p.URL("", ""), table)
			}},
		{name: "node-pg", table: "drv_node_pg",
			cmd: func(t *testing.T, p *integration.Proxy, table string) *exec.Cmd {
				return nodePgCommand(t, "workload.js", p.URL("", ""), table)
			}},
		{name: "prisma", table: "drv_prisma", cmd: prisma("")},
		{name: "prisma-named", table: "drv_prisma_named", cmd: prisma("named")},
		{name: "jdbc-prepareThreshold=5", table: "drv_jdbc_t5", copies: true, cmd: jdbc(5)},
		{name: "jdbc-prepareThreshold=1", table: "drv_jdbc_t1", copies: true, cmd: jdbc(1)},
	}

	for _, dc := range cases {
		t.Run(dc.name, func(t *testing.T) {
			t.Parallel()
			cmd := dc.cmd(t, p, dc.table)

			ctx := ctxT(t, 3*time.Minute)
			admin := direct(t, c)
			_, err := admin.Exec(ctx, fmt.Sprintf("drop table if exists %[1]s; create table %[1]s(id int primary key, note text)", dc.table))
			require.NoError(t, err)
			require.NoError(t, c.WaitReplication(ctx))

			start := time.Now()
			out, err := runWithContext(ctx, cmd)
			t.Logf("%s workload: %s", dc.name, time.Since(start).Round(time.Millisecond))
			require.NoError(t, err, "%s workload failed:\n%s", dc.name, out)
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) > 1 {
				t.Logf("%s workload says: %s", dc.name, lines[len(lines)-2])
			}
			require.Equal(t, "DRIVER-OK "+dc.name, strings.TrimSpace(lines[len(lines)-1]), "output:\n%s", out)

			// What the workload left behind, seen on the primary directly.
			want := 10
			if dc.copies {
				want += 100
			}
			var n, rolledBack int
			require.NoError(t, admin.QueryRow(ctx, fmt.Sprintf(
				"select count(*), count(*) filter (where id = 1000) from %s", dc.table)).Scan(&n, &rolledBack))
			require.Equal(t, want, n, "rows in %s", dc.table)
			require.Zero(t, rolledBack, "the rolled-back row exists")
		})
	}
}

// psycopg2Command returns the command that runs the psycopg2 program drivers/script with
// args, or skips (fails in CI) t when psycopg2 is missing.
func psycopg2Command(t *testing.T, script string, args ...string) *exec.Cmd {
	out, err := exec.Command(systemPython, "-c", "import psycopg2").CombinedOutput()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, out)
	}
	driverNeeds(t, err, "psycopg2 for "+systemPython+" (Debian python3-psycopg2)")
	return exec.Command(systemPython, append([]string{filepath.Join("drivers", script)}, args...)...)
}

// nodePgCommand returns the command that runs the node-postgres program drivers/node/script
// with args, installing pg from the lock file first if needed; it skips (fails in CI) t
// when node or npm is missing.
func nodePgCommand(t *testing.T, script string, args ...string) *exec.Cmd {
	node, err := exec.LookPath("node")
	driverNeeds(t, err, "node")
	npm, err := exec.LookPath("npm")
	driverNeeds(t, err, "npm")
	dir := filepath.Join("drivers", "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "pg")); err != nil {
		npmCI := exec.Command(npm, "ci", "--no-audit", "--no-fund")
		npmCI.Dir = dir
		out, err := npmCI.CombinedOutput()
		require.NoError(t, err, "npm ci in %s: %s", dir, out)
	}
	cmd := exec.Command(node, append([]string{script}, args...)...)
	cmd.Dir = dir
	return cmd
}

// driverNeeds skips t when err says a driver or runtime is missing, or fails it in CI.
func driverNeeds(t *testing.T, err error, what string) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required in CI: %v", what, err)
	}
	t.Skipf("%s not installed: %v", what, err)
}

// runWithContext runs cmd, killing it when ctx ends, and returns its combined output.
func runWithContext(ctx context.Context, cmd *exec.Cmd) ([]byte, error) {
	var buf strings.Builder
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return []byte(buf.String()), err
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		return []byte(buf.String()), fmt.Errorf("%w (killed)", ctx.Err())
	}
}
