package integration_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// replayingFunction makes a stable function the router sends to a replica, where its
// nextval fails with 25006: every call of it is replayed on the primary.
func replayingFunction(t *testing.T, c *integration.Cluster) string {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	_, err := direct(t, c).Exec(ctx, `create sequence if not exists cancel_replay_seq;
		create or replace function cancel_replay() returns bigint language sql stable as 'select nextval(''cancel_replay_seq'')'`)
	require.NoError(t, err)
	require.NoError(t, c.WaitReplication(ctx))
	return "select cancel_replay()"
}

// TestReplaySettingsWhileDiscardAll: a read a replica refuses is replayed on the primary
// by the relay, which applies the client's settings to the primary server while the
// client goroutine runs the client's next request, a DISCARD ALL that resets those
// settings. Run with -race: the relay must read them under the client's lock.
func TestReplaySettingsWhileDiscardAll(t *testing.T) {
	c, p := routedProxy(t, pool.Config{DefaultPoolSize: 1, Consistency: "eventual"})
	ctx := ctxT(t, 60*time.Second)
	query := replayingFunction(t, c)

	cfg, err := pgconn.ParseConfig(p.URL("", ""))
	require.NoError(t, err)
	cfg.RuntimeParams["application_name"] = "before"
	a, err := pgconn.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close(ctxT(t, 5*time.Second)) })
	// The router learns the function's volatility (a lookup on the primary), and the
	// client's settings change.
	_, err = a.Exec(ctx, query).ReadAll()
	require.NoError(t, err)
	_, err = a.Exec(ctx, "set application_name = 'changed'").ReadAll()
	require.NoError(t, err)
	hc, err := a.Hijack()
	require.NoError(t, err)
	fe := hc.Frontend

	// b holds the primary's only server, so the replay waits for it.
	holder := connect(t, p.URL("", "")+"&options=-c%20cmpool.route%3Dprimary", pgx.QueryExecModeSimpleProtocol)
	_, err = holder.Exec(ctx, "begin isolation level read committed")
	require.NoError(t, err)
	replicaPool := func() pool.PoolStat {
		for _, ps := range p.Server.Stat().Pools {
			if ps.Backend != "primary" {
				return ps
			}
		}
		t.Fatal("no replica pool")
		return pool.PoolStat{}
	}
	before := replicaPool().Acquires

	// The read and the start of the DISCARD ALL go in one write, so a relay goroutine
	// reads the replies while the client goroutine waits for the rest.
	q1, _ := (&pgproto3.Query{String: query}).Encode(nil)
	q2, _ := (&pgproto3.Query{String: "DISCARD ALL"}).Encode(nil)
	_, err = hc.Conn.Write(append(q1, q2[:3]...))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		ps := replicaPool()
		return ps.Acquires > before && ps.ActiveServers == 0
	}, 10*time.Second, 5*time.Millisecond, "the replica never refused the read")
	// The replica's server is back: the relay waits for the primary. Now the DISCARD ALL.
	_, err = hc.Conn.Write(q2[3:])
	require.NoError(t, err)
	// Nothing else may touch the client's session meanwhile (that would order the two
	// goroutines' accesses): give the client goroutine a moment to run the DISCARD ALL.
	time.Sleep(200 * time.Millisecond)
	_, err = holder.Exec(ctx, "commit")
	require.NoError(t, err)

	var tags []string
	for ready := 0; ready < 2; {
		msg, err := fe.Receive()
		require.NoError(t, err)
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			t.Fatalf("%s: %s", m.Code, m.Message)
		case *pgproto3.CommandComplete:
			tags = append(tags, string(m.CommandTag))
		case *pgproto3.ReadyForQuery:
			ready++
		}
	}
	require.Equal(t, []string{"SELECT 1", "DISCARD ALL"}, tags)
	// DISCARD ALL took the client back to its startup settings.
	fe.Send(&pgproto3.Query{String: "show application_name"})
	require.NoError(t, fe.Flush())
	var app string
	for done := false; !done; {
		msg, err := fe.Receive()
		require.NoError(t, err)
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			app = string(m.Values[0])
		case *pgproto3.ErrorResponse:
			t.Fatalf("%s: %s", m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			done = true
		}
	}
	require.Equal(t, "before", app)
	require.EqualValues(t, 2, p.Server.Stat().ReadOnlyReplays)
}
