package main

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// TestFakePostgres: the fake server carries what pgbench and the proxies send, in each
// query mode, and its transaction status follows BEGIN and COMMIT.
func TestFakePostgres(t *testing.T) {
	f, err := startFakePostgres()
	require.NoError(t, err)
	t.Cleanup(f.stop)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec, pgx.QueryExecModeCacheStatement} {
		t.Run(mode.String(), func(t *testing.T) {
			cfg, err := pgx.ParseConfig(fakeURL(f.port(), "bench"))
			require.NoError(t, err)
			cfg.DefaultQueryExecMode = mode
			conn, err := pgx.ConnectConfig(ctx, cfg)
			require.NoError(t, err)
			defer conn.Close(ctx)
			require.Equal(t, "15.0 (fake)", conn.PgConn().ParameterStatus("server_version"))

			var n int
			require.NoError(t, conn.QueryRow(ctx, "SELECT abalance FROM pgbench_accounts WHERE aid = $1", 7).Scan(&n))
			require.Equal(t, 1, n)
			require.Equal(t, byte('I'), conn.PgConn().TxStatus())
			tx, err := conn.Begin(ctx)
			require.NoError(t, err)
			require.Equal(t, byte('T'), conn.PgConn().TxStatus())
			tag, err := tx.Exec(ctx, "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2", 1, 2)
			require.NoError(t, err)
			require.Equal(t, "UPDATE 1", tag.String())
			tag, err = tx.Exec(ctx, "INSERT INTO pgbench_history (tid) VALUES ($1)", 3)
			require.NoError(t, err)
			require.Equal(t, "INSERT 0 1", tag.String())
			require.NoError(t, tx.Commit(ctx))
			require.Equal(t, byte('I'), conn.PgConn().TxStatus())
		})
	}
	// Several statements in one query string, as proxies send for settings.
	conn, err := pgx.Connect(ctx, fakeURL(f.port(), "bench"))
	require.NoError(t, err)
	defer conn.Close(ctx)
	results, err := conn.PgConn().Exec(ctx, "SET application_name = 'x'; SELECT 1; DISCARD ALL").ReadAll()
	require.NoError(t, err)
	require.Len(t, results, 3)
	require.Equal(t, "DISCARD ALL", results[2].CommandTag.String())
	require.Equal(t, "", conn.PgConn().ParameterStatus("application_name"), "DISCARD ALL resets it")
	_, err = conn.PgConn().Exec(ctx, "").ReadAll()
	require.NoError(t, err)

	// Settings are reported as PostgreSQL reports them: by SET, by the proxies'
	// set_config, and by RESET ALL.
	for _, c := range []struct{ sql, want string }{
		{"SET application_name = 'it''s'", "it's"},
		{"SET SESSION application_name TO plain", "plain"},
		{"SELECT set_config('application_name', 'pgbench', false), set_config('work_mem', '8MB', false)", "pgbench"},
		{"SELECT set_config('application_name', NULL, false)", ""},
		{"SET application_name = 'again'; SELECT 1", "again"},
		{"RESET ALL", ""},
		{"SET application_name = 'x'", "x"},
		{"DISCARD ALL", ""},
	} {
		_, err = conn.PgConn().Exec(ctx, c.sql).ReadAll()
		require.NoError(t, err, c.sql)
		require.Equal(t, c.want, conn.PgConn().ParameterStatus("application_name"), c.sql)
	}
	_, err = conn.PgConn().Exec(ctx, "SET TimeZone = 'Europe/Paris'").ReadAll()
	require.NoError(t, err)
	require.Equal(t, "Europe/Paris", conn.PgConn().ParameterStatus("TimeZone"))
}
