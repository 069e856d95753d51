package integration_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// The Go half of the driver matrix (see drivers_test.go for the workload): pgx in each of
// its five exec modes, pgxpool, lib/pq, and database/sql over pgx/stdlib, through cmpool in
// transaction mode with routing on. Each case gets an empty table (id int primary key,
// note text) and must leave ids 1..10 and 2001..2100 in it, and no id 1000.

// pgxQuerier is what *pgx.Conn and *pgxpool.Pool have in common.
type pgxQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Begin(ctx context.Context) (pgx.Tx, error)
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
}

func TestDriversGo(t *testing.T) {
	// Per connection: each driver's first reads must reach the replica right after the
	// writes of the driver before it.
	c, p := routedProxy(t, pool.Config{Consistency: "session"})

	type goCase struct {
		name string
		run  func(t *testing.T, ctx context.Context, table string)
	}
	var cases []goCase
	for _, mode := range []pgx.QueryExecMode{
		pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec,
		pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol,
	} {
		cases = append(cases, goCase{name: "pgx-" + strings.ReplaceAll(mode.String(), " ", "-"), run: func(t *testing.T, ctx context.Context, table string) {
			conn := connect(t, p.URL("", ""), mode)
			// An explicitly prepared statement, reused: the statement cache does not apply.
			// Preparing it writes nothing, so the reads that follow still go to the replica.
			_, err := conn.Prepare(ctx, "ins", fmt.Sprintf("insert into %s (id, note) values ($1, $2)", table))
			require.NoError(t, err)
			pgxWorkload(t, ctx, conn, table, func(id int) error {
				_, err := conn.Exec(ctx, "ins", id, fmt.Sprintf("row %d", id))
				return err
			}, func(sql string) (string, error) {
				var buf strings.Builder
				_, err := conn.PgConn().CopyTo(ctx, &buf, sql)
				return buf.String(), err
			})
		}})
	}
	cases = append(cases, goCase{name: "pgxpool", run: func(t *testing.T, ctx context.Context, table string) {
		pl, err := pgxpool.New(ctx, p.URL("", ""))
		require.NoError(t, err)
		t.Cleanup(pl.Close)
		ins := fmt.Sprintf("insert into %s (id, note) values ($1, $2)", table)
		pgxWorkload(t, ctx, pl, table, func(id int) error {
			// The same text every time: pgx's statement cache prepares it once per connection.
			_, err := pl.Exec(ctx, ins, id, fmt.Sprintf("row %d", id))
			return err
		}, func(sql string) (string, error) {
			conn, err := pl.Acquire(ctx)
			if err != nil {
				return "", err
			}
			defer conn.Release()
			var buf strings.Builder
			_, err = conn.Conn().PgConn().CopyTo(ctx, &buf, sql)
			return buf.String(), err
		})
	}})
	for _, driver := range []string{"postgres", "pgx"} { // lib/pq, pgx/stdlib
		name := map[string]string{"postgres": "lib-pq", "pgx": "database-sql-pgx-stdlib"}[driver]
		cases = append(cases, goCase{name: name, run: func(t *testing.T, ctx context.Context, table string) {
			db, err := sql.Open(driver, p.URL("", ""))
			require.NoError(t, err)
			t.Cleanup(func() { _ = db.Close() })
			db.SetMaxOpenConns(3)
			sqlWorkload(t, ctx, db, driver, table)
		}})
	}

	for _, gc := range cases {
		t.Run(gc.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t, 2*time.Minute)
			table := "drv_go_" + strings.NewReplacer("-", "_", " ", "_").Replace(gc.name)
			admin := direct(t, c)
			_, err := admin.Exec(ctx, fmt.Sprintf("drop table if exists %[1]s; create table %[1]s(id int primary key, note text)", table))
			require.NoError(t, err)
			require.NoError(t, c.WaitReplication(ctx))

			gc.run(t, ctx, table)

			// What the workload left behind, seen on the primary directly.
			var n, rolledBack int
			require.NoError(t, admin.QueryRow(ctx, fmt.Sprintf(
				"select count(*), count(*) filter (where id = 1000) from %s", table)).Scan(&n, &rolledBack))
			require.Equal(t, 110, n, "rows in %s", table)
			require.Zero(t, rolledBack, "the rolled-back row exists")
		})
	}
}

// pgxWorkload runs the matrix workload on a pgx connection or pool. insert inserts one row
// with a reused prepared statement; copyOut runs a COPY ... TO STDOUT.
func pgxWorkload(t *testing.T, ctx context.Context, q pgxQuerier, table string, insert func(id int) error, copyOut func(sql string) (string, error)) {
	// An autocommit read lands on the replica, with and without parameters.
	var inRecovery bool
	require.NoError(t, q.QueryRow(ctx, "select pg_is_in_recovery()").Scan(&inRecovery))
	require.True(t, inRecovery, "autocommit read should run on the replica")
	require.NoError(t, q.QueryRow(ctx, "select pg_is_in_recovery() and $1::bool", true).Scan(&inRecovery))
	require.True(t, inRecovery, "parameterised autocommit read should run on the replica")

	// Simple and parameterised queries.
	var one int
	require.NoError(t, q.QueryRow(ctx, "select 1").Scan(&one))
	require.Equal(t, 1, one)
	var sum int
	var text string
	require.NoError(t, q.QueryRow(ctx, "select $1::int + 1, $2::text", 41, "it's").Scan(&sum, &text))
	require.Equal(t, 42, sum)
	require.Equal(t, "it's", text)

	// A prepared statement reused ten times; each insert is visible to the next read.
	for id := 1; id <= 10; id++ {
		require.NoError(t, insert(id), "insert %d", id)
		var n int
		require.NoError(t, q.QueryRow(ctx, fmt.Sprintf("select count(*) from %s where id <= $1", table), id).Scan(&n))
		require.Equal(t, id, n, "count of ids <= %d (read-your-writes)", id)
	}

	// A transaction rolled back: its row is visible inside it and gone afterwards.
	tx, err := q.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, fmt.Sprintf("insert into %s (id, note) values ($1, $2)", table), 1000, "rolled back")
	require.NoError(t, err)
	var n int
	require.NoError(t, tx.QueryRow(ctx, fmt.Sprintf("select count(*) from %s where id = $1", table), 1000).Scan(&n))
	require.Equal(t, 1, n, "row visible inside its transaction")
	require.NoError(t, tx.QueryRow(ctx, "select pg_is_in_recovery()").Scan(&inRecovery))
	require.False(t, inRecovery, "a read-write transaction runs on the primary")
	require.NoError(t, tx.Rollback(ctx))
	require.NoError(t, q.QueryRow(ctx, fmt.Sprintf("select count(*) from %s where id = $1", table), 1000).Scan(&n))
	require.Zero(t, n, "rolled-back row must not exist")

	// An error inside a transaction, then rollback.
	tx, err = q.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "select 1/$1::int", 0)
	require.Equal(t, "22012", pgCode(err), "%v", err)
	_, err = tx.Exec(ctx, "select 1")
	require.Equal(t, "25P02", pgCode(err), "%v", err)
	require.NoError(t, tx.Rollback(ctx))

	// Errors in autocommit, simple and parameterised; the connection still works.
	_, err = q.Exec(ctx, "select 1/0")
	require.Equal(t, "22012", pgCode(err), "%v", err)
	require.NoError(t, q.QueryRow(ctx, "select 2").Scan(&one))
	require.Equal(t, 2, one)
	err = q.QueryRow(ctx, "select 1/$1::int", 0).Scan(&one)
	require.Equal(t, "22012", pgCode(err), "%v", err)
	require.NoError(t, q.QueryRow(ctx, "select $1::int", 3).Scan(&one))
	require.Equal(t, 3, one)
	require.NoError(t, insert(11), "the prepared statement after errors")
	_, err = q.Exec(ctx, fmt.Sprintf("delete from %s where id = $1", table), 11)
	require.NoError(t, err)

	// COPY in and out.
	rows := make([][]any, 0, 100)
	var want strings.Builder
	for id := 2001; id <= 2100; id++ {
		rows = append(rows, []any{id, fmt.Sprintf("copied %d", id)})
		fmt.Fprintf(&want, "%d\tcopied %d\n", id, id)
	}
	copied, err := q.CopyFrom(ctx, pgx.Identifier{table}, []string{"id", "note"}, pgx.CopyFromRows(rows))
	require.NoError(t, err)
	require.EqualValues(t, 100, copied)
	got, err := copyOut(fmt.Sprintf("copy (select id, note from %s where id > 2000 order by id) to stdout", table))
	require.NoError(t, err)
	require.Equal(t, want.String(), got, "COPY TO returned other rows")
	require.NoError(t, q.QueryRow(ctx, fmt.Sprintf("select count(*) from %s", table)).Scan(&n))
	require.Equal(t, 110, n)
}

// sqlWorkload runs the matrix workload through database/sql with lib/pq ("postgres") or
// pgx/stdlib ("pgx").
func sqlWorkload(t *testing.T, ctx context.Context, db *sql.DB, driver, table string) {
	require.NoError(t, db.PingContext(ctx))
	code := func(err error) string {
		var pqErr *pq.Error
		if errors.As(err, &pqErr) {
			return string(pqErr.Code)
		}
		return pgCode(err)
	}

	// An autocommit read lands on the replica, with and without parameters.
	var inRecovery bool
	require.NoError(t, db.QueryRowContext(ctx, "select pg_is_in_recovery()").Scan(&inRecovery))
	require.True(t, inRecovery, "autocommit read should run on the replica")
	require.NoError(t, db.QueryRowContext(ctx, "select pg_is_in_recovery() and $1::bool", true).Scan(&inRecovery))
	require.True(t, inRecovery, "parameterised autocommit read should run on the replica")

	// Simple and parameterised queries.
	var one int
	require.NoError(t, db.QueryRowContext(ctx, "select 1").Scan(&one))
	require.Equal(t, 1, one)
	var sum int
	var text string
	require.NoError(t, db.QueryRowContext(ctx, "select $1::int + 1, $2::text", 41, "it's").Scan(&sum, &text))
	require.Equal(t, 42, sum)
	require.Equal(t, "it's", text)

	// A prepared statement reused ten times across the pool's connections.
	ins, err := db.PrepareContext(ctx, fmt.Sprintf("insert into %s (id, note) values ($1, $2)", table))
	require.NoError(t, err)
	t.Cleanup(func() { _ = ins.Close() })
	count, err := db.PrepareContext(ctx, fmt.Sprintf("select count(*) from %s where id <= $1", table))
	require.NoError(t, err)
	t.Cleanup(func() { _ = count.Close() })
	for id := 1; id <= 10; id++ {
		_, err := ins.ExecContext(ctx, id, fmt.Sprintf("row %d", id))
		require.NoError(t, err, "insert %d", id)
		var n int
		require.NoError(t, count.QueryRowContext(ctx, id).Scan(&n))
		require.Equal(t, id, n, "count of ids <= %d (read-your-writes)", id)
	}

	// A transaction rolled back: its row is visible inside it and gone afterwards.
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(ctx, fmt.Sprintf("insert into %s (id, note) values ($1, $2)", table), 1000, "rolled back")
	require.NoError(t, err)
	var n int
	require.NoError(t, tx.QueryRowContext(ctx, fmt.Sprintf("select count(*) from %s where id = $1", table), 1000).Scan(&n))
	require.Equal(t, 1, n, "row visible inside its transaction")
	require.NoError(t, tx.QueryRowContext(ctx, "select pg_is_in_recovery()").Scan(&inRecovery))
	require.False(t, inRecovery, "a read-write transaction runs on the primary")
	require.NoError(t, tx.Rollback())
	require.NoError(t, db.QueryRowContext(ctx, fmt.Sprintf("select count(*) from %s where id = $1", table), 1000).Scan(&n))
	require.Zero(t, n, "rolled-back row must not exist")

	// An error inside a transaction, then rollback.
	tx, err = db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(ctx, "select 1/$1::int", 0)
	require.Equal(t, "22012", code(err), "%v", err)
	_, err = tx.ExecContext(ctx, "select 1")
	require.Equal(t, "25P02", code(err), "%v", err)
	require.NoError(t, tx.Rollback())

	// Errors in autocommit, simple and parameterised; the pool and the prepared statement
	// still work.
	_, err = db.ExecContext(ctx, "select 1/0")
	require.Equal(t, "22012", code(err), "%v", err)
	require.NoError(t, db.QueryRowContext(ctx, "select 2").Scan(&one))
	require.Equal(t, 2, one)
	err = db.QueryRowContext(ctx, "select 1/$1::int", 0).Scan(&one)
	require.Equal(t, "22012", code(err), "%v", err)
	require.NoError(t, count.QueryRowContext(ctx, 10).Scan(&n))
	require.Equal(t, 10, n)

	// COPY in: lib/pq's CopyIn statement in a transaction; pgx's CopyFrom on the raw
	// connection.
	switch driver {
	case "postgres":
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		stmt, err := tx.PrepareContext(ctx, pq.CopyIn(table, "id", "note"))
		require.NoError(t, err)
		for id := 2001; id <= 2100; id++ {
			_, err := stmt.ExecContext(ctx, id, fmt.Sprintf("copied %d", id))
			require.NoError(t, err)
		}
		_, err = stmt.ExecContext(ctx)
		require.NoError(t, err)
		require.NoError(t, stmt.Close())
		require.NoError(t, tx.Commit())
	case "pgx":
		conn, err := db.Conn(ctx)
		require.NoError(t, err)
		require.NoError(t, conn.Raw(func(dc any) error {
			rows := make([][]any, 0, 100)
			for id := 2001; id <= 2100; id++ {
				rows = append(rows, []any{id, fmt.Sprintf("copied %d", id)})
			}
			copied, err := dc.(*stdlib.Conn).Conn().CopyFrom(ctx, pgx.Identifier{table}, []string{"id", "note"}, pgx.CopyFromRows(rows))
			if err == nil && copied != 100 {
				err = fmt.Errorf("copied %d rows, want 100", copied)
			}
			return err
		}))
		require.NoError(t, conn.Close())
	}
	require.NoError(t, db.QueryRowContext(ctx, fmt.Sprintf("select count(*), sum(id) from %s where id > 2000", table)).Scan(&n, &sum))
	require.Equal(t, 100, n)
	require.Equal(t, 205050, sum)
}
