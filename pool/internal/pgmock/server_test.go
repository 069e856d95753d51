package pgmock_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/pgmock"
)

// recordingTB collects failures and cleanups instead of acting on them, to test that a
// broken script fails its test.
type recordingTB struct {
	testing.TB
	mu       sync.Mutex
	errors   []string
	cleanups []func()
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recordingTB) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

// finish runs the cleanups, as the end of a test does, and returns the failures.
func (r *recordingTB) finish() []string {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errors
}

func connect(t *testing.T, s *pgmock.Server) *pgconn.PgConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, s.URL("app", "app"))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestScriptRuns(t *testing.T) {
	t.Parallel()
	s := pgmock.NewServer(t, pgmock.Options{})
	s.Expect(
		pgmock.ExpectQuery("SELECT 42"),
		pgmock.Send(pgmock.Reply([]string{"n"}, [][]string{{"42"}}, "SELECT 1", 'I')...),
	)
	conn := connect(t, s)
	require.Equal(t, "15.0", conn.ParameterStatus("server_version"))
	require.Equal(t, s.Keys()[0].ProcessID, conn.PID())

	// Housekeeping before the script does not take it.
	_, err := conn.Exec(context.Background(), "SELECT set_config('a.b', 'c', false)").ReadAll()
	require.NoError(t, err)
	res, err := conn.Exec(context.Background(), "SELECT 42").ReadAll()
	require.NoError(t, err)
	require.Equal(t, [][][]byte{{[]byte("42")}}, res[0].Rows)
	s.Wait(5 * time.Second)
	require.Equal(t, []string{"SELECT set_config('a.b', 'c', false)"}, s.Housekeeping())
}

func TestCancelIsRecorded(t *testing.T) {
	t.Parallel()
	s := pgmock.NewServer(t, pgmock.Options{})
	conn := connect(t, s)
	require.NoError(t, conn.CancelRequest(context.Background()))
	got := s.WaitCancels(1, 5*time.Second)
	require.Equal(t, s.Keys()[0].ProcessID, got[0].ProcessID)
	require.Equal(t, s.Keys()[0].SecretKey, got[0].SecretKey)
}

func TestExpectationFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		step pgmock.Step
		want string
	}{
		{"exact", pgmock.ExpectQuery("SELECT 2"), `expected *pgproto3.Query {"Type":"Query","String":"SELECT 2"}, got *pgproto3.Query {"Type":"Query","String":"SELECT 1"}`},
		{"type", pgmock.ExpectType(&pgproto3.Parse{}), "expected a *pgproto3.Parse, got *pgproto3.Query"},
		{"predicate", pgmock.ExpectMatch("a long query", func(m pgproto3.FrontendMessage) error {
			if q, ok := m.(*pgproto3.Query); ok && len(q.String) > 20 {
				return nil
			}
			return fmt.Errorf("too short")
		}), "expected a long query, got *pgproto3.Query"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recordingTB{TB: t}
			s := pgmock.NewServer(rec, pgmock.Options{})
			s.Expect(tc.step, pgmock.Send(pgmock.Reply(nil, nil, "SELECT 0", 'I')...))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			conn, err := pgconn.Connect(ctx, s.URL("app", "app"))
			require.NoError(t, err)
			_, _ = conn.Exec(ctx, "SELECT 1").ReadAll() // the failed script closes the connection
			conn.Close(ctx)
			errs := rec.finish()
			require.Len(t, errs, 1)
			require.Contains(t, errs[0], "script 1 of 1, step 1 of 2")
			require.Contains(t, errs[0], tc.want)
		})
	}
}

func TestScriptNeverRunFails(t *testing.T) {
	t.Parallel()
	rec := &recordingTB{TB: t}
	s := pgmock.NewServer(rec, pgmock.Options{})
	s.Expect(pgmock.ExpectQuery("SELECT 1"))
	errs := rec.finish()
	require.Len(t, errs, 1)
	require.True(t, strings.Contains(errs[0], "script 1 of 1 was never run"), errs[0])
}

func TestScriptCutShortFails(t *testing.T) {
	t.Parallel()
	rec := &recordingTB{TB: t}
	s := pgmock.NewServer(rec, pgmock.Options{})
	got := make(chan struct{})
	s.Expect(
		pgmock.ExpectQuery("SELECT 1"),
		pgmock.Do(func(*pgmock.Conn) error { close(got); return nil }),
		pgmock.ExpectQuery("SELECT 2"),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, s.URL("app", "app"))
	require.NoError(t, err)
	go func() { _, _ = conn.Exec(ctx, "SELECT 1").ReadAll() }() // never answered
	<-got
	_ = conn.Conn().Close()
	errs := rec.finish()
	require.Len(t, errs, 1)
	require.Contains(t, errs[0], `step 3 of 3 (connection pid 1000 secret 08b35b68): expected *pgproto3.Query {"Type":"Query","String":"SELECT 2"}, got error`)
}

func TestCloseConnEndsTheConnection(t *testing.T) {
	t.Parallel()
	s := pgmock.NewServer(t, pgmock.Options{})
	s.Expect(pgmock.ExpectQuery("SELECT 1"), pgmock.CloseConn())
	conn := connect(t, s)
	_, err := conn.Exec(context.Background(), "SELECT 1").ReadAll()
	require.Error(t, err)
	s.Wait(5 * time.Second)
}
