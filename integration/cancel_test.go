package integration_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// TestCancelReachesOnlyItsQuery: a few clients cancel their own short queries as fast as
// they can, right after a SET of a tracked parameter (cmpool reads it back before the
// server goes back to the pool) and during reads a replica refuses with 25006 (cmpool
// replays them on the primary), while many other clients share the same small pools. A
// cancel must only ever reach the query of the client that sent it: no other client may
// see 57014.
func TestCancelReachesOnlyItsQuery(t *testing.T) {
	const (
		minCancels = 20000
		innocents  = 8
		cancellers = 6
	)
	c, p := routedProxy(t, pool.Config{DefaultPoolSize: 3})
	ctx := ctxT(t, 5*time.Minute)
	admin := direct(t, c)
	// A stable function the router sends to the replica, where nextval fails with 25006:
	// every call is replayed on the primary.
	_, err := admin.Exec(ctx, `create sequence if not exists cancel_replay_seq;
		create or replace function cancel_replay() returns bigint language sql stable as 'select nextval(''cancel_replay_seq'')'`)
	require.NoError(t, err)
	require.NoError(t, c.WaitReplication(ctx))

	var (
		stop            atomic.Bool
		sent, forwarded atomic.Int64 // cancel requests sent; cancellers' queries that got 57014
		innocentRuns    atomic.Int64
		innocentCancels atomic.Int64
		innocentOther   = make(chan error, innocents)
		cancellerErrs   = make(chan error, cancellers)
		wg              sync.WaitGroup
	)
	for i := range innocents {
		url := p.URL("", "")
		if i%2 == 0 {
			url += "&options=-c%20cmpool.route%3Dprimary"
		}
		conn := connect(t, url, pgx.QueryExecModeSimpleProtocol)
		wg.Go(func() {
			for !stop.Load() {
				_, err := conn.Exec(ctx, "select pg_sleep(0.001)")
				innocentRuns.Add(1)
				switch {
				case err == nil:
				case pgCode(err) == "57014":
					innocentCancels.Add(1)
				default:
					innocentOther <- err
					return
				}
			}
		})
	}

	// Each canceller runs one kind of request and cancels it, or cancels just after it.
	kinds := []func(conn *pgx.Conn, n int) error{
		// A SET of a tracked parameter, cancelled once its reply is in: cmpool is reading
		// it back on the server.
		func(conn *pgx.Conn, n int) error {
			_, err := conn.Exec(ctx, fmt.Sprintf("set work_mem = '%dkB'; set search_path = public, pg_catalog", 64+n%64))
			return err
		},
		// A read the replica refuses, replayed on the primary.
		func(conn *pgx.Conn, n int) error {
			_, err := conn.Exec(ctx, "select cancel_replay()")
			return err
		},
		// A query that runs long enough for its own cancel to reach it.
		func(conn *pgx.Conn, n int) error {
			_, err := conn.Exec(ctx, "select pg_sleep(0.02)")
			return err
		},
	}
	start := time.Now()
	cancelOnce := func(conn *pgx.Conn) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := conn.PgConn().CancelRequest(cctx); err == nil {
			if sent.Add(1) >= minCancels {
				stop.Store(true)
			}
		}
	}
	for i := range cancellers {
		kind := kinds[i%len(kinds)]
		conn := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
		wg.Go(func() {
			for n := 0; !stop.Load(); n++ {
				// One cancel while the request runs, two as soon as its reply is in.
				done := make(chan error, 1)
				go func() { done <- kind(conn, n) }()
				cancelOnce(conn)
				err := <-done
				var after sync.WaitGroup
				after.Go(func() { cancelOnce(conn) })
				after.Go(func() { cancelOnce(conn) })
				after.Wait()
				switch {
				case err == nil:
				case pgCode(err) == "57014":
					forwarded.Add(1)
				default:
					cancellerErrs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(innocentOther)
	close(cancellerErrs)
	for err := range innocentOther {
		require.NoError(t, err, "an innocent client's query failed")
	}
	for err := range cancellerErrs {
		require.NoError(t, err, "a cancelling client's query failed other than with 57014")
	}
	st := p.Server.Stat()
	t.Logf("%d cancel requests sent in %s (%d cancelled their own query); %d innocent queries, %d of them got 57014; %d replays on the primary",
		sent.Load(), time.Since(start).Round(time.Millisecond), forwarded.Load(), innocentRuns.Load(), innocentCancels.Load(), st.ReadOnlyReplays)
	require.Positive(t, st.ReadOnlyReplays, "the replay path was exercised")
	require.Positive(t, forwarded.Load(), "no client's cancel ever reached its own query")
	require.Zero(t, innocentCancels.Load(), "a cancel reached another client's query")
}
