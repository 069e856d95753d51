package pool_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
	"github.com/cmlite/cmpool/pool/internal/pgmock"
	"github.com/cmlite/cmpool/router"
)

// A replica that dies under a read which has answered nothing: the read runs again on the
// primary, the client sees only the primary's answer, and the replica is banned.

// replicaLossPool starts cmpool over primary and replica, with the replica usable.
func replicaLossPool(t *testing.T, primary, replica *pgmock.Server) (string, *pool.Server) {
	t.Helper()
	var srv *pool.Server
	addr := startPoolServer(t, primary, func(c *pool.Config) {
		c.Replicas = []string{replica.URL("app", "app")}
		c.ReplicaCheckInterval = 10 * time.Millisecond
		c.ReplicaBanTime = time.Minute
	}, &srv)
	waitReplicaUsable(t, srv)
	return addr, srv
}

// TestBehaviourReplicaLossQuery: the replica's connection ends (EOF) under a simple Query.
func TestBehaviourReplicaLossQuery(t *testing.T) {
	t.Parallel()
	const query = "SELECT n FROM t"
	answer := pgmock.Reply([]string{"n"}, [][]string{{"1"}}, "SELECT 1", 'I')
	primary := pgmock.NewServer(t, pgmock.Options{})
	replica := pgmock.NewServer(t, pgmock.Options{Housekeeping: pgmock.ReplicaHousekeeping})
	replica.Expect(pgmock.ExpectQuery(query), pgmock.CloseConn())
	// The replay, then the session's next read, on the primary while the replica is banned.
	primary.Expect(pgmock.ExpectQuery(query), pgmock.Send(answer...), pgmock.ExpectQuery(query), pgmock.Send(answer...))
	addr, srv := replicaLossPool(t, primary, replica)

	c := connectClient(t, addr)
	c.send(&pgproto3.Query{String: query})
	c.expect(answer...)
	replica.Wait(behaviourTimeout)
	st := srv.Stat()
	require.Equal(t, int64(1), st.ReadReplays)
	require.Equal(t, router.ReplicaBanned, st.Replicas[0].State)

	c.send(&pgproto3.Query{String: query})
	c.expect(answer...)
	primary.Wait(behaviourTimeout)
}

// TestBehaviourReplicaLossExtended: a replica shutting down sends FATAL 57P01 after
// replies that only describe the read, and closes. The client gets the primary's replies
// only, once.
func TestBehaviourReplicaLossExtended(t *testing.T) {
	t.Parallel()
	const query = "SELECT n FROM t"
	batch := []pgproto3.FrontendMessage{&pgproto3.Parse{Query: query}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, executeAll, syncMsg}
	steps := func() []pgmock.Step {
		var s []pgmock.Step
		for _, m := range batch {
			s = append(s, pgmock.Expect(m))
		}
		return s
	}
	replies := []pgproto3.BackendMessage{parseComplete, bindComplete, pgmock.RowDescription("n"), pgmock.DataRow("1"), completeMsg("SELECT 1"), readyMsg('I')}
	primary := pgmock.NewServer(t, pgmock.Options{})
	replica := pgmock.NewServer(t, pgmock.Options{Housekeeping: pgmock.ReplicaHousekeeping})
	fatal := pgmock.Error("57P01", "terminating connection due to administrator command")
	fatal.Severity, fatal.SeverityUnlocalized = "FATAL", "FATAL"
	replica.Expect(append(steps(), pgmock.Send(parseComplete, bindComplete, pgmock.RowDescription("n"), fatal), pgmock.CloseConn())...)
	primary.Expect(append(steps(), pgmock.Send(replies...))...)
	addr, srv := replicaLossPool(t, primary, replica)

	c := connectClient(t, addr)
	c.send(batch...)
	c.expect(replies...)
	replica.Wait(behaviourTimeout)
	primary.Wait(behaviourTimeout)
	require.Equal(t, int64(1), srv.Stat().ReadReplays)
}

// TestBehaviourReplicaLossAfterRows: the replica dies after sending rows, a
// CommandComplete, and a fast shutdown's FATAL 57P01 before the ReadyForQuery (as a
// server does when the signal comes after its last row). The replies were held, so
// nothing reached the client: the read runs again on the primary and the client gets the
// primary's answer only, once.
func TestBehaviourReplicaLossAfterRows(t *testing.T) {
	t.Parallel()
	const query = "SELECT n FROM t"
	answer := pgmock.Reply([]string{"n"}, [][]string{{"1"}}, "SELECT 1", 'I')
	fatal := pgmock.Error("57P01", "terminating connection due to administrator command")
	fatal.Severity, fatal.SeverityUnlocalized = "FATAL", "FATAL"
	primary := pgmock.NewServer(t, pgmock.Options{})
	replica := pgmock.NewServer(t, pgmock.Options{Housekeeping: pgmock.ReplicaHousekeeping})
	replica.Expect(pgmock.ExpectQuery(query),
		pgmock.Send(pgmock.RowDescription("n"), pgmock.DataRow("0"), completeMsg("SELECT 1"), fatal), pgmock.CloseConn())
	primary.Expect(pgmock.ExpectQuery(query), pgmock.Send(answer...))
	addr, srv := replicaLossPool(t, primary, replica)

	c := connectClient(t, addr)
	c.send(&pgproto3.Query{String: query})
	c.expect(answer...)
	replica.Wait(behaviourTimeout)
	primary.Wait(behaviourTimeout)
	st := srv.Stat()
	require.Equal(t, int64(1), st.ReadReplays)
	require.Equal(t, router.ReplicaBanned, st.Replicas[0].State)
}

// TestBehaviourReplicaLossAfterLargeResult: rows past the 16 KiB held for a replay had
// reached the client when the replica died: the read cannot run again, and the client gets
// FATAL 08006 after the rows it had.
func TestBehaviourReplicaLossAfterLargeResult(t *testing.T) {
	t.Parallel()
	const query = "SELECT n FROM t"
	row := strings.Repeat("x", 1000)
	sent := []pgproto3.BackendMessage{pgmock.RowDescription("n")}
	for range 20 {
		sent = append(sent, pgmock.DataRow(row))
	}
	primary := pgmock.NewServer(t, pgmock.Options{})
	replica := pgmock.NewServer(t, pgmock.Options{Housekeeping: pgmock.ReplicaHousekeeping})
	replica.Expect(pgmock.ExpectQuery(query), pgmock.Send(sent...), pgmock.CloseConn())
	addr, srv := replicaLossPool(t, primary, replica)

	c := connectClient(t, addr)
	c.send(&pgproto3.Query{String: query})
	c.expect(sent...)
	e := c.expectError("08006")
	require.Equal(t, "FATAL", e.Severity)
	replica.Wait(behaviourTimeout)
	st := srv.Stat()
	require.Zero(t, st.ReadReplays)
	require.Equal(t, router.ReplicaBanned, st.Replicas[0].State, "banned all the same")
}

// TestBehaviourReplicaLossNamedParse: the read that runs again prepares a named statement
// (a driver's first use of it, as pgx's statement cache does). Its Parse is planned again for
// the primary as the new Parse it is to the client, not refused as a duplicate of the
// mapping made for the replica that died; and the name then works.
func TestBehaviourReplicaLossNamedParse(t *testing.T) {
	t.Parallel()
	const query = "SELECT n FROM t WHERE n = $1"
	var onReplica, onPrimary string
	steps := func(name *string) []pgmock.Step {
		return []pgmock.Step{serverStmt(query, name), pgmock.ExpectType(&pgproto3.Describe{}), pgmock.ExpectType(&pgproto3.Sync{})}
	}
	described := []pgproto3.BackendMessage{parseComplete, &pgproto3.ParameterDescription{ParameterOIDs: []uint32{23}},
		pgmock.RowDescription("n"), readyMsg('I')}
	primary := pgmock.NewServer(t, pgmock.Options{})
	replica := pgmock.NewServer(t, pgmock.Options{Housekeeping: pgmock.ReplicaHousekeeping})
	replica.Expect(append(steps(&onReplica), pgmock.CloseConn())...)
	primary.Expect(append(steps(&onPrimary), pgmock.Send(described...),
		bindOf(&onPrimary), pgmock.ExpectType(&pgproto3.Describe{}), pgmock.ExpectType(&pgproto3.Execute{}), pgmock.ExpectType(&pgproto3.Sync{}),
		pgmock.Send(bindComplete, pgmock.RowDescription("n"), pgmock.DataRow("1"), completeMsg("SELECT 1"), readyMsg('I')))...)
	addr, srv := replicaLossPool(t, primary, replica)

	c := connectClient(t, addr)
	c.send(&pgproto3.Parse{Name: "s1", Query: query}, &pgproto3.Describe{ObjectType: 'S', Name: "s1"}, syncMsg)
	c.expect(described...)
	replica.Wait(behaviourTimeout)
	require.Equal(t, int64(1), srv.Stat().ReadReplays)

	c.send(&pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte("1")}}, &pgproto3.Describe{ObjectType: 'P'}, executeAll, syncMsg)
	c.expect(bindComplete, pgmock.RowDescription("n"), pgmock.DataRow("1"), completeMsg("SELECT 1"), readyMsg('I'))
	primary.Wait(behaviourTimeout)
}
