package integration_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/pool"
)

// leakParams are the settings the leak tests change, read back in this order by
// leakReadQuery. A custom placeholder that was never set reads as NULL, and as ” once it
// was set and reset: both are "unset".
var leakParams = []struct{ name, value string }{
	{"search_path", "leak_a, public"},
	{"statement_timeout", "4321ms"},
	{"work_mem", "7MB"},
	{"myapp.tenant", "tenant_a"},
	{"application_name", "leak_a"},
	{"TimeZone", "Asia/Kathmandu"},
}

const leakReadQuery = "SELECT current_setting('search_path'), current_setting('statement_timeout'), " +
	"current_setting('work_mem'), coalesce(current_setting('myapp.tenant', true), ''), " +
	"current_setting('application_name'), current_setting('TimeZone')"

// leakSets returns SET statements (plain or LOCAL) for every leak parameter.
func leakSets(local bool) []string {
	var out []string
	for _, p := range leakParams {
		kw := "SET "
		if local {
			kw = "SET LOCAL "
		}
		v := "'" + p.value + "'"
		if p.name == "search_path" {
			v = p.value // a list of names, not one quoted name
		}
		out = append(out, kw+p.name+" = "+v)
	}
	return out
}

// leakSetConfig returns set_config calls for every leak parameter, comma-separated.
func leakSetConfig(local bool) string {
	var calls []string
	for _, p := range leakParams {
		calls = append(calls, fmt.Sprintf("set_config('%s', '%s', %t)", p.name, p.value, local))
	}
	return strings.Join(calls, ", ")
}

// leakSetup creates the schema, functions and procedure the leak tests call, and the
// superuser the clients log in as (so that ALTER ROLE affects nobody else).
func leakSetup(t *testing.T, c *integration.Cluster) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	var bodySet, performs, resets, clause strings.Builder
	for _, s := range leakSets(false) {
		bodySet.WriteString(s + "; ")
	}
	for _, p := range leakParams {
		fmt.Fprintf(&performs, "PERFORM set_config('%s', '%s', false); ", p.name, p.value)
		fmt.Fprintf(&resets, "RESET %s; ", p.name)
		fmt.Fprintf(&clause, " SET %s = '%s'", p.name, p.value) // a function's SET takes a list as one string
	}
	stmts := []string{
		"DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'leak_user') THEN CREATE ROLE leak_user LOGIN SUPERUSER; END IF; END$$",
		"CREATE SCHEMA IF NOT EXISTS leak_a",
		"CREATE OR REPLACE FUNCTION public.leak_body_set() RETURNS void LANGUAGE plpgsql AS $$BEGIN " + bodySet.String() + "END$$",
		"CREATE OR REPLACE FUNCTION public.leak_body_config() RETURNS void LANGUAGE plpgsql AS $$BEGIN " + performs.String() + "END$$",
		"CREATE OR REPLACE FUNCTION public.leak_body_reset() RETURNS void LANGUAGE plpgsql AS $$BEGIN " + resets.String() + "END$$",
		"CREATE OR REPLACE FUNCTION public.leak_clause() RETURNS text LANGUAGE sql" + clause.String() + " AS $$SELECT current_setting('work_mem')$$",
		"CREATE OR REPLACE FUNCTION public.leak_outer() RETURNS void LANGUAGE plpgsql AS $$BEGIN IF (true) THEN PERFORM public.leak_body_config(); END IF; END$$",
		"CREATE OR REPLACE PROCEDURE public.leak_proc() LANGUAGE plpgsql AS $$BEGIN " + bodySet.String() + "END$$",
	}
	admin := direct(t, c)
	for _, s := range stmts {
		_, err := admin.Exec(ctx, s)
		require.NoError(t, err, s)
	}
}

// leakRead returns the leak parameters as conn sees them.
func leakRead(t *testing.T, ctx context.Context, conn *pgx.Conn) []string {
	t.Helper()
	v := make([]string, len(leakParams))
	dst := make([]any, len(v))
	for i := range v {
		dst[i] = &v[i]
	}
	require.NoError(t, conn.QueryRow(ctx, leakReadQuery).Scan(dst...))
	return v
}

// TestSessionStateUntrackedChangesDoNotLeak shares one server between two clients in
// transaction mode. Client A changes session state in every way PostgreSQL offers,
// tracked by statement (SET, RESET) or not (set_config, functions, DO, CALL); each way
// is also run on a direct connection. After each, A must see what the direct connection
// sees, and B, whose statements run on the same server, must keep its own values.
func TestSessionStateUntrackedChangesDoNotLeak(t *testing.T) {
	c := sharedCluster(t)
	leakSetup(t, c)
	sets := leakSets(false)
	cases := []struct {
		name       string
		stmts      []string
		simpleOnly bool // several statements in one query
	}{
		{name: "set", stmts: sets},
		{name: "set local", stmts: append(append([]string{"BEGIN"}, leakSets(true)...), "COMMIT")},
		{name: "set_config session", stmts: []string{"SELECT " + leakSetConfig(false)}},
		{name: "set_config local in transaction", stmts: []string{"BEGIN", "SELECT " + leakSetConfig(true), "COMMIT"}},
		{name: "set_config local", stmts: []string{"SELECT " + leakSetConfig(true)}},
		{name: "function body SET", stmts: []string{"SELECT public.leak_body_set()"}},
		{name: "function body set_config", stmts: []string{"SELECT public.leak_body_config()"}},
		{name: "nested function", stmts: []string{"SELECT public.leak_outer()"}},
		{name: "function SET clause", stmts: []string{"SELECT public.leak_clause()"}},
		{name: "function in transaction", stmts: []string{"BEGIN", "SELECT public.leak_body_config()", "SELECT 1", "COMMIT"}},
		{name: "DO", stmts: []string{"DO $$BEGIN PERFORM " + leakSetConfig(false) + "; END$$"}},
		{name: "CALL", stmts: []string{"CALL public.leak_proc()"}},
		{name: "SET after another statement", stmts: []string{"SELECT 1; " + strings.Join(sets, "; ")}, simpleOnly: true},
		{name: "RESET", stmts: append(append([]string{}, sets...), "RESET search_path", "RESET statement_timeout",
			"RESET work_mem", "RESET myapp.tenant", "RESET application_name", "RESET TimeZone")},
		{name: "RESET in a function", stmts: append(append([]string{}, sets...), "SELECT public.leak_body_reset()")},
		{name: "RESET ALL", stmts: append(append([]string{}, sets...), "RESET ALL")},
		{name: "RESET ALL in DO", stmts: append(append([]string{}, sets...), "DO $$BEGIN RESET ALL; END$$")},
		{name: "set_config after SET", stmts: append(append([]string{}, sets...), "SELECT set_config('work_mem', '9MB', false)")},
		{name: "DISCARD ALL", stmts: append(append([]string{}, sets...), "DISCARD ALL")},
		{name: "ALTER ROLE SET", stmts: []string{"ALTER ROLE leak_user SET work_mem = '9MB'"}},
	}
	modes := []struct {
		name string
		mode pgx.QueryExecMode
	}{
		{"simple", pgx.QueryExecModeSimpleProtocol},
		{"unnamed", pgx.QueryExecModeExec},
		{"named", pgx.QueryExecModeCacheStatement},
	}
	for _, m := range modes {
		for _, tc := range cases {
			if tc.simpleOnly && m.mode != pgx.QueryExecModeSimpleProtocol {
				continue
			}
			t.Run(m.name+"/"+tc.name, func(t *testing.T) {
				ctx := ctxT(t, 60*time.Second)
				t.Cleanup(func() {
					_, _ = direct(t, c).Exec(context.Background(), "ALTER ROLE leak_user RESET ALL")
				})
				p := integration.StartProxy(t, c, pool.Config{DefaultPoolSize: 1})
				a := connect(t, p.URL("", "leak_user"), m.mode)
				b := connect(t, p.URL("", "leak_user"), m.mode)
				// The direct connection says what PostgreSQL does. It uses the simple protocol:
				// pgx's statement cache does not survive DISCARD ALL on it.
				d := connect(t, c.Primary.URL("", "leak_user"), pgx.QueryExecModeSimpleProtocol)
				bWant := leakRead(t, ctx, b)
				require.Equal(t, bWant, leakRead(t, ctx, d), "a fresh direct connection and a client see the same values")
				for _, s := range tc.stmts {
					_, err := a.Exec(ctx, s)
					require.NoError(t, err, "A: %s", s)
					_, err = d.Exec(ctx, s)
					require.NoError(t, err, "direct: %s", s)
				}
				aWant := leakRead(t, ctx, d)
				for round := range 3 {
					require.Equal(t, bWant, leakRead(t, ctx, b), "round %d: B sees A's settings", round)
					require.Equal(t, aWant, leakRead(t, ctx, a), "round %d: A does not see what a direct connection sees", round)
				}
				// B's statements run with B's statement_timeout, not one A left behind.
				_, err := b.Exec(ctx, "SELECT pg_sleep(0.01)")
				require.NoError(t, err)
			})
		}
	}
}

// TestSessionStateRoleOrder shares one server between a client that sets a
// superuser-only parameter, then SESSION AUTHORIZATION and ROLE to unprivileged roles,
// and clients that set nothing. Settings are re-applied in an order that works both
// ways, and no client gets an error.
func TestSessionStateRoleOrder(t *testing.T) {
	c := sharedCluster(t)
	leakSetup(t, c)
	ctx := ctxT(t, 60*time.Second)
	_, err := direct(t, c).Exec(ctx, `DO $$BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'leak_sa') THEN CREATE ROLE leak_sa; END IF;
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'leak_unpriv') THEN CREATE ROLE leak_unpriv; END IF;
		END$$; GRANT leak_unpriv TO leak_sa`)
	require.NoError(t, err)
	const who = "SELECT session_user::text, current_user::text, current_setting('log_min_duration_statement'), current_setting('work_mem')"
	read := func(t *testing.T, conn *pgx.Conn) []string {
		t.Helper()
		v := make([]string, 4)
		require.NoError(t, conn.QueryRow(ctx, who).Scan(&v[0], &v[1], &v[2], &v[3]))
		return v
	}
	for _, m := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		t.Run(m.String(), func(t *testing.T) {
			p := integration.StartProxy(t, c, pool.Config{DefaultPoolSize: 1})
			a := connect(t, p.URL("", "leak_user"), m)
			b := connect(t, p.URL("", "leak_user"), m)
			for _, s := range []string{
				"SET work_mem = '3MB'",
				"SET log_min_duration_statement = '5s'",
				"SET SESSION AUTHORIZATION leak_sa",
				"SET ROLE leak_unpriv",
			} {
				_, err := a.Exec(ctx, s)
				require.NoError(t, err, s)
			}
			aWant := []string{"leak_sa", "leak_unpriv", "5s", "3MB"}
			bWant := []string{"leak_user", "leak_user", "-1", "4MB"}
			for round := range 8 {
				require.Equal(t, bWant, read(t, b), "round %d: B", round)
				require.Equal(t, aWant, read(t, a), "round %d: A", round)
			}
			// A changes its superuser-only setting back through its privileged identity.
			for _, s := range []string{"RESET ROLE", "RESET SESSION AUTHORIZATION", "SET log_min_duration_statement = '6s'", "SET ROLE leak_unpriv"} {
				_, err := a.Exec(ctx, s)
				require.NoError(t, err, s)
			}
			aWant = []string{"leak_user", "leak_unpriv", "6s", "3MB"}
			for round := range 4 {
				require.Equal(t, bWant, read(t, b), "round %d: B", round)
				require.Equal(t, aWant, read(t, a), "round %d: A", round)
			}
			// A later client gets a working server.
			fresh := connect(t, p.URL("", "leak_user"), m)
			require.Equal(t, bWant, read(t, fresh))
		})
	}
}

// TestSessionStateInvalidCustomSetting: a custom setting accepted as a placeholder
// becomes invalid on a server that then loads the library owning its prefix (plpgsql,
// loaded by the first DO block a backend runs). Re-applying it there fails: the client's
// statement gets the server's error once, the setting is dropped, the client's other
// settings stay, and its later statements and other clients work.
func TestSessionStateInvalidCustomSetting(t *testing.T) {
	c := sharedCluster(t)
	leakSetup(t, c)
	ctx := ctxT(t, 60*time.Second)
	for _, m := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		t.Run(m.String(), func(t *testing.T) {
			p := integration.StartProxy(t, c, pool.Config{DefaultPoolSize: 1})
			a := connect(t, p.URL("", "leak_user"), m)
			b := connect(t, p.URL("", "leak_user"), m)
			// The pool's only server is a fresh backend: plpgsql is not loaded in it yet.
			for _, s := range []string{"SET work_mem = '3MB'", "SET plpgsql.leak_bogus = 'on'"} {
				_, err := a.Exec(ctx, s)
				require.NoError(t, err, s)
			}
			var v string
			require.NoError(t, a.QueryRow(ctx, "SELECT current_setting('plpgsql.leak_bogus')").Scan(&v))
			require.Equal(t, "on", v)
			_, err := b.Exec(ctx, "DO $$BEGIN NULL; END$$")
			require.NoError(t, err)

			// A's placeholder cannot be restored on that server any more.
			_, err = a.Exec(ctx, "SELECT 1")
			var pgErr *pgconn.PgError
			require.ErrorAs(t, err, &pgErr)
			require.Equal(t, "42602", pgErr.Code, "the server's SQLSTATE: %v", err)
			require.Contains(t, pgErr.Message, "plpgsql.leak_bogus")
			require.Contains(t, pgErr.Message, "could not be restored")

			// Once: the setting is dropped, the others stay.
			for range 3 {
				var wm, bogus string
				require.NoError(t, a.QueryRow(ctx, "SELECT current_setting('work_mem'), coalesce(current_setting('plpgsql.leak_bogus', true), '')").Scan(&wm, &bogus))
				require.Equal(t, "3MB", wm)
				require.Equal(t, "", bogus)
				require.NoError(t, b.QueryRow(ctx, "SELECT current_setting('work_mem')").Scan(&wm))
				require.Equal(t, "4MB", wm)
			}
			fresh := connect(t, p.URL("", "leak_user"), m)
			require.NoError(t, fresh.QueryRow(ctx, "SELECT current_setting('work_mem')").Scan(&v))
			require.Equal(t, "4MB", v)
		})
	}
}

// TestSessionStateRoleGone: a client's role is dropped while another client uses the
// only server. Restoring the role then fails: the client's statement gets the server's
// error once, the role is dropped from its settings, and the server is not reused.
func TestSessionStateRoleGone(t *testing.T) {
	c := sharedCluster(t)
	leakSetup(t, c)
	ctx := ctxT(t, 60*time.Second)
	admin := direct(t, c)
	_, err := admin.Exec(ctx, "DROP ROLE IF EXISTS leak_gone; CREATE ROLE leak_gone")
	require.NoError(t, err)
	p := integration.StartProxy(t, c, pool.Config{DefaultPoolSize: 1})
	a := connect(t, p.URL("", "leak_user"), pgx.QueryExecModeSimpleProtocol)
	b := connect(t, p.URL("", "leak_user"), pgx.QueryExecModeSimpleProtocol)
	for _, s := range []string{"SET work_mem = '3MB'", "SET ROLE leak_gone"} {
		_, err := a.Exec(ctx, s)
		require.NoError(t, err, s)
	}
	var user, wm string
	require.NoError(t, b.QueryRow(ctx, "SELECT current_user::text").Scan(&user))
	require.Equal(t, "leak_user", user)
	_, err = admin.Exec(ctx, "DROP ROLE leak_gone")
	require.NoError(t, err)

	_, err = a.Exec(ctx, "SELECT 1")
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "22023", pgErr.Code, "the server's SQLSTATE: %v", err)
	require.Contains(t, pgErr.Message, `"role" could not be restored`)
	for range 3 {
		require.NoError(t, a.QueryRow(ctx, "SELECT current_user::text, current_setting('work_mem')").Scan(&user, &wm))
		require.Equal(t, []string{"leak_user", "3MB"}, []string{user, wm})
		require.NoError(t, b.QueryRow(ctx, "SELECT current_user::text, current_setting('work_mem')").Scan(&user, &wm))
		require.Equal(t, []string{"leak_user", "4MB"}, []string{user, wm})
	}
}

// TestSessionStateFunctionRedefined: a function cmpool judged not to change settings is
// redefined, through cmpool, to change them. Its next call is read back like any other.
func TestSessionStateFunctionRedefined(t *testing.T) {
	c := sharedCluster(t)
	leakSetup(t, c)
	ctx := ctxT(t, 60*time.Second)
	p := integration.StartProxy(t, c, pool.Config{DefaultPoolSize: 1})
	a := connect(t, p.URL("", "leak_user"), pgx.QueryExecModeSimpleProtocol)
	b := connect(t, p.URL("", "leak_user"), pgx.QueryExecModeSimpleProtocol)
	exec := func(conn *pgx.Conn, q string) {
		t.Helper()
		_, err := conn.Exec(ctx, q)
		require.NoError(t, err, q)
	}
	exec(a, "CREATE OR REPLACE FUNCTION public.leak_redef() RETURNS void LANGUAGE plpgsql AS $$BEGIN PERFORM 1; END$$")
	bWant := leakRead(t, ctx, b)
	for range 3 {
		exec(a, "SELECT public.leak_redef()")
		require.Equal(t, bWant, leakRead(t, ctx, b))
	}
	exec(a, "CREATE OR REPLACE FUNCTION public.leak_redef() RETURNS void LANGUAGE plpgsql AS $$BEGIN PERFORM "+leakSetConfig(false)+"; END$$")
	exec(a, "SELECT public.leak_redef()")
	require.Equal(t, bWant, leakRead(t, ctx, b), "B sees what the redefined function set for A")
	require.Equal(t, "tenant_a", leakRead(t, ctx, a)[3])
}

// TestSessionStateComputedCustomName: a custom setting whose name is computed at run time
// cannot be read back by name; it still never reaches another client.
func TestSessionStateComputedCustomName(t *testing.T) {
	c := sharedCluster(t)
	leakSetup(t, c)
	ctx := ctxT(t, 60*time.Second)
	for _, m := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		t.Run(m.String(), func(t *testing.T) {
			p := integration.StartProxy(t, c, pool.Config{DefaultPoolSize: 1})
			a := connect(t, p.URL("", "leak_user"), m)
			b := connect(t, p.URL("", "leak_user"), m)
			bWant := leakRead(t, ctx, b)
			_, err := a.Exec(ctx, "SELECT set_config('myapp.' || 'tenant', 'tenant_a', false)")
			require.NoError(t, err)
			for round := range 3 {
				require.Equal(t, bWant, leakRead(t, ctx, b), "round %d", round)
				leakRead(t, ctx, a)
			}
		})
	}
}
