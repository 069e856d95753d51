package integration_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// Client sessions on event loops (Config.EventLoops, pool/loops.go). The parking tests
// (park_test.go) run on the loops too; these drive what only the loops do: a request and
// its reply run by the loops, replies that span many reads, and whatever reaches a
// session while its relay is suspended waiting for its server: a cancel request, the
// server's death, query_timeout.

// TestEventLoopTraffic: 40 clients in three pgx modes share 2 servers; each runs
// statements, transactions and results larger than a socket read, and checks every answer.
// Between requests every client is suspended on the loops.
func TestEventLoopTraffic(t *testing.T) {
	_, p := proxy(t, pool.Config{DefaultPoolSize: 2, EventLoops: 2})
	ctx := ctxT(t, 3*time.Minute)
	setup := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	_, err := setup.Exec(ctx, "drop table if exists evloop; create table evloop (client int, n int)")
	require.NoError(t, err)

	modes := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec, pgx.QueryExecModeCacheStatement}
	const clients, rounds = 40, 15
	conns := make([]*pgx.Conn, clients)
	for i := range conns {
		conns[i] = connect(t, p.URL("", "")+fmt.Sprintf("&application_name=evloop%d", i), modes[i%len(modes)])
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i, conn := range conns {
		wg.Go(func() {
			if err := evloopClient(ctx, conn, i, rounds); err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	var rows int
	require.NoError(t, setup.QueryRow(ctx, "select count(*) from evloop").Scan(&rows))
	require.Equal(t, clients*rounds, rows, "every committed insert is there")
	parked(t, p, clients+1) // all of them, setup included, wait on the loops
	st := p.Server.Stat().EventLoops
	require.Equal(t, 2, st.Loops)
	require.Greater(t, st.Events, uint64(clients*rounds), "the loops ran the requests")
	t.Logf("event loops: %d events, %d workers detached (%d by the watchdog)", st.Events, st.Detached, st.Watchdog)
}

// evloopClient runs rounds of statements on conn as client i and checks their answers.
func evloopClient(ctx context.Context, conn *pgx.Conn, i, rounds int) error {
	for r := range rounds {
		var app string
		var x int
		if err := conn.QueryRow(ctx, "select current_setting('application_name'), $1::int", i*1000+r).Scan(&app, &x); err != nil {
			return err
		}
		if app != fmt.Sprintf("evloop%d", i) || x != i*1000+r {
			return fmt.Errorf("round %d: got %q %d", r, app, x)
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "insert into evloop values ($1, $2)", i, r); err != nil {
			return err
		}
		var mine int
		if err := tx.QueryRow(ctx, "select count(*) from evloop where client = $1", i).Scan(&mine); err != nil {
			return err
		}
		if mine != r+1 {
			return fmt.Errorf("round %d: %d rows of mine inside the transaction", r, mine)
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		if r%5 == 0 {
			// About 200 KB: the reply spans many reads, and the relay waits for the server
			// between them.
			rows, err := conn.Query(ctx, "select repeat('x', 100) || g from generate_series(1, 2000) g")
			if err != nil {
				return err
			}
			n := 0
			for rows.Next() {
				var s string
				if err := rows.Scan(&s); err != nil {
					return err
				}
				n++
				if !strings.HasSuffix(s, fmt.Sprint(n)) {
					return fmt.Errorf("row %d: %q", n, s)
				}
			}
			if err := rows.Err(); err != nil {
				return err
			}
			if n != 2000 {
				return fmt.Errorf("%d rows", n)
			}
		}
	}
	return nil
}

// TestEventLoopSuspendedRelay: what reaches a session while its relay waits on a loop for
// its server. Pool size 1: another client shares the server and must never be hurt.
func TestEventLoopSuspendedRelay(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 1, EventLoops: 2})
	ctx := ctxT(t, 2*time.Minute)
	a := connect(t, p.URL("", "")+"&application_name=evloop_a", pgx.QueryExecModeSimpleProtocol)
	b := connect(t, p.URL("", "")+"&application_name=evloop_b", pgx.QueryExecModeCacheStatement)

	// A cancel request (pgx sends one when the context ends) reaches A's server.
	qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := a.Exec(qctx, "select pg_sleep(20)")
	cancel()
	require.Error(t, err)
	require.True(t, errors.Is(err, context.DeadlineExceeded) || pgCode(err) == "57014", "%v", err)
	if pgCode(err) != "57014" {
		// pgx closes a connection whose query outlived its context: a new one goes on.
		a = connect(t, p.URL("", "")+"&application_name=evloop_a", pgx.QueryExecModeSimpleProtocol)
	}
	var one int
	require.NoError(t, a.QueryRow(ctx, "select 1").Scan(&one))
	require.NoError(t, b.QueryRow(ctx, "select $1::int", 2).Scan(&one))
	require.Equal(t, 2, one)

	// The server dies under A's request: A hears it, B goes on with a new server.
	done := make(chan error, 1)
	go func() {
		_, err := a.Exec(ctx, "select pg_sleep(20)")
		done <- err
	}()
	admin := direct(t, c)
	require.Eventually(t, func() bool {
		var n int
		err := admin.QueryRow(ctx, "select count(*) from pg_stat_activity where query = 'select pg_sleep(20)' and state = 'active'").Scan(&n)
		return err == nil && n == 1
	}, 10*time.Second, 10*time.Millisecond)
	_, err = admin.Exec(ctx, "select pg_terminate_backend(pid) from pg_stat_activity where query = 'select pg_sleep(20)'")
	require.NoError(t, err)
	select {
	case err := <-done:
		require.Error(t, err)
		require.Contains(t, []string{"57P01", "08006"}, pgCode(err), "%v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the client whose server died was not told")
	}
	require.NoError(t, b.QueryRow(ctx, "select $1::int", 3).Scan(&one))
	require.Equal(t, 3, one)
}

// TestEventLoopQueryTimeout: query_timeout still cancels a statement on the loops (such a
// lease keeps a goroutine while it waits, since a read deadline times it).
func TestEventLoopQueryTimeout(t *testing.T) {
	_, p := proxy(t, pool.Config{DefaultPoolSize: 1, EventLoops: 2, QueryTimeout: 300 * time.Millisecond})
	ctx := ctxT(t, time.Minute)
	a := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	start := time.Now()
	_, err := a.Exec(ctx, "select pg_sleep(5)")
	require.Equal(t, "57014", pgCode(err), "got %v", err)
	require.Less(t, time.Since(start), 4*time.Second)
	var one int
	require.NoError(t, a.QueryRow(ctx, "select 1").Scan(&one), "the session goes on")
	b := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, b.QueryRow(ctx, "select 1").Scan(&one))
}
