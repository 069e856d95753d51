package admin_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/admin"
	"github.com/cmlite/cmpool/protocol"
)

// fakeController records the console's calls and answers from its fields.
type fakeController struct {
	snap      admin.Snapshot
	roles     map[string]admin.Role
	parts     []admin.Parts
	calls     []string
	notPaused bool
	fixed     []string
	err       error
	setErr    *protocol.Error
}

func (f *fakeController) Snapshot(parts admin.Parts) *admin.Snapshot {
	f.parts = append(f.parts, parts)
	s := f.snap
	return &s
}

func (f *fakeController) Role(user string) admin.Role { return f.roles[user] }

func (f *fakeController) Pause(_ context.Context, db string) error {
	f.calls = append(f.calls, "pause "+db)
	return f.err
}

func (f *fakeController) Resume(db string) bool {
	f.calls = append(f.calls, "resume "+db)
	return !f.notPaused
}

func (f *fakeController) Kill(db string) { f.calls = append(f.calls, "kill "+db) }

func (f *fakeController) SetDisabled(db string, disabled bool) {
	if disabled {
		f.calls = append(f.calls, "disable "+db)
	} else {
		f.calls = append(f.calls, "enable "+db)
	}
}

func (f *fakeController) WaitClose(_ context.Context, db string) error {
	f.calls = append(f.calls, "wait_close "+db)
	return f.err
}

func (f *fakeController) Reconnect(db string) { f.calls = append(f.calls, "reconnect "+db) }

func (f *fakeController) Reload() ([]string, error) {
	f.calls = append(f.calls, "reload")
	return f.fixed, f.err
}

func (f *fakeController) Shutdown(mode admin.ShutdownMode) {
	f.calls = append(f.calls, fmt.Sprintf("shutdown %d", mode))
}

func (f *fakeController) KillClient(id uint64) bool {
	f.calls = append(f.calls, fmt.Sprintf("kill_client %d", id))
	return id != 404
}

func (f *fakeController) Set(key, value string) *protocol.Error {
	f.calls = append(f.calls, "set "+key+"="+value)
	return f.setErr
}

var _ admin.Controller = (*fakeController)(nil)

// reply is a console reply decoded: its tables, notices, tags and error.
type reply struct {
	cols    [][]string
	rows    [][][]*string // per table
	tags    []string
	notices []string
	err     *pgproto3.ErrorResponse
	empty   bool
}

func decode(t *testing.T, b []byte) reply {
	t.Helper()
	fe := pgproto3.NewFrontend(bytes.NewReader(b), io.Discard)
	var r reply
	for {
		msg, err := fe.Receive()
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return r
		}
		require.NoError(t, err)
		switch m := msg.(type) {
		case *pgproto3.RowDescription:
			var cols []string
			for _, f := range m.Fields {
				cols = append(cols, string(f.Name))
			}
			r.cols = append(r.cols, cols)
			r.rows = append(r.rows, nil)
		case *pgproto3.DataRow:
			row := make([]*string, len(m.Values))
			for i, v := range m.Values {
				if v != nil {
					s := string(v)
					row[i] = &s
				}
			}
			r.rows[len(r.rows)-1] = append(r.rows[len(r.rows)-1], row)
		case *pgproto3.CommandComplete:
			r.tags = append(r.tags, string(m.CommandTag))
		case *pgproto3.NoticeResponse:
			r.notices = append(r.notices, m.Message)
		case *pgproto3.ErrorResponse:
			e := *m
			r.err = &e
		case *pgproto3.EmptyQueryResponse:
			r.empty = true
		default:
			t.Fatalf("unexpected message %T", msg)
		}
	}
}

func newConsole(f *fakeController, user string) *admin.Console {
	return &admin.Console{Ctl: f, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), User: user, Version: "1.2.3"}
}

func TestConsoleCommands(t *testing.T) {
	for _, tc := range []struct {
		name, query string
		notPaused   bool
		fixed       []string
		err         error
		setErr      *protocol.Error
		calls       []string
		tags        []string
		notices     []string
		code        string
	}{
		{name: "pause all", query: "PAUSE", calls: []string{"pause "}, tags: []string{"PAUSE"}},
		{name: "pause quoted", query: `pause "db1"`, calls: []string{"pause db1"}, tags: []string{"PAUSE"}},
		{name: "pause interrupted", query: "PAUSE db1", err: context.Canceled, calls: []string{"pause db1"}, code: "57014"},
		{name: "pause two names", query: "PAUSE a b", code: "42601"},
		{name: "resume", query: "RESUME db1", calls: []string{"resume db1"}, tags: []string{"RESUME"}},
		{name: "resume not paused", query: "RESUME", notPaused: true, calls: []string{"resume "}, code: "55000"},
		{name: "kill", query: "KILL db1", calls: []string{"kill db1"}, tags: []string{"KILL"}},
		{name: "kill needs a name", query: "KILL", code: "42601"},
		{name: "disable enable", query: "DISABLE db1; enable db1", calls: []string{"disable db1", "enable db1"}, tags: []string{"DISABLE", "ENABLE"}},
		{name: "enable needs a name", query: "ENABLE", code: "42601"},
		{name: "wait_close", query: "WAIT_CLOSE", calls: []string{"wait_close "}, tags: []string{"WAIT_CLOSE"}},
		{name: "wait_close interrupted", query: "WAIT_CLOSE db1", err: context.DeadlineExceeded, calls: []string{"wait_close db1"}, code: "57014"},
		{name: "reconnect", query: "RECONNECT db1", calls: []string{"reconnect db1"}, tags: []string{"RECONNECT"}},
		{name: "reload", query: "RELOAD", calls: []string{"reload"}, tags: []string{"RELOAD"}},
		{name: "reload with fixed settings", query: "RELOAD", fixed: []string{"listen_addr", "logger"}, calls: []string{"reload"}, tags: []string{"RELOAD"},
			notices: []string{"these settings need a restart to change and were left as they are: listen_addr, logger"}},
		{name: "reload fails", query: "RELOAD", err: errors.New("bad file"), calls: []string{"reload"}, code: "22023"},
		{name: "reload takes no arguments", query: "RELOAD now", code: "42601"},
		{name: "shutdown", query: "SHUTDOWN", calls: []string{"shutdown 0"}, tags: []string{"SHUTDOWN"}},
		{name: "shutdown wait_for_servers", query: "shutdown wait_for_servers", calls: []string{"shutdown 0"}, tags: []string{"SHUTDOWN"}},
		{name: "shutdown wait_for_clients", query: "SHUTDOWN WAIT_FOR_CLIENTS", calls: []string{"shutdown 1"}, tags: []string{"SHUTDOWN"}},
		{name: "shutdown bad mode", query: "SHUTDOWN NOW", code: "42601"},
		{name: "kill_client by id", query: "KILL_CLIENT 42", calls: []string{"kill_client 42"}, tags: []string{"KILL_CLIENT"}},
		{name: "kill_client by ptr", query: "kill_client c2a", calls: []string{"kill_client 42"}, tags: []string{"KILL_CLIENT"}},
		{name: "kill_client not found", query: "KILL_CLIENT 404", calls: []string{"kill_client 404"}, code: "55000"},
		{name: "kill_client not an id", query: "KILL_CLIENT 0x12", code: "22023"},
		{name: "kill_client zero", query: "KILL_CLIENT 0", code: "22023"},
		{name: "kill_client needs an id", query: "KILL_CLIENT", code: "42601"},
		{name: "set", query: "SET default_pool_size = 5", calls: []string{"set default_pool_size=5"}, tags: []string{"SET"}},
		{name: "set to, quoted", query: "set server_reset_query to 'DISCARD ALL; SELECT ''x'''; RELOAD",
			calls: []string{"set server_reset_query=DISCARD ALL; SELECT 'x'", "reload"}, tags: []string{"SET", "RELOAD"}},
		{name: "set key case", query: `SET "Query_Timeout"=2.5`, calls: []string{"set query_timeout=2.5"}, tags: []string{"SET"}},
		{name: "set refused", query: "SET listen_addr = x", setErr: protocol.NewError("55000", "no"), calls: []string{"set listen_addr=x"}, code: "55000"},
		{name: "set no value", query: "SET query_timeout =", code: "42601"},
		{name: "set no equals", query: "SET query_timeout 5", code: "42601"},
		{name: "set trailing words", query: "SET query_timeout = 5 6", code: "42601"},
		{name: "set unclosed quote", query: "SET server_reset_query = 'abc", code: "42601"},
		{name: "set session parameter ignored", query: "SET client_encoding = 'UTF8'", tags: []string{"SET"},
			notices: []string{"SET ignored: client_encoding is a session parameter, and the console's are fixed"}},
		{name: "suspend", query: "SUSPEND", code: "0A000"},
		{name: "show fds", query: "SHOW FDS", code: "0A000"},
		{name: "unknown command", query: "FLY away", code: "42601"},
		{name: "stops at the first error", query: "RECONNECT a; KILL; RECONNECT b", calls: []string{"reconnect a"}, tags: []string{"RECONNECT"}, code: "42601"},
		{name: "show needs one word", query: "SHOW", code: "42601"},
		{name: "unknown show", query: "SHOW NOTHING", code: "42601"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeController{roles: map[string]admin.Role{"root": admin.RoleAdmin}, notPaused: tc.notPaused, fixed: tc.fixed, err: tc.err, setErr: tc.setErr}
			out, failed := newConsole(f, "root").Run(context.Background(), tc.query)
			r := decode(t, out)
			require.Equal(t, tc.calls, f.calls)
			require.Equal(t, tc.tags, r.tags)
			require.Equal(t, tc.notices, r.notices)
			if tc.code == "" {
				require.Nil(t, failed)
				require.Nil(t, r.err)
				return
			}
			require.NotNil(t, failed)
			require.Equal(t, tc.code, failed.Code)
			require.NotNil(t, r.err)
			require.Equal(t, tc.code, r.err.Code)
		})
	}
}

func TestConsoleRoles(t *testing.T) {
	f := &fakeController{roles: map[string]admin.Role{"watcher": admin.RoleStats}}
	c := newConsole(f, "watcher")
	out, failed := c.Run(context.Background(), "SHOW VERSION; PAUSE")
	require.NotNil(t, failed)
	require.Equal(t, "42501", failed.Code)
	require.Contains(t, failed.Message, `user "watcher" may only run SHOW commands`)
	r := decode(t, out)
	require.Equal(t, []string{"SHOW"}, r.tags)
	require.Empty(t, f.calls)

	require.Equal(t, admin.RoleAdmin, admin.RoleOf("a", []string{"a"}, []string{"a"}))
	require.Equal(t, admin.RoleStats, admin.RoleOf("s", []string{"a"}, []string{"s"}))
	require.Equal(t, admin.RoleNone, admin.RoleOf("x", []string{"a"}, []string{"s"}))
}

func TestConsoleEmptyQuery(t *testing.T) {
	f := &fakeController{}
	out, failed := newConsole(f, "root").Run(context.Background(), " ; ;")
	require.Nil(t, failed)
	r := decode(t, out)
	require.True(t, r.empty)
	require.Empty(t, r.tags)
}

func TestConsoleVersionAndHelp(t *testing.T) {
	f := &fakeController{}
	out, failed := newConsole(f, "x").Run(context.Background(), "show version; SHOW help")
	require.Nil(t, failed)
	r := decode(t, out)
	require.Equal(t, [][]string{{"version"}}, r.cols)
	require.Equal(t, "cmpool 1.2.3", *r.rows[0][0][0])
	require.Len(t, r.notices, 1)
	require.True(t, strings.HasPrefix(r.notices[0], "Console usage\n\tSHOW HELP|POOLS|"))
	require.Equal(t, []string{"SHOW", "SHOW"}, r.tags)
	require.Empty(t, f.parts, "VERSION and HELP need no snapshot")
}
