package pool_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/pool"
	"github.com/cmlite/cmpool/pool/internal/pgmock"
	"github.com/cmlite/cmpool/router"
)

// A read routed to a replica that refuses it with 25006 read_only_sql_transaction (the
// statement writes after all) runs again on the primary; the client sees only the
// primary's answer.
func TestBehaviourReadOnlyReplay(t *testing.T) {
	t.Parallel()
	const query = "SELECT n FROM t"
	answer := pgmock.Reply([]string{"n"}, [][]string{{"1"}}, "SELECT 1", 'I')
	primary := pgmock.NewServer(t, pgmock.Options{})
	replica := pgmock.NewServer(t, pgmock.Options{Housekeeping: pgmock.ReplicaHousekeeping})
	replica.Expect(
		pgmock.ExpectQuery(query),
		pgmock.Send(pgmock.Error("25006", "cannot execute nextval() in a read-only transaction"), readyMsg('I')),
	)
	primary.Expect(
		pgmock.ExpectQuery(query),
		pgmock.Send(answer...),
	)
	var srv *pool.Server
	addr := startPoolServer(t, primary, func(c *pool.Config) {
		c.Replicas = []string{replica.URL("app", "app")}
		c.ReplicaCheckInterval = 10 * time.Millisecond
	}, &srv)
	waitReplicaUsable(t, srv)

	c := connectClient(t, addr)
	c.send(&pgproto3.Query{String: query})
	c.expect(answer...)
	replica.Wait(behaviourTimeout)
	primary.Wait(behaviourTimeout)
}

// waitReplicaUsable waits until srv's first replica has been checked and may take reads.
func waitReplicaUsable(t *testing.T, srv *pool.Server) {
	t.Helper()
	deadline := time.Now().Add(behaviourTimeout)
	for {
		st := srv.Stat()
		if len(st.Replicas) > 0 && st.Replicas[0].State == router.ReplicaOK && st.Replicas[0].Role == router.RoleReplica {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica never became usable: %+v", st.Replicas)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
