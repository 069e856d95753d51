package integration_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
)

// The ledger is the fault suite's workload: each worker writes rows (worker, seq) through
// cmpool and records every write whose commit it saw acknowledged, and reads in between.
// After the fault, every acknowledged row must be on the primary.

const ledgerDDL = `create table ledger(worker int not null, conn int not null, seq int not null,
	primary key (worker, seq))`

// ledgerWrite is one acknowledged write.
type ledgerWrite struct {
	worker, seq int
	at          time.Time
}

// ledger runs the workload and keeps what it saw.
type ledger struct {
	url     string
	workers int

	mu        sync.Mutex
	acked     []ledgerWrite
	readsAt   []time.Time    // successful reads
	replicaAt []time.Time    // successful reads served by a replica
	errs      map[string]int // SQLSTATE (or "none") -> count
	samples   map[string]string
	dirty     []string // reads that found a server in a bad state
	maxOp     time.Duration
	maxOpSQL  string

	conns atomic.Int64 // connection ids
	stop  chan struct{}
	wg    sync.WaitGroup
}

func startLedger(t *testing.T, url string, workers int) *ledger {
	l := &ledger{url: url, workers: workers, errs: map[string]int{}, samples: map[string]string{}, stop: make(chan struct{})}
	for w := range workers {
		l.wg.Go(func() { l.work(w + 1) })
	}
	t.Cleanup(l.halt)
	return l
}

// halt stops the workers and waits for them; it is idempotent.
func (l *ledger) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// opTimeout bounds each operation far above cmpool's own timeouts: the test measures how
// long operations take, and a client that hit this bound would be reported.
const opTimeout = 90 * time.Second

// work is one worker: it connects (again after a fatal error), then alternates writes and
// reads. Workers use the three pgx query modes between them.
func (l *ledger) work(worker int) {
	modes := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec}
	var conn *pgx.Conn
	var connID, ackedHere int
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	seq := 0
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		default:
		}
		if conn == nil || conn.IsClosed() {
			cfg, err := pgx.ParseConfig(l.url)
			if err != nil {
				panic(err)
			}
			cfg.DefaultQueryExecMode = modes[worker%len(modes)]
			err = l.op("connect", func(ctx context.Context) error {
				conn, err = pgx.ConnectConfig(ctx, cfg)
				return err
			})
			if err != nil {
				conn = nil
				l.pause()
				continue
			}
			connID, ackedHere = int(l.conns.Add(1)), 0
		}
		var err error
		switch i % 4 {
		case 0, 2: // one write, acknowledged by its implicit commit
			seq++
			s := seq
			err = l.op("insert", func(ctx context.Context) error {
				_, err := conn.Exec(ctx, "insert into ledger(worker, conn, seq) values ($1, $2, $3)", worker, connID, s)
				return err
			})
			if err == nil {
				ackedHere++
				l.ack(worker, s)
			}
		case 1: // a read that checks the server it ran on was clean
			err = l.op("read", func(ctx context.Context) error {
				var echo int
				var fresh, replica bool
				// Simple protocol: in the extended protocol statement_timestamp() moves on
				// at each message, so only a simple query can compare it with now().
				err := conn.QueryRow(ctx, "select $1::int, now() = statement_timestamp(), pg_is_in_recovery()",
					pgx.QueryExecModeSimpleProtocol, worker).Scan(&echo, &fresh, &replica)
				if err == nil {
					l.read(replica, echo != worker || !fresh, fmt.Sprintf("worker %d read echo %d, fresh transaction %v", worker, echo, fresh))
				}
				return err
			})
		case 3: // two writes in one transaction, then a read of this connection's rows
			s1, s2 := seq+1, seq+2
			seq += 2
			err = l.op("transaction", func(ctx context.Context) error {
				return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
					for _, s := range []int{s1, s2} {
						if _, err := tx.Exec(ctx, "insert into ledger(worker, conn, seq) values ($1, $2, $3)", worker, connID, s); err != nil {
							return err
						}
					}
					return nil
				})
			})
			if err != nil {
				break
			}
			ackedHere += 2
			l.ack(worker, s1)
			l.ack(worker, s2)
			// Read-your-writes: this connection's reads see its own acknowledged writes.
			want := ackedHere
			err = l.op("count", func(ctx context.Context) error {
				var n int
				err := conn.QueryRow(ctx, "select count(*) from ledger where conn = $1", connID).Scan(&n)
				if err == nil {
					l.read(false, n < want, fmt.Sprintf("connection %d read %d of its rows, had %d acknowledged", connID, n, want))
				}
				return err
			})
		}
		if err != nil {
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Severity == "FATAL" || conn.IsClosed() {
				_ = conn.Close(context.Background())
				conn = nil
			}
			l.pause()
		}
	}
}

// pause waits a little after an error, so a dead node is not hammered.
func (l *ledger) pause() {
	select {
	case <-l.stop:
	case <-time.After(50 * time.Millisecond):
	}
}

// op runs f under opTimeout, records how long it took, and records its error by SQLSTATE.
func (l *ledger) op(name string, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	start := time.Now()
	err := f(ctx)
	d := time.Since(start)
	l.mu.Lock()
	defer l.mu.Unlock()
	if d > l.maxOp {
		l.maxOp, l.maxOpSQL = d, name
	}
	if err != nil {
		code := pgCode(err)
		if code == "" {
			code = "none"
		}
		l.errs[code]++
		if _, ok := l.samples[code]; !ok {
			l.samples[code] = name + ": " + err.Error()
		}
	}
	return err
}

func (l *ledger) ack(worker, seq int) {
	l.mu.Lock()
	l.acked = append(l.acked, ledgerWrite{worker: worker, seq: seq, at: time.Now()})
	l.mu.Unlock()
}

func (l *ledger) read(replica, dirty bool, what string) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.readsAt = append(l.readsAt, now)
	if replica {
		l.replicaAt = append(l.replicaAt, now)
	}
	if dirty {
		l.dirty = append(l.dirty, what)
	}
}

// firstWriteAfter returns when the first write acknowledged after t was, or zero.
func (l *ledger) firstWriteAfter(t time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, w := range l.acked {
		if w.at.After(t) {
			return w.at
		}
	}
	return time.Time{}
}

// countAfter counts events after t.
func countAfter(events []time.Time, t time.Time) int {
	return len(events) - sort.Search(len(events), func(i int) bool { return events[i].After(t) })
}

func (l *ledger) readsAfter(t time.Time, onReplica bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if onReplica {
		return countAfter(l.replicaAt, t)
	}
	return countAfter(l.readsAt, t)
}

func (l *ledger) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// errorSummary is "57014×3 08006×1", sorted by SQLSTATE; "none" when there were none.
func (l *ledger) errorSummary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) == 0 {
		return "none"
	}
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(l.errs)) {
		parts = append(parts, fmt.Sprintf("%s×%d", code, l.errs[code]))
	}
	return strings.Join(parts, " ")
}

// checkPresent checks that every acknowledged write is in the ledger on node, and returns
// how many rows the ledger holds.
func (l *ledger) checkPresent(t *testing.T, node *integration.Node) int {
	t.Helper()
	conn := connect(t, node.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctxT(t, 30*time.Second), "select worker, seq from ledger")
	require.NoError(t, err)
	present := map[[2]int]bool{}
	for rows.Next() {
		var w, s int
		require.NoError(t, rows.Scan(&w, &s))
		present[[2]int{w, s}] = true
	}
	require.NoError(t, rows.Err())
	l.mu.Lock()
	defer l.mu.Unlock()
	var missing []string
	for _, w := range l.acked {
		if !present[[2]int{w.worker, w.seq}] {
			missing = append(missing, fmt.Sprintf("(%d,%d)", w.worker, w.seq))
		}
	}
	require.Empty(t, missing, "acknowledged writes missing from %s", node.Name)
	return len(present)
}

// processCounts returns this process's goroutines and open file descriptors.
func processCounts(t *testing.T) (goroutines, fds int) {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return runtime.NumGoroutine(), len(entries)
}
