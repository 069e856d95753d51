package integration

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// RYWLoad is a read-your-writes workload shaped like an application with a connection
// pool (an ORM such as Prisma): Tasks goroutines share a pgxpool of Conns connections,
// and each writes a row and at once reads it back on whatever connection the pool
// gives it. A read that does not find its row is stale.
type RYWLoad struct {
	// URL is where the pool connects (cmpool); Table is the table it writes, created
	// by Prepare.
	URL, Table string
	// Tasks, Conns and Pairs (write+read pairs per task). Zero means 50, 20 and 20.
	Tasks, Conns, Pairs int
	// Warmup pairs per task run first and are not counted: they open the connections
	// and prepare the statements. Zero means 2; negative means none.
	Warmup int
}

// RYWResult is what a RYWLoad run measured.
type RYWResult struct {
	Reads, Stale, OnReplica int
	// ReadP50 and ReadP99 are percentiles of the reads' latency, as the task saw it.
	ReadP50, ReadP99 time.Duration
	Elapsed          time.Duration // warmup included
}

// ReplicaShare is the part of the reads a replica served.
func (r RYWResult) ReplicaShare() float64 {
	if r.Reads == 0 {
		return 0
	}
	return float64(r.OnReplica) / float64(r.Reads)
}

func (r RYWResult) String() string {
	return fmt.Sprintf("reads %d, stale %d, on a replica %d (%.1f%%), read p50 %v, p99 %v, in %v",
		r.Reads, r.Stale, r.OnReplica, 100*r.ReplicaShare(), r.ReadP50.Round(10*time.Microsecond),
		r.ReadP99.Round(10*time.Microsecond), r.Elapsed.Round(time.Millisecond))
}

// PrepareRYWLoad creates (or empties) table on the primary at url, which must be a direct
// connection.
func PrepareRYWLoad(ctx context.Context, url, table string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, fmt.Sprintf("drop table if exists %[1]s; create table %[1]s(id bigint primary key, task int)", table))
	return err
}

// Run runs the workload once.
func (w RYWLoad) Run(ctx context.Context) (RYWResult, error) {
	tasks, conns, pairs := cmpOr(w.Tasks, 50), cmpOr(w.Conns, 20), cmpOr(w.Pairs, 20)
	warmup := cmpOr(w.Warmup, 2)
	if w.Warmup < 0 {
		warmup = 0
	}
	cfg, err := pgxpool.ParseConfig(w.URL)
	if err != nil {
		return RYWResult{}, err
	}
	cfg.MaxConns, cfg.MinConns = int32(conns), int32(conns)
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return RYWResult{}, err
	}
	defer p.Close()
	insert := fmt.Sprintf("insert into %s(id, task) values ($1, $2)", w.Table)
	read := fmt.Sprintf("select pg_is_in_recovery(), count(*) from %s where id = $1", w.Table)

	var next atomic.Int64
	next.Store(time.Now().UnixNano())
	var (
		mu     sync.Mutex
		res    RYWResult
		lat    []time.Duration
		errOne error
		wg     sync.WaitGroup
	)
	start := time.Now()
	for task := range tasks {
		wg.Go(func() {
			for k := range warmup + pairs {
				id := next.Add(1)
				if _, err := p.Exec(ctx, insert, id, task); err != nil {
					mu.Lock()
					errOne = errors.Join(errOne, err)
					mu.Unlock()
					return
				}
				t0 := time.Now()
				var inRecovery bool
				var n int64
				err := p.QueryRow(ctx, read, id).Scan(&inRecovery, &n)
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					errOne = errors.Join(errOne, err)
					mu.Unlock()
					return
				}
				if k < warmup {
					mu.Unlock()
					continue
				}
				res.Reads++
				if n == 0 {
					res.Stale++
				}
				if inRecovery {
					res.OnReplica++
				}
				lat = append(lat, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	slices.Sort(lat)
	if len(lat) > 0 {
		res.ReadP50 = lat[len(lat)/2]
		res.ReadP99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return res, errOne
}

func cmpOr(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}
