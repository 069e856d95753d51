package pool_test

import (
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
	"github.com/cmlite/cmpool/pool/internal/pgmock"
	"github.com/cmlite/cmpool/pool/internal/session"
)

// pinnedClients is the number of pinned clients of app/app in srv's Stat.
func pinnedClients(srv *pool.Server) int {
	for _, g := range srv.Stat().ClientGroups {
		if g.Database == "app" && g.User == "app" {
			return g.Pinned
		}
	}
	return 0
}

// Session pinning on the wire: after a statement that may pin, the server is asked what
// it holds before the client gets its ReadyForQuery; a pinned client's statements that
// cannot release anything are not checked; one that may is; and a pinned client that
// leaves has its server reset with DISCARD ALL (answered by pgmock as housekeeping).
func TestBehaviourPinCheck(t *testing.T) {
	t.Parallel()
	primary := pgmock.NewServer(t, pgmock.Options{})
	check := pgmock.ExpectQuery(session.PinCheckQuery)
	primary.Expect(
		pgmock.ExpectQuery("SELECT pg_advisory_lock(1)"),
		pgmock.Send(pgmock.DataRow(""), completeMsg("SELECT 1"), readyMsg('I')),
		check,
		pgmock.Send(pgmock.DataRow("1", "0", "0"), completeMsg("SELECT 1"), readyMsg('I')),

		// Pinned: nothing here may release the lock, so no check.
		pgmock.ExpectQuery("SELECT 2"),
		pgmock.Send(pgmock.DataRow("2"), completeMsg("SELECT 1"), readyMsg('I')),

		// An unlock may: checked, and the client is unpinned.
		pgmock.ExpectQuery("SELECT pg_advisory_unlock(1)"),
		pgmock.Send(pgmock.DataRow("t"), completeMsg("SELECT 1"), readyMsg('I')),
		check,
		pgmock.Send(pgmock.DataRow("0", "0", "0"), completeMsg("SELECT 1"), readyMsg('I')),

		// A failed pg_try_advisory_lock leaves nothing: not pinned, no reset.
		pgmock.ExpectQuery("SELECT pg_try_advisory_lock(2)"),
		pgmock.Send(pgmock.DataRow("f"), completeMsg("SELECT 1"), readyMsg('I')),
		check,
		pgmock.Send(pgmock.DataRow("0", "0", "0"), completeMsg("SELECT 1"), readyMsg('I')),

		// Pinned again by a temporary table, then the client leaves: the server is reset.
		pgmock.ExpectQuery("CREATE TEMP TABLE t(x int)"),
		pgmock.Send(completeMsg("CREATE TABLE"), readyMsg('I')),
		check,
		pgmock.Send(pgmock.DataRow("0", "0", "1"), completeMsg("SELECT 1"), readyMsg('I')),
	)
	var srv *pool.Server
	c := connectClient(t, startPoolServer(t, primary, nil, &srv))
	discards := func() int { return slices.Index(append(primary.Housekeeping(), "DISCARD ALL"), "DISCARD ALL") }

	c.send(&pgproto3.Query{String: "SELECT pg_advisory_lock(1)"})
	c.expect(pgmock.DataRow(""), completeMsg("SELECT 1"), readyMsg('I'))
	require.Equal(t, 1, pinnedClients(srv))
	c.send(&pgproto3.Query{String: "SELECT 2"})
	c.expect(pgmock.DataRow("2"), completeMsg("SELECT 1"), readyMsg('I'))
	require.Equal(t, 1, pinnedClients(srv))
	c.send(&pgproto3.Query{String: "SELECT pg_advisory_unlock(1)"})
	c.expect(pgmock.DataRow("t"), completeMsg("SELECT 1"), readyMsg('I'))
	require.Equal(t, 0, pinnedClients(srv))
	c.send(&pgproto3.Query{String: "SELECT pg_try_advisory_lock(2)"})
	c.expect(pgmock.DataRow("f"), completeMsg("SELECT 1"), readyMsg('I'))
	require.Equal(t, 0, pinnedClients(srv))
	c.send(&pgproto3.Query{String: "CREATE TEMP TABLE t(x int)"})
	c.expect(completeMsg("CREATE TABLE"), readyMsg('I'))
	require.Equal(t, 1, pinnedClients(srv))
	none := len(primary.Housekeeping())
	require.Equal(t, none, discards(), "no reset while the client was unpinned (its state was gone)")
	c.send(&pgproto3.Terminate{})
	primary.Wait(behaviourTimeout)
	require.Eventually(t, func() bool { return pinnedClients(srv) == 0 }, behaviourTimeout, 10*time.Millisecond)
	require.Eventually(t, func() bool { return discards() < len(primary.Housekeeping()) }, behaviourTimeout, 10*time.Millisecond,
		"the pinned client's server is reset with DISCARD ALL when it leaves")
}

// With max_pinned reached, a statement that would pin is refused before it reaches the
// server: a client without a server is answered by cmpool. (Inside a transaction block the
// server raises the refusal in the statement's place: integration/pin_test.go.)
func TestBehaviourPinRefused(t *testing.T) {
	t.Parallel()
	primary := pgmock.NewServer(t, pgmock.Options{})
	primary.Expect(
		pgmock.ExpectQuery("SELECT pg_advisory_lock(1)"),
		pgmock.Send(pgmock.DataRow(""), completeMsg("SELECT 1"), readyMsg('I')),
		pgmock.ExpectQuery(session.PinCheckQuery),
		pgmock.Send(pgmock.DataRow("1", "0", "0"), completeMsg("SELECT 1"), readyMsg('I')),
	)
	var srv *pool.Server
	addr := startPoolServer(t, primary, func(cfg *pool.Config) { cfg.DefaultPoolSize = 2; cfg.MaxPinned = 1 }, &srv)
	a := connectClient(t, addr)
	a.send(&pgproto3.Query{String: "SELECT pg_advisory_lock(1)"})
	a.expect(pgmock.DataRow(""), completeMsg("SELECT 1"), readyMsg('I'))

	b := connectClient(t, addr)
	b.send(&pgproto3.Query{String: "SELECT pg_advisory_lock(2)"})
	e := b.expectError("53400")
	require.Contains(t, e.Message, "max_pinned (1) reached for pool app/app")
	b.expect(readyMsg('I'))
	require.Equal(t, int64(1), srv.Stat().ClientGroups[0].PinRefused)
	primary.Wait(behaviourTimeout)
}
