// Command rywload measures read-your-writes through cmpool under a workload shaped like an
// application with a connection pool (an ORM such as Prisma): -tasks goroutines share a
// pgxpool of -conns connections through cmpool, and each writes a row and at once reads it
// back on whatever connection the pool gives it. The replica replays each commit -delay
// after the primary made it (recovery_min_apply_delay).
//
//	go run ./bench/rywload                         # every consistency mode, 50 tasks, 20 connections
//	go run ./bench/rywload -modes user,global -pairs 50 -sync off
//
// It starts a throwaway primary and one streaming replica with the integration harness,
// then, for each consistency mode in turn, an in-process cmpool with the replica, and prints
// one line per mode: reads, stale reads (the row not found), the replica's share of the
// reads, the reads' p50 and p99 latency as the task saw it (the wait for a pool connection
// included), and cmpool's counters. Everything it starts is stopped on exit.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

func main() {
	modes := flag.String("modes", "user,origin,session,global", "consistency modes to measure, in order")
	tasks := flag.Int("tasks", 50, "concurrent tasks")
	conns := flag.Int("conns", 20, "connections in the application's pool")
	pairs := flag.Int("pairs", 20, "write+read pairs per task")
	delay := flag.Duration("delay", 50*time.Millisecond, "the replica's recovery_min_apply_delay")
	sync := flag.String("sync", "on", "synchronous_commit on the primary")
	rwWait := flag.Duration("rw-wait", 0, "cmpool's rw_wait (0: its default, 50ms)")
	flag.Parse()
	if err := run(strings.Split(*modes, ","), *tasks, *conns, *pairs, *delay, *sync, *rwWait); err != nil {
		fmt.Fprintln(os.Stderr, "rywload:", err)
		os.Exit(1)
	}
}

func run(modes []string, tasks, conns, pairs int, delay time.Duration, sync string, rwWait time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	c, err := integration.Start(ctx, integration.Options{Replicas: 1, Settings: map[string]string{
		"synchronous_commit": sync, "recovery_min_apply_delay": fmt.Sprintf("%dms", delay.Milliseconds())}})
	if err != nil {
		return err
	}
	defer c.Stop()
	const table = "rywload"
	if err := integration.PrepareRYWLoad(ctx, c.Primary.URL("", ""), table); err != nil {
		return err
	}
	if err := c.WaitReplication(ctx); err != nil {
		return err
	}
	fmt.Printf("%d tasks, %d connections, %d pairs each; replica %v behind; synchronous_commit = %s\n\n",
		tasks, conns, pairs, delay, sync)
	fmt.Println("| consistency | reads | stale | replica share | read p50 | read p99 | waited | primary at once |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, mode := range modes {
		if err := measure(ctx, c, mode, tasks, conns, pairs, rwWait, table); err != nil {
			return fmt.Errorf("%s: %w", mode, err)
		}
	}
	return nil
}

func measure(ctx context.Context, c *integration.Cluster, mode string, tasks, conns, pairs int, rwWait time.Duration, table string) error {
	p, err := integration.ServeProxy(pool.Config{Primary: c.Primary.URL("", ""), Replicas: c.ReplicaURLs(),
		ReplicaCheckInterval: 100 * time.Millisecond, Consistency: mode, DefaultPoolSize: conns, RWWait: rwWait})
	if err != nil {
		return err
	}
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = p.Close(sctx)
	}()
	if err := waitReplica(ctx, p.URL("", "")); err != nil {
		return err
	}
	before := p.Server.Stat()
	res, err := integration.RYWLoad{URL: p.URL("", ""), Table: table, Tasks: tasks, Conns: conns, Pairs: pairs}.Run(ctx)
	if err != nil {
		return err
	}
	st := p.Server.Stat()
	fmt.Printf("| %s | %d | %d | %.1f%% | %v | %v | %d | %d |\n", mode, res.Reads, res.Stale, 100*res.ReplicaShare(),
		res.ReadP50.Round(100*time.Microsecond), res.ReadP99.Round(100*time.Microsecond),
		st.ReadWaits-before.ReadWaits, st.ReadsNotWaited-before.ReadsNotWaited)
	return nil
}

// waitReplica waits until a read through cmpool at url reaches the replica.
func waitReplica(ctx context.Context, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		conn, err := pgx.Connect(ctx, url)
		if err == nil {
			var inRecovery bool
			err = conn.QueryRow(ctx, "select pg_is_in_recovery()", pgx.QueryExecModeSimpleProtocol).Scan(&inRecovery)
			_ = conn.Close(ctx)
			if err == nil && inRecovery {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("reads never reached the replica")
}
