package integration_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// SQL-level PREPARE / EXECUTE / DEALLOCATE through cmpool outside session mode: each
// client's names are its own, whatever server it lands on.

// simpleText runs sql with the simple protocol and returns the first column of each row
// of its last result.
func simpleText(ctx context.Context, conn *pgx.Conn, sql string) ([]string, error) {
	results, err := conn.PgConn().Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	var out []string
	if len(results) > 0 {
		for _, row := range results[len(results)-1].Rows {
			out = append(out, string(row[0]))
		}
	}
	return out, nil
}

// one runs sql and returns the single value it gives.
func one(t *testing.T, ctx context.Context, conn *pgx.Conn, sql string) string {
	t.Helper()
	rows, err := simpleText(ctx, conn, sql)
	require.NoError(t, err, sql)
	require.Len(t, rows, 1, sql)
	return rows[0]
}

// failsWith runs sql and requires the error code.
func failsWith(t *testing.T, ctx context.Context, conn *pgx.Conn, sql, code string) {
	t.Helper()
	_, err := simpleText(ctx, conn, sql)
	require.Error(t, err, sql)
	require.Equal(t, code, pgCode(err), "%s: %v", sql, err)
}

func exec1(t *testing.T, ctx context.Context, conn *pgx.Conn, sql string) {
	t.Helper()
	_, err := simpleText(ctx, conn, sql)
	require.NoError(t, err, sql)
}

func TestSQLPrepareTwoClientsOneServer(t *testing.T) {
	for _, mode := range []pool.Mode{pool.ModeTransaction, pool.ModeStatement} {
		t.Run(string(mode), func(t *testing.T) {
			_, p := proxy(t, pool.Config{PoolMode: mode, DefaultPoolSize: 1})
			ctx := ctxT(t, 60*time.Second)
			a := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
			b := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)

			// pgx's Exec with no arguments is a simple query.
			_, err := a.Exec(ctx, "PREPARE s AS SELECT 1")
			require.NoError(t, err)
			_, err = b.Exec(ctx, "PREPARE s AS SELECT 2")
			require.NoError(t, err)
			exec1(t, ctx, a, "PREPARE only_a (int) AS SELECT $1 + 100")
			for i := range 20 {
				first, second := a, b
				if i%2 == 1 {
					first, second = b, a
				}
				require.Equal(t, map[*pgx.Conn]string{a: "1", b: "2"}[first], one(t, ctx, first, "EXECUTE s"))
				require.Equal(t, map[*pgx.Conn]string{a: "1", b: "2"}[second], one(t, ctx, second, "execute S"))
			}
			require.Equal(t, "105", one(t, ctx, a, "EXECUTE only_a(5)"))

			// B never prepared only_a; a name in cmpool's own namespace is no way in either.
			failsWith(t, ctx, b, "EXECUTE only_a(5)", "26000")
			var serverName string
			require.NoError(t, a.QueryRow(ctx, "SELECT name FROM pg_prepared_statements WHERE statement LIKE '%$1 + 100%'").Scan(&serverName))
			require.True(t, strings.HasPrefix(serverName, "cmpool_"), serverName)
			failsWith(t, ctx, b, "EXECUTE "+serverName+"(5)", "26000")

			// Names share one namespace, SQL- or protocol-level, as on a server.
			failsWith(t, ctx, a, "PREPARE s AS SELECT 3", "42P05")
			require.Equal(t, "1", one(t, ctx, a, "EXECUTE s"))
			_, err = a.Prepare(ctx, "proto", "SELECT 'proto'")
			require.NoError(t, err)
			failsWith(t, ctx, a, "PREPARE proto AS SELECT 4", "42P05")
			_, err = a.Prepare(ctx, "s", "SELECT 'other'")
			require.Equal(t, "42P05", pgCode(err), "%v", err)

			// Quoted names keep their case; bare ones are folded.
			exec1(t, ctx, a, `PREPARE "Mixed" (int, text) AS SELECT $1 * 2 || $2`)
			require.Equal(t, "42x", one(t, ctx, a, `EXECUTE "Mixed"(21, 'x')`))
			failsWith(t, ctx, a, "EXECUTE Mixed(21, 'x')", "26000")

			// A PREPARE the server refuses is not remembered.
			failsWith(t, ctx, a, "PREPARE bad AS SELECT * FROM no_such_table_sqlprepare", "42P01")
			failsWith(t, ctx, a, "EXECUTE bad", "26000")
			failsWith(t, ctx, a, "PREPARE bad2 AS SELEC 1", "42601")
			failsWith(t, ctx, a, "EXECUTE bad2", "26000")
			// Wrong arguments: the server's errors.
			failsWith(t, ctx, a, "EXECUTE only_a", "42601")
			failsWith(t, ctx, a, "EXECUTE only_a('x')", "22P02")

			// EXPLAIN [ANALYZE] EXECUTE and CREATE TABLE AS EXECUTE.
			rows, err := simpleText(ctx, a, "EXPLAIN (COSTS OFF) EXECUTE only_a(1)")
			require.NoError(t, err)
			require.Contains(t, strings.Join(rows, "\n"), "Result")
			rows, err = simpleText(ctx, b, "EXPLAIN ANALYZE EXECUTE s")
			require.NoError(t, err)
			require.Contains(t, strings.Join(rows, "\n"), "actual time")
			exec1(t, ctx, a, "DROP TABLE IF EXISTS sqlprepare_ctas_"+string(mode))
			exec1(t, ctx, a, "CREATE TABLE sqlprepare_ctas_"+string(mode)+" AS EXECUTE only_a(7)")
			require.Equal(t, "107", one(t, ctx, b, "SELECT * FROM sqlprepare_ctas_"+string(mode)))
			exec1(t, ctx, a, "DROP TABLE sqlprepare_ctas_"+string(mode))

			// Several statements in one query with these commands are refused.
			failsWith(t, ctx, a, "SELECT 1; EXECUTE s", "0A000")
			// Through the extended protocol too.
			_, err = a.PgConn().ExecParams(ctx, "EXECUTE s", nil, nil, nil, nil).Close()
			require.Equal(t, "0A000", pgCode(err), "%v", err)

			// DEALLOCATE, DEALLOCATE ALL, DISCARD ALL.
			exec1(t, ctx, a, "DEALLOCATE s")
			failsWith(t, ctx, a, "EXECUTE s", "26000")
			require.Equal(t, "2", one(t, ctx, b, "EXECUTE s"), "B's s is B's")
			failsWith(t, ctx, a, "DEALLOCATE s", "26000")
			exec1(t, ctx, a, "PREPARE s AS SELECT 'again'")
			require.Equal(t, "again", one(t, ctx, a, "EXECUTE s"))
			exec1(t, ctx, a, "DEALLOCATE PREPARE ALL")
			failsWith(t, ctx, a, "EXECUTE s", "26000")
			failsWith(t, ctx, a, "EXECUTE only_a(1)", "26000")
			// A protocol-level Close drops an SQL-level name too, as on a server.
			exec1(t, ctx, a, "PREPARE closed AS SELECT 1")
			require.NoError(t, a.PgConn().Deallocate(ctx, "closed"))
			failsWith(t, ctx, a, "EXECUTE closed", "26000")
			exec1(t, ctx, b, "DISCARD ALL")
			failsWith(t, ctx, b, "EXECUTE s", "26000")
			exec1(t, ctx, b, "PREPARE s AS SELECT 'b again'")
			require.Equal(t, "b again", one(t, ctx, b, "EXECUTE s"))

			// A setting changed by what an EXECUTE runs is A's alone.
			exec1(t, ctx, a, "PREPARE wm AS SELECT set_config('work_mem', '7MB', false)")
			exec1(t, ctx, a, "EXECUTE wm")
			require.NotEqual(t, "7MB", one(t, ctx, b, "SHOW work_mem"))
			require.Equal(t, "7MB", one(t, ctx, a, "SHOW work_mem"))
			require.NotEqual(t, "7MB", one(t, ctx, b, "SHOW work_mem"))

			// Once A is gone, nothing of A's is B's by name.
			exec1(t, ctx, a, "PREPARE gone AS SELECT 'a'")
			require.Equal(t, "a", one(t, ctx, a, "EXECUTE gone"))
			require.NoError(t, a.Close(ctx))
			failsWith(t, ctx, b, "EXECUTE gone", "26000")
			exec1(t, ctx, b, "PREPARE gone AS SELECT 'b'")
			require.Equal(t, "b", one(t, ctx, b, "EXECUTE gone"))
		})
	}
}

// TestSQLPrepareAcrossTransactions: clients use their statements in many transactions
// on two servers, while other clients take the servers in between.
func TestSQLPrepareAcrossTransactions(t *testing.T) {
	_, p := proxy(t, pool.Config{DefaultPoolSize: 2})
	ctx := ctxT(t, 120*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for w := range 6 {
		conn := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
		wg.Go(func() {
			run := func(sql string) ([]string, error) {
				rows, err := simpleText(ctx, conn, sql)
				if err != nil {
					return nil, fmt.Errorf("worker %d %q: %w", w, sql, err)
				}
				return rows, nil
			}
			// Workers 0 and 3 (and 1 and 4, …) prepare the same texts: they share the
			// server-side statements.
			if _, err := run(fmt.Sprintf("PREPARE mine (int) AS SELECT $1 * %d", w%3+1)); err != nil {
				errs <- err
				return
			}
			if _, err := run(fmt.Sprintf("PREPARE tag AS SELECT 'worker %d'", w)); err != nil {
				errs <- err
				return
			}
			for i := range 30 {
				if i%3 == 0 {
					if _, err := run("BEGIN"); err != nil {
						errs <- err
						return
					}
				}
				rows, err := run(fmt.Sprintf("EXECUTE mine(%d)", i))
				if err == nil && (len(rows) != 1 || rows[0] != fmt.Sprint(i*(w%3+1))) {
					err = fmt.Errorf("worker %d: EXECUTE mine(%d) gave %v", w, i, rows)
				}
				if err == nil {
					rows, err = run("EXECUTE tag")
					if err == nil && (len(rows) != 1 || rows[0] != fmt.Sprintf("worker %d", w)) {
						err = fmt.Errorf("worker %d: EXECUTE tag gave %v", w, rows)
					}
				}
				if err == nil && i%3 == 0 {
					_, err = run("COMMIT")
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestSQLPrepareServerKilled: after the server a statement was prepared on is killed,
// EXECUTE prepares it again on the next server.
func TestSQLPrepareServerKilled(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 1})
	ctx := ctxT(t, 60*time.Second)
	conn := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	exec1(t, ctx, conn, "PREPARE pid AS SELECT pg_backend_pid()")
	exec1(t, ctx, conn, "PREPARE sq (int) AS SELECT $1 * $1")
	require.Equal(t, "81", one(t, ctx, conn, "EXECUTE sq(9)"))
	before := one(t, ctx, conn, "EXECUTE pid")

	admin := direct(t, c)
	var killed bool
	require.NoError(t, admin.QueryRow(ctx, "SELECT pg_terminate_backend($1::int)", before).Scan(&killed))
	require.True(t, killed)
	// Once the server is gone (its socket closed) and has been idle a second, cmpool
	// finds it dead before lending it.
	require.Eventually(t, func() bool {
		var n int
		err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int", before).Scan(&n)
		return err == nil && n == 0
	}, 30*time.Second, 50*time.Millisecond)
	time.Sleep(1500 * time.Millisecond)

	after := one(t, ctx, conn, "EXECUTE pid")
	require.NotEqual(t, before, after)
	require.Equal(t, "144", one(t, ctx, conn, "EXECUTE sq(12)"))
}

// TestSQLPreparePsql runs a psql script with PREPARE, EXECUTE and DEALLOCATE through
// cmpool in transaction mode.
func TestSQLPreparePsql(t *testing.T) {
	_, p := proxy(t, pool.Config{DefaultPoolSize: 1})
	ctx := ctxT(t, 60*time.Second)
	script := `
PREPARE add (int, int) AS SELECT $1 + $2 AS sum;
EXECUTE add(2, 3);
BEGIN;
EXECUTE add(10, 20);
COMMIT;
PREPARE "Greet" (text) AS SELECT 'hello ' || $1 AS greeting;
EXECUTE "Greet"('psql');
DEALLOCATE add;
EXECUTE add(1, 1);
EXECUTE "Greet"('again');
`
	file := filepath.Join(t.TempDir(), "prepare.sql")
	require.NoError(t, os.WriteFile(file, []byte(script), 0o600))
	out, err := exec.CommandContext(ctx, psqlPath(t), "-X", "-A", "-t", "-f", file, p.URL("", "")).CombinedOutput()
	require.NoError(t, err, string(out))
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Equal(t, []string{"PREPARE", "5", "BEGIN", "30", "COMMIT", "PREPARE", "hello psql", "DEALLOCATE"}, lines[:8], string(out))
	require.Contains(t, lines[8], `prepared statement "add" does not exist`)
	require.Equal(t, "hello again", lines[9], string(out))
}

// TestSQLPrepareSessionMode: session mode passes PREPARE and EXECUTE through unchanged.
func TestSQLPrepareSessionMode(t *testing.T) {
	_, p := proxy(t, pool.Config{PoolMode: pool.ModeSession, DefaultPoolSize: 1})
	ctx := ctxT(t, 30*time.Second)
	conn := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	exec1(t, ctx, conn, "PREPARE plain AS SELECT 'session'")
	require.Equal(t, "session", one(t, ctx, conn, "EXECUTE plain"))
	require.Equal(t, "plain", one(t, ctx, conn, "SELECT name FROM pg_prepared_statements WHERE name = 'plain'"))
	rows, err := simpleText(ctx, conn, "PREPARE two AS SELECT 2; EXECUTE two")
	require.NoError(t, err)
	require.Equal(t, []string{"2"}, rows)
}

// TestSQLPrepareEvicts: a server keeps at most max_prepared_statements SQL-level
// statements; the others are prepared again when used.
func TestSQLPrepareEvicts(t *testing.T) {
	_, p := proxy(t, pool.Config{DefaultPoolSize: 1, MaxPreparedStatements: 2})
	ctx := ctxT(t, 60*time.Second)
	conn := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	for i := range 5 {
		exec1(t, ctx, conn, fmt.Sprintf("PREPARE e%d AS SELECT %d", i, i))
	}
	for round := range 3 {
		for i := range 5 {
			require.Equal(t, fmt.Sprint(i), one(t, ctx, conn, fmt.Sprintf("EXECUTE e%d", i)), "round %d", round)
		}
		n := one(t, ctx, conn, "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'cmpool_sql_%'")
		require.Equal(t, "2", n)
	}
}

// TestSQLPrepareAfterDDL: a PREPARE after DDL is analysed against the new schema on
// every server, not served by a copy another client prepared before the DDL.
func TestSQLPrepareAfterDDL(t *testing.T) {
	_, p := proxy(t, pool.Config{DefaultPoolSize: 2})
	ctx := ctxT(t, 60*time.Second)
	x := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	y := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	exec1(t, ctx, x, "DROP TABLE IF EXISTS sqlprepare_ddl")
	exec1(t, ctx, x, "CREATE TABLE sqlprepare_ddl (a int)")
	t.Cleanup(func() { _, _ = x.Exec(context.Background(), "DROP TABLE IF EXISTS sqlprepare_ddl") })
	exec1(t, ctx, x, "INSERT INTO sqlprepare_ddl VALUES (1)")
	exec1(t, ctx, x, "PREPARE s AS SELECT * FROM sqlprepare_ddl")
	exec1(t, ctx, y, "PREPARE s AS SELECT * FROM sqlprepare_ddl")
	// Both servers get the statement: X holds one while Y runs it on the other.
	exec1(t, ctx, x, "BEGIN")
	exec1(t, ctx, x, "EXECUTE s")
	exec1(t, ctx, y, "EXECUTE s")
	exec1(t, ctx, x, "COMMIT")

	exec1(t, ctx, x, "ALTER TABLE sqlprepare_ddl ADD COLUMN b int DEFAULT 7")
	z := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	exec1(t, ctx, z, "PREPARE s AS SELECT * FROM sqlprepare_ddl")
	pids := map[string]bool{}
	for i := 0; i < 40 && len(pids) < 2; i++ {
		if i%2 == 1 {
			exec1(t, ctx, x, "BEGIN")
			exec1(t, ctx, x, "SELECT 1")
		}
		exec1(t, ctx, z, "BEGIN")
		res, err := z.PgConn().Exec(ctx, "EXECUTE s").ReadAll()
		require.NoError(t, err)
		require.Len(t, res[0].FieldDescriptions, 2, "the statement sees the new column")
		pids[one(t, ctx, z, "SELECT pg_backend_pid()")] = true
		exec1(t, ctx, z, "COMMIT")
		if i%2 == 1 {
			exec1(t, ctx, x, "COMMIT")
		}
	}
	require.Len(t, pids, 2, "z ran on both servers")
}

// TestSQLPrepareRouted: with a replica, an EXECUTE is routed by the statement it runs,
// as a Bind of a protocol-level statement is: reads to the replica, writes to the
// primary, and a read after the client's write sees it.
func TestSQLPrepareRouted(t *testing.T) {
	c := sharedCluster(t)
	p := routedOn(t, c, pool.Config{DefaultPoolSize: 2})
	ctx := ctxT(t, 60*time.Second)
	conn := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	exec1(t, ctx, conn, "DROP TABLE IF EXISTS sqlprepare_routed")
	exec1(t, ctx, conn, "CREATE TABLE sqlprepare_routed (id int)")
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS sqlprepare_routed") })

	exec1(t, ctx, conn, "PREPARE where_am_i AS SELECT pg_is_in_recovery()")
	exec1(t, ctx, conn, "PREPARE ins (int) AS INSERT INTO sqlprepare_routed VALUES ($1)")
	exec1(t, ctx, conn, "PREPARE cnt AS SELECT count(*) FROM sqlprepare_routed")
	// Once the replica has replayed the client's writes (read-your-writes), reads go there.
	require.Eventually(t, func() bool {
		rows, err := simpleText(ctx, conn, "EXECUTE where_am_i")
		return err == nil && len(rows) == 1 && rows[0] == "t"
	}, 20*time.Second, 50*time.Millisecond, "an EXECUTE of a read never ran on the replica")
	for i := range 5 {
		exec1(t, ctx, conn, fmt.Sprintf("EXECUTE ins(%d)", i))
		require.Equal(t, fmt.Sprint(i+1), one(t, ctx, conn, "EXECUTE cnt"), "the client's own write is seen")
	}
	// EXPLAIN ANALYZE and CREATE TABLE AS of an EXECUTE go by their own text.
	_, err := simpleText(ctx, conn, "EXPLAIN ANALYZE EXECUTE ins(9)")
	require.NoError(t, err)
	exec1(t, ctx, conn, "DROP TABLE IF EXISTS sqlprepare_routed_copy")
	exec1(t, ctx, conn, "CREATE TABLE sqlprepare_routed_copy AS EXECUTE where_am_i")
	exec1(t, ctx, conn, "DROP TABLE sqlprepare_routed_copy")
	require.Equal(t, "6", one(t, ctx, conn, "EXECUTE cnt"))
}

// TestSQLPrepareLostOnServer: when a server loses a statement where cmpool cannot see it
// (DEALLOCATE ALL run by a function), the EXECUTE that finds out fails with 26000, and
// the next one prepares it again.
func TestSQLPrepareLostOnServer(t *testing.T) {
	_, p := proxy(t, pool.Config{DefaultPoolSize: 1})
	ctx := ctxT(t, 60*time.Second)
	conn := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	exec1(t, ctx, conn, "PREPARE lost AS SELECT 'here'")
	require.Equal(t, "here", one(t, ctx, conn, "EXECUTE lost"))
	exec1(t, ctx, conn, "DO $$BEGIN EXECUTE 'DEALLOCATE ALL'; END$$")
	failsWith(t, ctx, conn, "EXECUTE lost", "26000")
	require.Equal(t, "here", one(t, ctx, conn, "EXECUTE lost"))
}
