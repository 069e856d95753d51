package backend_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/backend"
	"github.com/cmlite/cmpool/pool/internal/pgmock"
)

func connect(t *testing.T, s *pgmock.Server) *backend.Conn {
	t.Helper()
	cfg, err := pgconn.ParseConfig(s.URL("app", "app"))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sc, err := backend.Connect(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sc.Close() })
	return sc
}

func TestConnectKeepsTheLogin(t *testing.T) {
	t.Parallel()
	s := pgmock.NewServer(t, pgmock.Options{Params: map[string]string{"application_name": "pgmock"}})
	sc := connect(t, s)
	require.Equal(t, s.Keys()[0].ProcessID, sc.PID)
	require.Equal(t, byte('I'), sc.TxStatus)
	require.Equal(t, "15.0", sc.Defaults["server_version"])
	require.Equal(t, "pgmock", sc.Defaults["application_name"])
	require.Empty(t, sc.Set)
	require.True(t, sc.Alive())
}

func TestExec(t *testing.T) {
	t.Parallel()
	s := pgmock.NewServer(t, pgmock.Options{})
	s.Expect(
		pgmock.ExpectQuery("BEGIN; SET application_name = 'x'; SELECT 'a', NULL"),
		pgmock.Send(&pgproto3.CommandComplete{CommandTag: []byte("BEGIN")}),
		pgmock.Send(&pgproto3.ParameterStatus{Name: "application_name", Value: "x"}),
		pgmock.Send(pgmock.Reply([]string{"a", "b"}, [][]string{{"a", ""}, {"second", "row"}}, "SELECT 2", 'T')...),
		pgmock.ExpectQuery("SELECT broken"),
		pgmock.Send(pgmock.Error("42703", "column \"broken\" does not exist"), pgmock.Error("XX000", "second error")),
		pgmock.Send(&pgproto3.ReadyForQuery{TxStatus: 'E'}),
		pgmock.ExpectQuery("ROLLBACK"),
		pgmock.Send(&pgproto3.ParameterStatus{Name: "application_name", Value: ""}),
		pgmock.Send(pgmock.Reply(nil, nil, "ROLLBACK", 'I')...),
	)
	sc := connect(t, s)
	ctx := context.Background()

	res, err := sc.Exec(ctx, "BEGIN; SET application_name = 'x'; SELECT 'a', NULL")
	require.NoError(t, err)
	require.Nil(t, res.Err)
	require.Equal(t, [][2]string{{"application_name", "x"}}, res.Reported)
	require.Equal(t, []string{"a", ""}, res.Row, "the first row only")
	require.Equal(t, byte('T'), sc.TxStatus)
	require.Equal(t, map[string]string{"application_name": "x"}, sc.Set)

	res, err = sc.Exec(ctx, "SELECT broken")
	require.NoError(t, err)
	require.NotNil(t, res.Err)
	require.Equal(t, "42703", res.Err.Code, "the first error")
	require.Equal(t, byte('E'), sc.TxStatus)

	res, err = sc.Exec(ctx, "ROLLBACK")
	require.NoError(t, err)
	require.Nil(t, res.Err)
	require.Equal(t, byte('I'), sc.TxStatus)
	require.Empty(t, sc.Set, "back to the login value")
	s.Wait(5 * time.Second)
}

func TestExecRefusesCopyIn(t *testing.T) {
	t.Parallel()
	s := pgmock.NewServer(t, pgmock.Options{})
	s.Expect(
		pgmock.ExpectQuery("COPY t FROM STDIN"),
		pgmock.Send(&pgproto3.CopyInResponse{}),
		pgmock.Expect(&pgproto3.CopyFail{Message: "cmpool: unexpected COPY"}),
		pgmock.Send(pgmock.Error("57014", "COPY from stdin failed"), &pgproto3.ReadyForQuery{TxStatus: 'I'}),
	)
	sc := connect(t, s)
	res, err := sc.Exec(context.Background(), "COPY t FROM STDIN")
	require.NoError(t, err)
	require.Equal(t, "57014", res.Err.Code)
	s.Wait(5 * time.Second)
}

func TestExecFailsOnALostServer(t *testing.T) {
	t.Parallel()
	s := pgmock.NewServer(t, pgmock.Options{})
	s.Expect(pgmock.ExpectQuery("SELECT 1"), pgmock.CloseConn())
	sc := connect(t, s)
	_, err := sc.Exec(context.Background(), "SELECT 1")
	require.Error(t, err)
	s.Wait(5 * time.Second)
}

func TestNoteParameterStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, param, value string
		wantSet            map[string]string
		wantDefault        string
	}{
		{name: "a change is a setting", param: "TimeZone", value: "Europe/Paris", wantSet: map[string]string{"DateStyle": "German", "TimeZone": "Europe/Paris"}, wantDefault: "UTC"},
		{name: "back to the login value", param: "DateStyle", value: "ISO, MDY", wantSet: map[string]string{}, wantDefault: "ISO, MDY"},
		{name: "a fact about the server", param: "in_hot_standby", value: "off", wantSet: map[string]string{"DateStyle": "German"}, wantDefault: "off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := &backend.Conn{
				Defaults: map[string]string{"TimeZone": "UTC", "DateStyle": "ISO, MDY", "in_hot_standby": "on"},
				Set:      map[string]string{"DateStyle": "German"},
			}
			sc.NoteParameterStatus(tc.param, tc.value)
			require.Equal(t, tc.wantSet, sc.Set)
			require.Equal(t, tc.wantDefault, sc.Defaults[tc.param])
			v, ok := sc.Param(tc.param)
			require.True(t, ok)
			require.Equal(t, tc.value, v)
		})
	}
}

// TestAliveSeesAClosedIdleServer: a server that closed an idle connection (a restart, an
// idle timeout, a crash) is seen dead at once, before any read of the connection.
func TestAliveSeesAClosedIdleServer(t *testing.T) {
	t.Parallel()
	s := pgmock.NewServer(t, pgmock.Options{})
	s.Expect(
		pgmock.ExpectQuery("SELECT 1"),
		pgmock.Send(pgmock.Reply([]string{"x"}, [][]string{{"1"}}, "SELECT 1", 'I')...),
		pgmock.CloseConn(),
	)
	sc := connect(t, s)
	res, err := sc.Exec(context.Background(), "SELECT 1")
	require.NoError(t, err)
	require.Nil(t, res.Err)
	s.Wait(5 * time.Second)
	require.Eventually(t, func() bool { return !sc.Alive() }, 5*time.Second, time.Millisecond,
		"the server closed its side of the idle connection")
	require.False(t, sc.Alive(), "and Alive keeps saying so")
}

// TestAliveSeesAMessageOnAnIdleServer: an idle server sends nothing unprompted; a
// message waiting (a FATAL from a shutdown) means the connection is done, even while the
// server keeps it open.
func TestAliveSeesAMessageOnAnIdleServer(t *testing.T) {
	t.Parallel()
	s := pgmock.NewServer(t, pgmock.Options{})
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	s.Expect(
		pgmock.ExpectQuery("SELECT 1"),
		pgmock.Send(pgmock.Reply([]string{"x"}, [][]string{{"1"}}, "SELECT 1", 'I')...),
		pgmock.Send(pgmock.Error("57P01", "terminating connection due to administrator command")),
		pgmock.Do(func(*pgmock.Conn) error { <-hold; return nil }),
	)
	sc := connect(t, s)
	_, err := sc.Exec(context.Background(), "SELECT 1")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !sc.Alive() }, 5*time.Second, time.Millisecond)
	require.False(t, sc.Alive())
}

// BenchmarkAlive is the cost of checking an idle connection before it is lent.
func BenchmarkAlive(b *testing.B) {
	s := pgmock.NewServer(b, pgmock.Options{})
	cfg, err := pgconn.ParseConfig(s.URL("app", "app"))
	require.NoError(b, err)
	sc, err := backend.Connect(context.Background(), cfg)
	require.NoError(b, err)
	b.Cleanup(func() { _ = sc.Close() })
	b.ReportAllocs()
	for b.Loop() {
		if !sc.Alive() {
			b.Fatal("not alive")
		}
	}
}
