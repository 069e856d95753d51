package main

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cmlite/cmpool/integration"
)

// maxConnections is the servers' max_connections: enough for 1000 pgbench clients straight to
// the primary, next to the proxies' server connections and the replication connection.
const maxConnections = 1100

// startPostgres starts a primary and a streaming replica with the integration harness, creates
// database bench and fills it with pgbench -i at scale, and waits until the replica has
// replayed it. It returns the cluster, whose Stop the caller must call also on error, and the
// server version.
func startPostgres(ctx context.Context, pgbench string, scale int, logf func(string, ...any)) (*integration.Cluster, string, error) {
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	c, err := integration.Start(startCtx, integration.Options{
		Replicas: 1,
		Settings: map[string]string{"max_connections": strconv.Itoa(maxConnections)},
		Logf:     logf,
	})
	if err != nil {
		return nil, "", err
	}
	conn, err := connect(ctx, c.Primary.URL("postgres", ""))
	if err != nil {
		return c, "", err
	}
	defer conn.Close(context.Background())
	version := conn.ParameterStatus("server_version")
	if _, err := conn.Exec(ctx, "CREATE DATABASE bench").ReadAll(); err != nil {
		return c, version, fmt.Errorf("create database bench: %w", err)
	}

	logf("pgbench -i -q -s %d", scale)
	initCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(initCtx, pgbench, "-i", "-q", "-s", strconv.Itoa(scale), c.Primary.URL("bench", ""))
	cmd.Env = clientEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return c, version, fmt.Errorf("pgbench -i -s %d: %w\n%s", scale, err, strings.TrimSpace(string(out)))
	}
	if err := c.WaitReplication(initCtx); err != nil {
		return c, version, err
	}
	return c, version, nil
}

// resetTables does what pgbench does before a run without -n: it vacuums the small tables that
// TPC-B updates and empties pgbench_history, so that every run of a writing workload starts
// from the same state.
func resetTables(ctx context.Context, url string) error {
	conn, err := connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, sql := range []string{"VACUUM pgbench_branches", "VACUUM pgbench_tellers", "TRUNCATE pgbench_history"} {
		if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
	}
	return nil
}

// connect opens a connection, bounded to a few seconds.
func connect(ctx context.Context, url string) (*pgconn.PgConn, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return pgconn.Connect(ctx, url)
}
