package integration_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// resetClient is a client with its own startup parameters, some of them given as
// options=-c name=value.
type resetClient struct {
	name    string
	startup map[string]string // as the server shows them
	params  map[string]string // startup packet parameters
	options string
}

var resetClients = []resetClient{{
	name: "a",
	startup: map[string]string{"DateStyle": "German, DMY", "TimeZone": "Asia/Kathmandu", "application_name": "reset_a",
		"search_path": "reset_a,public", "work_mem": "7MB"},
	params:  map[string]string{"DateStyle": "German, DMY", "TimeZone": "Asia/Kathmandu", "application_name": "reset_a"},
	options: "-c search_path=reset_a,public -c work_mem=7MB",
}, {
	name: "b",
	startup: map[string]string{"DateStyle": "SQL, MDY", "TimeZone": "America/St_Johns", "application_name": "reset_b",
		"search_path": "reset_b,public", "work_mem": "9MB"},
	params:  map[string]string{"DateStyle": "SQL, MDY", "TimeZone": "America/St_Johns", "application_name": "reset_b"},
	options: "-c search_path=reset_b,public -c work_mem=9MB",
}}

// resetChanged are values no client starts with.
var resetChanged = map[string]string{"DateStyle": "Postgres, YMD", "TimeZone": "Europe/Paris", "application_name": "changed",
	"search_path": "public", "work_mem": "1MB"}

// reportedByServer are the parameters PostgreSQL 15 reports with ParameterStatus.
var reportedByServer = map[string]bool{"DateStyle": true, "TimeZone": true, "application_name": true}

func (rc resetClient) connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	for k, v := range rc.params {
		cfg.RuntimeParams[k] = v
	}
	cfg.RuntimeParams["options"] = rc.options
	conn, err := pgx.ConnectConfig(ctxT(t, 30*time.Second), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// checkSettings fails unless conn shows want, with SHOW and with the ParameterStatus
// values pgx holds.
func checkSettings(t *testing.T, ctx context.Context, conn *pgx.Conn, extended bool, want map[string]string, when string) {
	t.Helper()
	for name, v := range want {
		var got string
		var err error
		if extended {
			res := conn.PgConn().ExecParams(ctx, "show "+name, nil, nil, nil, nil).Read()
			err = res.Err
			if err == nil {
				require.Len(t, res.Rows, 1)
				got = string(res.Rows[0][0])
			}
		} else {
			err = conn.QueryRow(ctx, "show "+name, pgx.QueryExecModeSimpleProtocol).Scan(&got)
		}
		require.NoError(t, err)
		require.Equal(t, v, got, "%s: SHOW %s", when, name)
		if reportedByServer[name] {
			require.Equal(t, v, conn.PgConn().ParameterStatus(name), "%s: ParameterStatus %s", when, name)
		}
	}
}

func setAll(t *testing.T, ctx context.Context, conn *pgx.Conn, extended bool, values map[string]string) {
	t.Helper()
	for name, v := range values {
		require.NoError(t, execVia(ctx, conn, extended, fmt.Sprintf("SET %s TO '%s'", name, v)))
	}
}

// only returns the entry of m named name.
func only(m map[string]string, name string) map[string]string {
	return map[string]string{name: m[name]}
}

// merged returns m with over's entries over it.
func merged(m, over map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

// resetScenario runs RESET, RESET ALL and DISCARD ALL on client rc, checking after each
// step that it sees its startup values as on a direct connection. between runs after each
// step (the other client's turn, in transaction mode).
func resetScenario(t *testing.T, ctx context.Context, conn *pgx.Conn, rc resetClient, extended bool, between func(string)) {
	run := func(sql string) {
		t.Helper()
		require.NoError(t, execVia(ctx, conn, extended, sql), sql)
	}
	check := func(want map[string]string, when string) {
		t.Helper()
		checkSettings(t, ctx, conn, extended, want, rc.name+": "+when)
		between(when)
	}
	check(rc.startup, "at start")

	setAll(t, ctx, conn, extended, resetChanged)
	check(resetChanged, "after SET")
	cur := merged(resetChanged, nil)
	for _, name := range []string{"DateStyle", "TimeZone", "application_name", "search_path", "work_mem"} {
		run("RESET " + name)
		cur = merged(cur, only(rc.startup, name))
		check(cur, "after RESET "+name)
	}
	check(rc.startup, "after every RESET")

	// SET … TO DEFAULT is a RESET.
	setAll(t, ctx, conn, extended, resetChanged)
	run("SET DateStyle TO DEFAULT")
	run("SET work_mem = DEFAULT")
	run("SET TIME ZONE DEFAULT")
	check(merged(resetChanged, map[string]string{"DateStyle": rc.startup["DateStyle"], "work_mem": rc.startup["work_mem"],
		"TimeZone": rc.startup["TimeZone"]}), "after SET … TO DEFAULT")

	setAll(t, ctx, conn, extended, resetChanged)
	run("RESET ALL")
	check(rc.startup, "after RESET ALL")

	// RESET in a transaction block: the startup value at once, kept by COMMIT, undone by
	// ROLLBACK.
	setAll(t, ctx, conn, extended, only(resetChanged, "DateStyle"))
	run("BEGIN")
	run("RESET DateStyle")
	checkSettings(t, ctx, conn, extended, only(rc.startup, "DateStyle"), rc.name+": after RESET in a transaction")
	run("ROLLBACK")
	check(only(resetChanged, "DateStyle"), "after RESET and ROLLBACK")
	run("BEGIN")
	run("RESET ALL")
	checkSettings(t, ctx, conn, extended, rc.startup, rc.name+": after RESET ALL in a transaction")
	run("COMMIT")
	check(rc.startup, "after RESET ALL and COMMIT")

	if !extended {
		// A SET after RESET ALL in the same query string stands.
		setAll(t, ctx, conn, extended, resetChanged)
		run("RESET ALL; SET DateStyle TO 'Postgres, YMD'")
		check(merged(rc.startup, only(resetChanged, "DateStyle")), "after RESET ALL; SET DateStyle")
		run("RESET DateStyle")

		// DISCARD ALL cannot run through the extended protocol in transaction mode (it
		// would drop cmpool's prepared statements); as a simple query it is the client's.
		setAll(t, ctx, conn, extended, resetChanged)
		run("DISCARD ALL")
		check(rc.startup, "after DISCARD ALL")
	}
}

// TestResetToStartupValues: RESET, RESET ALL and DISCARD ALL bring a parameter back to the
// value the client gave at startup (in the startup packet or as options=-c), as on a
// direct connection, and not to the server's default: cmpool's servers are opened without
// the client's parameters. Two clients with different startup values share one server.
func TestResetToStartupValues(t *testing.T) {
	c := sharedCluster(t)
	ctx := ctxT(t, 120*time.Second)
	_, err := direct(t, c).Exec(ctx, "create schema if not exists reset_a; create schema if not exists reset_b")
	require.NoError(t, err)
	for _, proto := range protocols {
		t.Run("direct/"+proto.name, func(t *testing.T) {
			// What the scenario expects is what PostgreSQL does.
			for _, rc := range resetClients {
				resetScenario(t, ctx, rc.connect(t, c.Primary.URL("", "")), rc, proto.extended, func(string) {})
			}
		})
		t.Run("transaction/"+proto.name, func(t *testing.T) {
			p := integration.StartProxy(t, c, pool.Config{DefaultPoolSize: 1})
			a := resetClients[0].connect(t, p.URL("", ""))
			b := resetClients[1].connect(t, p.URL("", ""))
			bWant := resetClients[1].startup
			resetScenario(t, ctx, a, resetClients[0], proto.extended, func(when string) {
				checkSettings(t, ctx, b, proto.extended, bWant, "b, while a is "+when)
			})
			resetScenario(t, ctx, b, resetClients[1], proto.extended, func(when string) {
				checkSettings(t, ctx, a, proto.extended, resetClients[0].startup, "a, while b is "+when)
			})
		})
		t.Run("session/"+proto.name, func(t *testing.T) {
			p := integration.StartProxy(t, c, pool.Config{DefaultPoolSize: 1, PoolMode: pool.ModeSession})
			// One server, used by each client in turn.
			for _, rc := range resetClients {
				conn := rc.connect(t, p.URL("", ""))
				resetScenario(t, ctx, conn, rc, proto.extended, func(string) {})
				require.NoError(t, conn.Close(ctx))
			}
		})
	}
	assertNoDirtyServers(t, c)
}

// TestResetPsql: psql with PGOPTIONS, through a pooled server that another client set up.
func TestResetPsql(t *testing.T) {
	_, p := proxy(t, pool.Config{DefaultPoolSize: 1})
	ctx := ctxT(t, 60*time.Second)
	other := resetClients[1].connect(t, p.URL("", ""))
	checkSettings(t, ctx, other, false, resetClients[1].startup, "other client")
	cmd := exec.CommandContext(ctx, psqlPath(t), p.URL("", ""), "-X", "-At", "-v", "ON_ERROR_STOP=1",
		"-c", "SET DateStyle = 'Postgres, YMD'", "-c", "SET work_mem = '1MB'",
		"-c", "RESET DateStyle", "-c", "SHOW DateStyle",
		"-c", "SET DateStyle = 'Postgres, YMD'", "-c", "RESET ALL", "-c", "SHOW DateStyle", "-c", "SHOW work_mem",
		"-c", "SET DateStyle = 'Postgres, YMD'", "-c", "DISCARD ALL", "-c", "SHOW DateStyle")
	cmd.Env = append(os.Environ(), "PGOPTIONS=-c DateStyle=German,DMY -c work_mem=5MB")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, []string{"SET", "SET", "RESET", "German, DMY", "SET", "RESET", "German, DMY", "5MB", "SET", "DISCARD ALL", "German, DMY"},
		strings.Split(strings.TrimSpace(string(out)), "\n"))
	checkSettings(t, ctx, other, false, resetClients[1].startup, "other client")
}

// TestResetPipelined sends a RESET and the statement after it in one write: the startup
// value is back before the second statement runs.
func TestResetPipelined(t *testing.T) {
	c := sharedCluster(t)
	for _, mode := range []pool.Mode{pool.ModeTransaction, pool.ModeSession} {
		t.Run(string(mode), func(t *testing.T) {
			p := integration.StartProxy(t, c, pool.Config{DefaultPoolSize: 1, PoolMode: mode})
			ctx := ctxT(t, 30*time.Second)
			rc := resetClients[0]
			conn := rc.connect(t, p.URL("", ""))
			setAll(t, ctx, conn, false, resetChanged)
			pl := conn.PgConn().StartPipeline(ctx)
			pl.SendQueryParams("RESET DateStyle", nil, nil, nil, nil)
			require.NoError(t, pl.Sync())
			pl.SendQueryParams("SHOW DateStyle", nil, nil, nil, nil)
			pl.SendQueryParams("RESET ALL", nil, nil, nil, nil)
			require.NoError(t, pl.Sync())
			pl.SendQueryParams("SHOW work_mem", nil, nil, nil, nil)
			require.NoError(t, pl.Sync())
			var shown []string
			for syncs := 0; syncs < 3; {
				res, err := pl.GetResults()
				require.NoError(t, err)
				switch r := res.(type) {
				case *pgconn.ResultReader:
					rr := r.Read()
					require.NoError(t, rr.Err)
					if len(rr.Rows) == 1 {
						shown = append(shown, string(rr.Rows[0][0]))
					}
				case *pgconn.PipelineSync:
					syncs++
				}
			}
			require.NoError(t, pl.Close())
			require.Equal(t, []string{rc.startup["DateStyle"], rc.startup["work_mem"]}, shown)
			checkSettings(t, ctx, conn, false, rc.startup, "after the pipeline")
		})
	}
}
