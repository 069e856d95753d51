package integration_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// mixQuerier is what *pgx.Conn, pgx.Tx and *pgxpool.Pool have in common.
type mixQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Begin(ctx context.Context) (pgx.Tx, error)
}

func want[T comparable](got, exp T) error {
	if got != exp {
		return fmt.Errorf("got %v, want %v", got, exp)
	}
	return nil
}

// mixStatements are twelve distinct parameterised statement texts; each runs its statement
// with values derived from n and checks every value it gets back.
var mixStatements = []func(ctx context.Context, q mixQuerier, n int) error{
	func(ctx context.Context, q mixQuerier, n int) error {
		var a int
		if err := q.QueryRow(ctx, "select $1::int + 1", n).Scan(&a); err != nil {
			return err
		}
		return want(a, n+1)
	},
	func(ctx context.Context, q mixQuerier, n int) error {
		var a int
		var s string
		if err := q.QueryRow(ctx, "select $1::int * 2, $2::text", n, "s"+strconv.Itoa(n)).Scan(&a, &s); err != nil {
			return err
		}
		return errors.Join(want(a, 2*n), want(s, "s"+strconv.Itoa(n)))
	},
	func(ctx context.Context, q mixQuerier, n int) error {
		var s string
		if err := q.QueryRow(ctx, "select $1::text || $2::text", "a'b\\", strconv.Itoa(n)).Scan(&s); err != nil {
			return err
		}
		return want(s, "a'b\\"+strconv.Itoa(n))
	},
	func(ctx context.Context, q mixQuerier, n int) error {
		var a int64
		if err := q.QueryRow(ctx, "select $1::bigint - 7", int64(n)).Scan(&a); err != nil {
			return err
		}
		return want(a, int64(n)-7)
	},
	func(ctx context.Context, q mixQuerier, n int) error {
		k := n%20 + 1
		rows, err := q.Query(ctx, "select g from generate_series(1, $1::int) g", k)
		if err != nil {
			return err
		}
		sum, count := 0, 0
		for rows.Next() {
			var g int
			if err := rows.Scan(&g); err != nil {
				rows.Close()
				return err
			}
			sum += g
			count++
		}
		if err := rows.Err(); err != nil {
			return err
		}
		return errors.Join(want(count, k), want(sum, k*(k+1)/2))
	},
	func(ctx context.Context, q mixQuerier, n int) error {
		in := strings.Repeat("x", n%50)
		var l int
		var up string
		if err := q.QueryRow(ctx, "select length($1::text), upper($1::text)", in).Scan(&l, &up); err != nil {
			return err
		}
		return errors.Join(want(l, len(in)), want(up, strings.ToUpper(in)))
	},
	func(ctx context.Context, q mixQuerier, n int) error {
		var f float64
		if err := q.QueryRow(ctx, "select $1::float8 / 4", float64(n)).Scan(&f); err != nil {
			return err
		}
		return want(f, float64(n)/4)
	},
	func(ctx context.Context, q mixQuerier, n int) error {
		var arr []int32
		if err := q.QueryRow(ctx, "select array[$1::int, $2::int, $1::int + $2::int]", n, 3).Scan(&arr); err != nil {
			return err
		}
		if !slices.Equal(arr, []int32{int32(n), 3, int32(n) + 3}) {
			return fmt.Errorf("got %v", arr)
		}
		return nil
	},
	func(ctx context.Context, q mixQuerier, n int) error {
		var b bool
		if err := q.QueryRow(ctx, "select $1::bool and $2::bool", n%2 == 0, true).Scan(&b); err != nil {
			return err
		}
		return want(b, n%2 == 0)
	},
	func(ctx context.Context, q mixQuerier, n int) error {
		var arg any = "v" + strconv.Itoa(n)
		exp := "v" + strconv.Itoa(n)
		if n%3 == 0 {
			arg, exp = nil, "null"
		}
		var s string
		if err := q.QueryRow(ctx, "select coalesce($1::text, 'null')", arg).Scan(&s); err != nil {
			return err
		}
		return want(s, exp)
	},
	func(ctx context.Context, q mixQuerier, n int) error {
		var d time.Time
		if err := q.QueryRow(ctx, "select '2024-01-01'::date + $1::int", n%300).Scan(&d); err != nil {
			return err
		}
		return want(d.Format(time.DateOnly), time.Date(2024, 1, 1+n%300, 0, 0, 0, 0, time.UTC).Format(time.DateOnly))
	},
	func(ctx context.Context, q mixQuerier, n int) error {
		var a int
		var b string
		var c int64
		if err := q.QueryRow(ctx, "select $1::int as a, $2::text as b, $3::int8 as c", n, "é€", int64(n)*1000).Scan(&a, &b, &c); err != nil {
			return err
		}
		return errors.Join(want(a, n), want(b, "é€"), want(c, int64(n)*1000))
	},
}

// runMix runs queries statements from the mix as worker w; every eighth step is an
// explicit transaction that inserts a row and runs two statements, then rolls back.
func runMix(ctx context.Context, q mixQuerier, w, queries int) error {
	for i := range queries {
		n := w*100 + i
		idx := (w*5 + i) % len(mixStatements)
		if i%8 == 3 {
			tx, err := q.Begin(ctx)
			if err != nil {
				return fmt.Errorf("worker %d step %d begin: %w", w, i, err)
			}
			if _, err := tx.Exec(ctx, "insert into many_t(w, i) values ($1, $2)", w, i); err != nil {
				_ = tx.Rollback(ctx)
				return fmt.Errorf("worker %d step %d insert: %w", w, i, err)
			}
			for j := range 2 {
				k := (idx + j*5) % len(mixStatements)
				if err := mixStatements[k](ctx, tx, n+j); err != nil {
					_ = tx.Rollback(ctx)
					return fmt.Errorf("worker %d step %d tx statement %d: %w", w, i, k, err)
				}
			}
			var seen int
			if err := tx.QueryRow(ctx, "select count(*) from many_t where w = $1 and i = $2", w, i).Scan(&seen); err != nil {
				_ = tx.Rollback(ctx)
				return fmt.Errorf("worker %d step %d tx count: %w", w, i, err)
			}
			if seen != 1 {
				_ = tx.Rollback(ctx)
				return fmt.Errorf("worker %d step %d: own insert not visible inside transaction (%d rows)", w, i, seen)
			}
			if err := tx.Rollback(ctx); err != nil {
				return fmt.Errorf("worker %d step %d rollback: %w", w, i, err)
			}
			continue
		}
		if err := mixStatements[idx](ctx, q, n); err != nil {
			return fmt.Errorf("worker %d step %d statement %d: %w", w, i, idx, err)
		}
	}
	return nil
}

// TestManyClientsAllExecModes runs fifty clients in every pgx exec mode, plus a pgxpool,
// through five server connections, so statements are prepared and replayed across servers.
func TestManyClientsAllExecModes(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 5})
	ctx := ctxT(t, 3*time.Minute)
	admin := direct(t, c)
	_, err := admin.Exec(ctx, "drop table if exists many_t; create table many_t(w int, i int)")
	require.NoError(t, err)

	modes := []pgx.QueryExecMode{
		pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec,
		pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol,
	}
	conns := make([]*pgx.Conn, 50)
	for w := range conns {
		conns[w] = connect(t, p.URL("", ""), modes[w%len(modes)])
	}
	pcfg, err := pgxpool.ParseConfig(p.URL("", ""))
	require.NoError(t, err)
	pcfg.MaxConns = 20
	pl, err := pgxpool.NewWithConfig(ctx, pcfg)
	require.NoError(t, err)
	t.Cleanup(pl.Close)

	var wg sync.WaitGroup
	errs := make(chan error, len(conns)+20)
	for w, conn := range conns {
		wg.Go(func() {
			if err := runMix(ctx, conn, w, 30); err != nil {
				errs <- fmt.Errorf("%s: %w", modes[w%len(modes)], err)
			}
		})
	}
	for w := 100; w < 120; w++ {
		wg.Go(func() {
			if err := runMix(ctx, pl, w, 30); err != nil {
				errs <- fmt.Errorf("pgxpool: %w", err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	var n int
	require.NoError(t, admin.QueryRow(ctx, "select count(*) from many_t").Scan(&n))
	require.Zero(t, n, "rolled-back inserts must not persist")
	assertNoDirtyServers(t, c)
}

// TestLibPQ drives the proxy with database/sql and lib/pq, which prepares named statements
// for db.Prepare and unnamed ones (Parse/Describe/Sync, then Bind/Execute/Sync) for
// queries with arguments.
func TestLibPQ(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 5})
	ctx := ctxT(t, 60*time.Second)
	_, err := direct(t, c).Exec(ctx, "drop table if exists libpq_t; create table libpq_t(x int)")
	require.NoError(t, err)

	db, err := sql.Open("postgres", p.URL("", ""))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	db.SetMaxOpenConns(10)
	require.NoError(t, db.PingContext(ctx))

	stmt, err := db.PrepareContext(ctx, "select $1::int * 2, $2::text || '!'")
	require.NoError(t, err)
	t.Cleanup(func() { _ = stmt.Close() })
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for g := range 5 {
		wg.Go(func() {
			for i := range 10 {
				n := g*10 + i
				var a int
				var s string
				if err := stmt.QueryRowContext(ctx, n, "v"+strconv.Itoa(n)).Scan(&a, &s); err != nil {
					errs <- fmt.Errorf("goroutine %d run %d: %w", g, i, err)
					return
				}
				if a != 2*n || s != "v"+strconv.Itoa(n)+"!" {
					errs <- fmt.Errorf("goroutine %d run %d: got %d %q", g, i, a, s)
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

	// A transaction that is rolled back leaves nothing behind.
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(ctx, "insert into libpq_t values ($1)", 7)
	require.NoError(t, err)
	var n int
	require.NoError(t, tx.QueryRowContext(ctx, "select count(*) from libpq_t where x = $1", 7).Scan(&n))
	require.Equal(t, 1, n)
	require.NoError(t, tx.Rollback())
	require.NoError(t, db.QueryRowContext(ctx, "select count(*) from libpq_t").Scan(&n))
	require.Zero(t, n)

	// An error leaves the pool usable, prepared statement included.
	_, err = db.ExecContext(ctx, "select 1/0")
	var pqErr *pq.Error
	require.ErrorAs(t, err, &pqErr)
	require.Equal(t, "22012", string(pqErr.Code))
	var one int
	require.NoError(t, db.QueryRowContext(ctx, "select 1").Scan(&one))
	require.Equal(t, 1, one)
	// The same error from an unnamed extended-protocol statement.
	err = db.QueryRowContext(ctx, "select 1/$1::int", 0).Scan(&one)
	require.ErrorAs(t, err, &pqErr)
	require.Equal(t, "22012", string(pqErr.Code))
	var a int
	var s string
	require.NoError(t, stmt.QueryRowContext(ctx, 21, "after").Scan(&a, &s))
	require.Equal(t, 42, a)
	require.Equal(t, "after!", s)

	// A query with parameters returning several rows.
	rows, err := db.QueryContext(ctx, "select g, $1::text || g from generate_series(1, $2::int) g", "row", 5)
	require.NoError(t, err)
	var got []string
	for rows.Next() {
		var g int
		var label string
		require.NoError(t, rows.Scan(&g, &label))
		got = append(got, fmt.Sprintf("%d:%s", g, label))
	}
	require.NoError(t, rows.Err())
	require.NoError(t, rows.Close())
	require.Equal(t, []string{"1:row1", "2:row2", "3:row3", "4:row4", "5:row5"}, got)
	assertNoDirtyServers(t, c)
}

// TestSessionStateDoesNotLeak shares one server connection between a client that changes
// session settings and one that does not: each must always see its own.
func TestSessionStateDoesNotLeak(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 1})
	ctx := ctxT(t, 60*time.Second)
	_, err := direct(t, c).Exec(ctx, "create schema if not exists a_schema; create table if not exists a_schema.only_a(x int)")
	require.NoError(t, err)

	a := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	b := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	show := func(conn *pgx.Conn, what string) string {
		t.Helper()
		var v string
		require.NoError(t, conn.QueryRow(ctx, what).Scan(&v))
		return v
	}
	type setting struct{ name, query string }
	settings := []setting{
		{"timezone", "show timezone"},
		{"utc offset", "select to_char(now(), 'TZH:TZM')"},
		{"search_path", "show search_path"},
		{"work_mem", "show work_mem"},
		{"only_a visible", "select coalesce(to_regclass('only_a')::text, '-')"},
	}

	// B's own view, read before A changes anything.
	bWant := map[string]string{}
	for _, s := range settings {
		bWant[s.name] = show(b, s.query)
	}
	require.Equal(t, `"$user", public`, bWant["search_path"])
	require.Equal(t, "4MB", bWant["work_mem"])
	require.Equal(t, "-", bWant["only_a visible"])

	for _, q := range []string{
		"SET TimeZone = 'Asia/Kathmandu'",
		"SET search_path = a_schema, public",
		"SET work_mem = '11MB'",
	} {
		_, err := a.Exec(ctx, q)
		require.NoError(t, err, q)
	}
	aWant := map[string]string{
		"timezone":       "Asia/Kathmandu",
		"utc offset":     "+05:45",
		"search_path":    "a_schema, public",
		"work_mem":       "11MB",
		"only_a visible": "only_a",
	}

	// Report the first mismatch of each (client, setting) pair, not just the first overall,
	// so a failure says which settings leak.
	reported := map[string]bool{}
	check := func(who string, conn *pgx.Conn, exp map[string]string, when string) {
		t.Helper()
		for _, s := range settings {
			got := show(conn, s.query)
			key := who + "/" + s.name
			if got != exp[s.name] && !reported[key] {
				reported[key] = true
				t.Errorf("%s: client %s sees %s = %q, want %q", when, who, s.name, got, exp[s.name])
			}
		}
	}
	for round := range 20 {
		when := fmt.Sprintf("round %d", round)
		if round%2 == 0 {
			check("A", a, aWant, when)
			check("B", b, bWant, when)
		} else {
			check("B", b, bWant, when)
			check("A", a, aWant, when)
		}
	}

	// SET LOCAL lasts only until the end of its transaction.
	_, err = a.Exec(ctx, "begin")
	require.NoError(t, err)
	_, err = a.Exec(ctx, "SET LOCAL work_mem = '13MB'")
	require.NoError(t, err)
	require.Equal(t, "13MB", show(a, "show work_mem"))
	_, err = a.Exec(ctx, "commit")
	require.NoError(t, err)
	check("A", a, aWant, "after SET LOCAL and commit")
	check("B", b, bWant, "after A's SET LOCAL and commit")

	// A SET in a transaction that rolls back is undone.
	_, err = a.Exec(ctx, "begin")
	require.NoError(t, err)
	_, err = a.Exec(ctx, "SET work_mem = '20MB'")
	require.NoError(t, err)
	require.Equal(t, "20MB", show(a, "show work_mem"))
	_, err = a.Exec(ctx, "rollback")
	require.NoError(t, err)
	check("A", a, aWant, "after SET in a rolled-back transaction")
	check("B", b, bWant, "after A's SET in a rolled-back transaction")
}

// TestSessionStateBothClientsSet shares one server between two clients that each set their
// own value of parameters the server does not report (work_mem, statement_timeout): the
// server's value must be followed through every change, not only the first.
func TestSessionStateBothClientsSet(t *testing.T) {
	_, p := proxy(t, pool.Config{DefaultPoolSize: 1})
	ctx := ctxT(t, 60*time.Second)
	a := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	b := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)
	show := func(conn *pgx.Conn, what string) string {
		t.Helper()
		var v string
		require.NoError(t, conn.QueryRow(ctx, "show "+what).Scan(&v))
		return v
	}
	exec := func(conn *pgx.Conn, q string) {
		t.Helper()
		_, err := conn.Exec(ctx, q)
		require.NoError(t, err, q)
	}
	exec(a, "SET work_mem = '1MB'")
	exec(a, "SET statement_timeout = '7s'")
	exec(b, "SET work_mem = '2MB'")
	exec(b, "SET statement_timeout = '9s'")
	for round := range 6 {
		require.Equal(t, "1MB", show(a, "work_mem"), "round %d", round)
		require.Equal(t, "7s", show(a, "statement_timeout"), "round %d", round)
		require.Equal(t, "2MB", show(b, "work_mem"), "round %d", round)
		require.Equal(t, "9s", show(b, "statement_timeout"), "round %d", round)
	}
	exec(b, "RESET work_mem")
	require.Equal(t, "1MB", show(a, "work_mem"))
	require.Equal(t, "4MB", show(b, "work_mem"))
	require.Equal(t, "1MB", show(a, "work_mem"))
}

// TestLRUEvictionWithRotation rotates more statements than a server keeps.
func TestLRUEvictionWithRotation(t *testing.T) {
	_, p := proxy(t, pool.Config{DefaultPoolSize: 1, MaxPreparedStatements: 2})
	ctx := ctxT(t, 60*time.Second)
	conn := connect(t, p.URL("", ""), pgx.QueryExecModeCacheStatement)
	for round := range 5 {
		for i := range 10 {
			var n int
			var s string
			q := fmt.Sprintf("select $1::int + %d, 'stmt%d'::text", i, i)
			require.NoError(t, conn.QueryRow(ctx, q, round*100).Scan(&n, &s), "round %d statement %d", round, i)
			require.Equal(t, round*100+i, n)
			require.Equal(t, fmt.Sprintf("stmt%d", i), s)
		}
	}
	var n int
	require.NoError(t, conn.QueryRow(ctx, "select count(*) from pg_prepared_statements where name like 'cmpool_%'",
		pgx.QueryExecModeSimpleProtocol).Scan(&n))
	require.LessOrEqual(t, n, 2)
}

// TestResultTypeChangeAfterDDL changes a table's columns under a prepared statement: after
// at most one "cached plan must not change result type" error the statement works again.
func TestResultTypeChangeAfterDDL(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 5})
	ctx := ctxT(t, 60*time.Second)
	admin := direct(t, c)
	_, err := admin.Exec(ctx, `drop table if exists ddl_t, ddl_t2;
		create table ddl_t(a int); insert into ddl_t values (1);
		create table ddl_t2(a int); insert into ddl_t2 values (1)`)
	require.NoError(t, err)

	t.Run("pgx", func(t *testing.T) {
		conn := connect(t, p.URL("", ""), pgx.QueryExecModeCacheStatement)
		query := func() (int, error) {
			rows, err := conn.Query(ctx, "select * from ddl_t")
			if err != nil {
				return 0, err
			}
			for rows.Next() {
				if _, err := rows.Values(); err != nil {
					rows.Close()
					return 0, err
				}
			}
			rows.Close()
			return len(rows.FieldDescriptions()), rows.Err()
		}
		for range 2 {
			cols, err := query()
			require.NoError(t, err)
			require.Equal(t, 1, cols)
		}
		_, err := admin.Exec(ctx, "alter table ddl_t add column b text")
		require.NoError(t, err)
		// pgx's default mode trusts its cached row description and sends no Describe, so
		// it must see the error once (it then drops its cache); a silent retry would feed
		// it rows of the new shape.
		_, err = query()
		require.Equal(t, "0A000", pgCode(err), "got %v", err)
		require.Contains(t, err.Error(), "cached plan must not change result type")
		cols, err := query()
		require.NoError(t, err, "the query after the 0A000 error must succeed")
		require.Equal(t, 2, cols)
		cols, err = query()
		require.NoError(t, err)
		require.Equal(t, 2, cols)
	})

	t.Run("pgconn", func(t *testing.T) {
		conn := connect(t, p.URL("", ""), pgx.QueryExecModeCacheStatement)
		pc := conn.PgConn()
		_, err := pc.Prepare(ctx, "q", "select * from ddl_t2", nil)
		require.NoError(t, err)
		res := pc.ExecPrepared(ctx, "q", nil, nil, nil).Read()
		require.NoError(t, res.Err)
		require.Len(t, res.FieldDescriptions, 1)
		_, err = admin.Exec(ctx, "alter table ddl_t2 add column b text")
		require.NoError(t, err)
		// pgconn describes the portal on every execution, so cmpool retries for it once,
		// with the statement prepared afresh: the client never sees the error.
		res = pc.ExecPrepared(ctx, "q", nil, nil, nil).Read()
		require.NoError(t, res.Err, "the retried execution after ALTER")
		require.Len(t, res.FieldDescriptions, 2)
		res = pc.ExecPrepared(ctx, "q", nil, nil, nil).Read()
		require.NoError(t, res.Err, "ExecPrepared after the 0A000 error must succeed")
		require.Len(t, res.FieldDescriptions, 2)
		require.Len(t, res.Rows, 1)
		require.Equal(t, "1", string(res.Rows[0][0]))
		require.Nil(t, res.Rows[0][1])
	})
	assertNoDirtyServers(t, c)
}

// TestSessionOnlyFeatures checks features that outlive a transaction: LISTEN with other
// statements and temp tables are refused, and session advisory locks are cleaned up with a
// warning: with pin_session_state = false (pin_test.go tests pinning, the default).
func TestSessionOnlyFeatures(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 1, PinSessionStateOff: true})
	ctx := ctxT(t, 60*time.Second)

	var mu sync.Mutex
	var notices []*pgconn.Notice
	cfg, err := pgx.ParseConfig(p.URL("", ""))
	require.NoError(t, err)
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		defer mu.Unlock()
		notices = append(notices, n)
	}
	a, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	b := connect(t, p.URL("", ""), pgx.QueryExecModeSimpleProtocol)

	// takeWarnings returns and clears the WARNING notices A got so far.
	takeWarnings := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, n := range notices {
			if n.Severity == "WARNING" {
				out = append(out, strings.Join([]string{n.Message, n.Detail, n.Hint}, " "))
			}
		}
		notices = nil
		return out
	}
	mentionsTxPooling := func(ws []string) bool {
		for _, w := range ws {
			if strings.Contains(strings.ToLower(w), "transaction pooling") {
				return true
			}
		}
		return false
	}

	t.Run("listen", func(t *testing.T) {
		// LISTEN on its own is answered by cmpool (notify_test.go); with other statements
		// it is refused.
		_, err := a.Exec(ctx, "LISTEN x; SELECT 1")
		require.Equal(t, "0A000", pgCode(err), "got %v", err)
		var n int
		require.NoError(t, a.QueryRow(ctx, "select 1").Scan(&n))
	})

	t.Run("temp table", func(t *testing.T) {
		// Refused: it would not outlive the transaction (temptables_test.go has more).
		takeWarnings()
		tx, err := a.Begin(ctx)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, "create temp table tt(x int)")
		require.Equal(t, "0A000", pgCode(err), "got %v", err)
		require.NoError(t, tx.Rollback(ctx))
		var n int
		require.NoError(t, b.QueryRow(ctx, "select count(*) from pg_class where relname='tt' and relpersistence='t'").Scan(&n))
		require.Zero(t, n, "the temp table must not reach a shared server")
	})

	t.Run("advisory lock", func(t *testing.T) {
		takeWarnings()
		_, err := a.Exec(ctx, "select pg_advisory_lock(42)")
		require.NoError(t, err)
		var n int
		require.NoError(t, a.QueryRow(ctx, "select 1").Scan(&n))
		require.NoError(t, b.QueryRow(ctx, "select 1").Scan(&n))

		d := direct(t, c)
		var got bool
		require.NoError(t, d.QueryRow(ctx, "select pg_try_advisory_lock(42)").Scan(&got))
		require.True(t, got, "the session advisory lock must not outlive the transaction")
		_, err = d.Exec(ctx, "select pg_advisory_unlock_all()")
		require.NoError(t, err)
		ws := takeWarnings()
		require.True(t, mentionsTxPooling(ws), "want a WARNING mentioning transaction pooling, got %q", ws)
	})
	assertNoDirtyServers(t, c)
}
