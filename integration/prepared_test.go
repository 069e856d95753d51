package integration_test

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// TestDriverExecModesAcrossServers runs every pgx exec mode from many clients sharing two
// server connections, so that statements prepared on one server are used on the other.
func TestDriverExecModesAcrossServers(t *testing.T) {
	_, p := proxy(t, pool.Config{DefaultPoolSize: 2})
	modes := []pgx.QueryExecMode{
		pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec,
		pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol,
	}
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			ctx := ctxT(t, 60*time.Second)
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for w := range 8 {
				conn := connect(t, p.URL("", ""), mode)
				wg.Go(func() {
					for i := range 40 {
						var a int
						var b string
						q := fmt.Sprintf("select $1::int * %d, $2::text || '-%d'", i%5, w%3)
						if err := conn.QueryRow(ctx, q, i, "v").Scan(&a, &b); err != nil {
							errs <- fmt.Errorf("worker %d query %d: %w", w, i, err)
							return
						}
						if a != i*(i%5) || b != fmt.Sprintf("v-%d", w%3) {
							errs <- fmt.Errorf("worker %d query %d: wrong result %d %q", w, i, a, b)
							return
						}
						if i%10 == 0 {
							tx, err := conn.Begin(ctx)
							if err == nil {
								err = tx.QueryRow(ctx, "select $1::int", i).Scan(&a)
							}
							if err == nil {
								err = tx.Rollback(ctx)
							}
							if err != nil {
								errs <- fmt.Errorf("worker %d tx %d: %w", w, i, err)
								return
							}
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

func TestPgbenchPrepared(t *testing.T) {
	c, p := proxy(t, pool.Config{DefaultPoolSize: 5})
	admin := direct(t, c)
	freshDatabase(t, admin, "benchprep")
	out, err := exec.Command(pgTool(t, "pgbench"), "-i", "-q", "-s", "1", c.Primary.URL("benchprep", "")).CombinedOutput()
	require.NoError(t, err, string(out))
	for _, args := range [][]string{{"-S"}, {}} {
		cmd := append([]string{"-n", "-M", "prepared", "-c", "50", "-j", "2", "-t", "40"}, args...)
		out, err := exec.Command(pgTool(t, "pgbench"), append(cmd, p.URL("benchprep", ""))...).CombinedOutput()
		require.NoError(t, err, string(out))
		require.Contains(t, string(out), "number of transactions actually processed: 2000/2000", string(out))
	}
	// Clients share server preparations: far fewer Parses reach the servers than clients send.
	var ps pool.PoolStat
	for _, s := range p.Server.Stat().Pools {
		if s.Database == "benchprep" {
			ps = s
		}
	}
	require.Positive(t, ps.ClientParses)
	require.Positive(t, ps.Binds)
	require.Less(t, ps.ServerParses, ps.ClientParses/2, "%+v", ps)
	t.Logf("prepared-statement counters: %+v", ps)
}

func TestPreparedStatementErrors(t *testing.T) {
	_, p := proxy(t, pool.Config{DefaultPoolSize: 2})
	ctx := ctxT(t, 30*time.Second)
	conn := connect(t, p.URL("", ""), pgx.QueryExecModeExec)
	pc := conn.PgConn()

	_, err := pc.Prepare(ctx, "s1", "select $1::int + 1", nil)
	require.NoError(t, err)
	_, err = pc.Prepare(ctx, "s1", "select 2", nil)
	require.Equal(t, "42P05", pgCode(err), "got %v", err)
	require.Contains(t, err.Error(), `prepared statement "s1" already exists`)

	res := pc.ExecPrepared(ctx, "nope", nil, nil, nil).Read()
	require.Equal(t, "26000", pgCode(res.Err), "got %v", res.Err)
	require.Contains(t, res.Err.Error(), `"nope"`)

	// A name in cmpool's own namespace never reaches another client's statement.
	res = pc.ExecPrepared(ctx, "cmpool_1", nil, nil, nil).Read()
	require.Equal(t, "26000", pgCode(res.Err), "got %v", res.Err)

	// s1 still works after the errors, on whichever server.
	for range 5 {
		res = pc.ExecPrepared(ctx, "s1", [][]byte{[]byte("41")}, nil, nil).Read()
		require.NoError(t, res.Err)
		require.Equal(t, "42", string(res.Rows[0][0]))
	}

	// Close then re-Parse the same name with other text.
	require.NoError(t, pc.Deallocate(ctx, "s1"))
	_, err = pc.Prepare(ctx, "s1", "select 'again'::text", nil)
	require.NoError(t, err)
	res = pc.ExecPrepared(ctx, "s1", nil, nil, nil).Read()
	require.NoError(t, res.Err)
	require.Equal(t, "again", string(res.Rows[0][0]))

	// A Parse that fails leaves no statement behind.
	_, err = pc.Prepare(ctx, "bad", "select from nowhere_at_all", nil)
	require.Equal(t, "42P01", pgCode(err), "got %v", err)
	_, err = pc.Prepare(ctx, "bad", "select 3", nil)
	require.NoError(t, err)
}

func TestDeallocateAndDiscard(t *testing.T) {
	_, p := proxy(t, pool.Config{DefaultPoolSize: 2})
	ctx := ctxT(t, 30*time.Second)
	conn := connect(t, p.URL("", "")+"&timezone=Asia/Tokyo", pgx.QueryExecModeExec)
	pc := conn.PgConn()
	_, err := pc.Prepare(ctx, "a", "select 1", nil)
	require.NoError(t, err)
	_, err = pc.Prepare(ctx, "b", "select 2", nil)
	require.NoError(t, err)

	tag, err := pc.Exec(ctx, "DEALLOCATE a").ReadAll()
	require.NoError(t, err)
	require.Equal(t, "DEALLOCATE", tag[0].CommandTag.String())
	_, err = pc.Prepare(ctx, "a", "select 11", nil) // the name is free again
	require.NoError(t, err)
	_, err = pc.Exec(ctx, "deallocate nope").ReadAll()
	require.Equal(t, "26000", pgCode(err))

	tag, err = pc.Exec(ctx, "deallocate all").ReadAll()
	require.NoError(t, err)
	require.Equal(t, "DEALLOCATE ALL", tag[0].CommandTag.String())
	_, err = pc.Prepare(ctx, "a", "select 111", nil)
	require.NoError(t, err)
	_, err = pc.Prepare(ctx, "b", "select 222", nil)
	require.NoError(t, err)

	_, err = pc.Exec(ctx, "set timezone = 'Europe/Paris'").ReadAll()
	require.NoError(t, err)
	tag, err = pc.Exec(ctx, "/* pool reset */ DISCARD ALL;").ReadAll()
	require.NoError(t, err)
	require.Equal(t, "DISCARD ALL", tag[0].CommandTag.String())
	_, err = pc.Prepare(ctx, "b", "select 2222", nil)
	require.NoError(t, err)
	var tz string
	require.NoError(t, conn.QueryRow(ctx, "show timezone").Scan(&tz))
	require.Equal(t, "Asia/Tokyo", tz, "DISCARD ALL returns to the session's startup settings")

	// Inside a transaction the reply keeps the transaction status.
	_, err = pc.Exec(ctx, "begin").ReadAll()
	require.NoError(t, err)
	_, err = pc.Exec(ctx, "deallocate all").ReadAll()
	require.NoError(t, err)
	require.Equal(t, byte('T'), pc.TxStatus())
	_, err = pc.Exec(ctx, "commit").ReadAll()
	require.NoError(t, err)
}

func TestPreparedStatementsShareAndEvict(t *testing.T) {
	_, p := proxy(t, pool.Config{DefaultPoolSize: 1, MaxPreparedStatements: 3})
	ctx := ctxT(t, 30*time.Second)
	a := connect(t, p.URL("", "")+"&application_name=prep_share", pgx.QueryExecModeCacheStatement)
	b := connect(t, p.URL("", "")+"&application_name=prep_share", pgx.QueryExecModeCacheStatement)

	// Ten distinct statements through a server that keeps three: each is replayed as
	// needed, and the server never holds more than three.
	for round := range 3 {
		for i := range 10 {
			for _, conn := range []*pgx.Conn{a, b} {
				var n int
				require.NoError(t, conn.QueryRow(ctx, fmt.Sprintf("select $1::int + %d", i), round).Scan(&n))
				require.Equal(t, round+i, n)
			}
		}
	}
	serverStatements := func() int {
		// Ask through the proxy, on the one server connection.
		var n int
		require.NoError(t, a.QueryRow(ctx, "select count(*) from pg_prepared_statements where name like 'cmpool_%'", pgx.QueryExecModeSimpleProtocol).Scan(&n))
		return n
	}
	require.LessOrEqual(t, serverStatements(), 3)

	// Two clients preparing the same text share one server statement.
	_, err := a.PgConn().Prepare(ctx, "mine", "select 'shared'::text", nil)
	require.NoError(t, err)
	_, err = b.PgConn().Prepare(ctx, "theirs", "select 'shared'::text", nil)
	require.NoError(t, err)
	var n int
	require.NoError(t, a.QueryRow(ctx, "select count(*) from pg_prepared_statements where statement = 'select ''shared''::text'", pgx.QueryExecModeSimpleProtocol).Scan(&n))
	require.Equal(t, 1, n)
}

func TestPreparedStatementsInPipelineWithError(t *testing.T) {
	_, p := proxy(t, pool.Config{DefaultPoolSize: 1})
	ctx := ctxT(t, 30*time.Second)
	conn := connect(t, p.URL("", ""), pgx.QueryExecModeCacheStatement)
	pc := conn.PgConn()
	_, err := pc.Prepare(ctx, "known", "select $1::int * 2", nil)
	require.NoError(t, err)

	// One Sync segment: a good Parse, a failing Bind, then Parses that the server skips.
	pl := pc.StartPipeline(ctx)
	pl.SendPrepare("p_ok", "select 'ok'::text", nil)
	pl.SendQueryPrepared("known", [][]byte{[]byte("not-an-int")}, nil, nil)
	pl.SendPrepare("p_skipped", "select 'skipped'::text", nil)
	require.NoError(t, pl.Sync())
	errCodes := pipelineOutcomes(t, pl, 1)
	_ = pl.Close()
	require.Equal(t, "prepared,22P02,sync", strings.Join(errCodes, ","))

	// p_ok exists, p_skipped does not (the server skipped it), and both names behave so.
	res := pc.ExecPrepared(ctx, "p_ok", nil, nil, nil).Read()
	require.NoError(t, res.Err)
	res = pc.ExecPrepared(ctx, "p_skipped", nil, nil, nil).Read()
	require.Equal(t, "26000", pgCode(res.Err), "got %v", res.Err)
	_, err = pc.Prepare(ctx, "p_skipped", "select 'now'::text", nil)
	require.NoError(t, err)
	res = pc.ExecPrepared(ctx, "known", [][]byte{[]byte("21")}, nil, nil).Read()
	require.NoError(t, res.Err)
	require.Equal(t, "42", string(res.Rows[0][0]))
}
