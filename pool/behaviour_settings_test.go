package pool_test

import (
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/pgmock"
)

// A client's startup settings are applied on the server it gets, in one set_config round
// trip before its request, and undone before another client's request on that server.
func TestBehaviourSettingsFollowTheClient(t *testing.T) {
	t.Parallel()
	const set = "SELECT set_config('search_path', 'app', false)"
	const reset = "SELECT set_config('search_path', NULL, false)"
	primary := pgmock.NewServer(t, pgmock.Options{})
	// housekeepingIs checks what cmpool had sent on its own when a request arrives.
	housekeepingIs := func(want ...string) pgmock.Step {
		return pgmock.Do(func(*pgmock.Conn) error {
			if got := primary.Housekeeping(); !slices.Equal(got, want) {
				return fmt.Errorf("housekeeping before the request: %q, want %q", got, want)
			}
			return nil
		})
	}
	primary.Expect(
		pgmock.ExpectQuery("SELECT 1"),
		housekeepingIs(set),
		pgmock.Send(pgmock.Reply([]string{"n"}, [][]string{{"1"}}, "SELECT 1", 'I')...),
		pgmock.ExpectQuery("SELECT 2"),
		housekeepingIs(set, reset),
		pgmock.Send(pgmock.Reply([]string{"n"}, [][]string{{"2"}}, "SELECT 1", 'I')...),
	)
	addr := startPool(t, primary, nil) // one server connection, shared in turn

	withPath := connectWith(t, addr, map[string]string{"search_path": "app"})
	withPath.send(&pgproto3.Query{String: "SELECT 1"})
	withPath.expect(pgmock.Reply([]string{"n"}, [][]string{{"1"}}, "SELECT 1", 'I')...)

	plain := connectClient(t, addr)
	plain.send(&pgproto3.Query{String: "SELECT 2"})
	plain.expect(pgmock.Reply([]string{"n"}, [][]string{{"2"}}, "SELECT 1", 'I')...)
	primary.Wait(behaviourTimeout)
}

// connectWith logs in like connectClient, with more startup parameters.
func connectWith(t *testing.T, addr string, params map[string]string) *wireClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(behaviourTimeout))
	c := &wireClient{t: t, conn: conn, fe: pgproto3.NewFrontend(conn, conn)}
	return c.login(params)
}
