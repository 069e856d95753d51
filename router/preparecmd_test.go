package router_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/router"
)

func TestPreparedSQLOfPrepare(t *testing.T) {
	for _, tc := range []struct {
		q, name, types, body string
	}{
		{"PREPARE foo AS SELECT 1", "foo", "", "SELECT 1"},
		{"prepare Foo (int, text) as select $1, $2;", "foo", "(int, text)", "select $1, $2"},
		{`PREPARE "Foo" ( "my t"[], numeric(10,2) ) AS SELECT $1 -- trailing comment`, "Foo", `( "my t"[], numeric(10,2) )`, "SELECT $1"},
		{"/* lead */ PREPARE s1 /* c */ (int) /* d */ AS INSERT INTO t VALUES ($1) ; ; ", "s1", "(int)", "INSERT INTO t VALUES ($1)"},
		{"PREPARE transaction AS SELECT 1", "transaction", "", "SELECT 1"},
		{"PREPARE p AS SELECT 'a;b', $$x; -- not a comment$$", "p", "", "SELECT 'a;b', $$x; -- not a comment$$"},
		{"PREPARE " + strings.Repeat("a", 70) + " AS SELECT 1", strings.Repeat("a", 63), "", "SELECT 1"},
	} {
		t.Run(tc.q, func(t *testing.T) {
			p, ok := router.PreparedSQLOf(tc.q)
			require.True(t, ok)
			require.Equal(t, router.SQLPrepare, p.Kind)
			require.Equal(t, tc.name, p.Name)
			require.Equal(t, tc.types, p.Types)
			require.Equal(t, tc.body, p.Body)
		})
	}
}

func TestPreparedSQLOfExecute(t *testing.T) {
	for _, tc := range []struct {
		q, name, written string
	}{
		{"EXECUTE foo", "foo", "foo"},
		{"execute FOO(1, 'a')", "foo", "FOO"},
		{`/* x */ EXECUTE "Foo" (1);`, "Foo", `"Foo"`},
		{"EXPLAIN ANALYZE EXECUTE foo(1)", "foo", "foo"},
		{"explain (costs off) execute s", "s", "s"},
		{"CREATE TABLE t AS EXECUTE foo(2)", "foo", "foo"},
		{"CREATE TABLE execute AS EXECUTE execute", "execute", "execute"},
		{"CREATE TABLE t AS EXECUTE \"execute\" WITH NO DATA", "execute", `"execute"`},
	} {
		t.Run(tc.q, func(t *testing.T) {
			p, ok := router.PreparedSQLOf(tc.q)
			require.True(t, ok)
			require.Equal(t, router.SQLExecute, p.Kind)
			require.Equal(t, tc.name, p.Name)
			require.Equal(t, tc.written, tc.q[p.NameStart:p.NameEnd])
			require.Equal(t, !strings.HasPrefix(strings.ToLower(tc.q), "explain") && !strings.HasPrefix(strings.ToLower(tc.q), "create"), p.Plain)
		})
	}
}

func TestPreparedSQLOfOthers(t *testing.T) {
	for _, q := range []string{
		"SELECT 1",
		"SELECT 'prepare; execute'",
		"SELECT 1; SELECT 'execute'",
		"PREPARE TRANSACTION 'gid'",
		"EXECUTE",
		"DEALLOCATE foo", // CommandOf's
		"EXPLAIN SELECT 1",
		"CREATE TABLE execute (a int)",
		"",
	} {
		_, ok := router.PreparedSQLOf(q)
		require.False(t, ok, q)
	}
	for _, q := range []string{"PREPARE foo AS SELEC 1", "prepare", "PREPARE TRANSACTION"} {
		p, ok := router.PreparedSQLOf(q)
		require.True(t, ok, q)
		require.Equal(t, router.SQLUnparsed, p.Kind, q)
		require.Contains(t, p.Err, "syntax error", q)
	}
	for _, q := range []string{
		"SELECT 1; EXECUTE foo",
		"PREPARE foo AS SELECT 1; EXECUTE foo",
		"BEGIN; DEALLOCATE ALL; COMMIT",
		"SELECT 1; EXPLAIN EXECUTE foo",
	} {
		p, ok := router.PreparedSQLOf(q)
		require.True(t, ok, q)
		require.Equal(t, router.SQLMultiple, p.Kind, q)
	}
}

func FuzzPreparedSQLOf(f *testing.F) {
	for _, q := range []string{
		"PREPARE foo (int) AS SELECT $1", `EXECUTE "Foo"(1)`, "EXPLAIN EXECUTE x", "CREATE TABLE t AS EXECUTE x",
		"PREPARE a AS SELECT 1; EXECUTE a", "PREPARE p (", "EXECUTE x(", "PREPARE p AS SELECT 1 -- c",
		"prepare /* c */ \"a\"\"b\" ( int[] ) as values ($1)", `EXECUTE"x"(1)`,
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		if fast, ok := router.PlainExecute(q); ok {
			// The grammar agrees, or refuses the arguments (the server will too).
			if slow, ok := router.PreparedSQLByGrammar(q); ok && slow != fast {
				t.Fatalf("EXECUTE %q: read %+v, grammar %+v", q, fast, slow)
			}
		}
		p, ok := router.PreparedSQLOf(q)
		if !ok {
			return
		}
		switch p.Kind {
		case router.SQLPrepare:
			if p.Name == "" || p.Body == "" || !strings.Contains(q, p.Body) || !strings.Contains(q, p.Types) {
				t.Fatalf("PREPARE %q: %+v", q, p)
			}
		case router.SQLExecute:
			if p.NameStart < 0 || p.NameEnd > len(q) || p.NameStart >= p.NameEnd {
				t.Fatalf("EXECUTE %q: %+v", q, p)
			}
			// The rewritten query must still parse as the same kind of command.
			re := q[:p.NameStart] + " cmpool_x " + q[p.NameEnd:]
			if r, ok := router.PreparedSQLOf(re); !ok || r.Kind != router.SQLExecute || r.Name != "cmpool_x" {
				t.Fatalf("rewritten %q: %+v %v", re, r, ok)
			}
		case router.SQLMultiple:
		case router.SQLUnparsed:
			if p.Err == "" {
				t.Fatalf("unparsed %q without a reason", q)
			}
		default:
			t.Fatalf("kind %d", p.Kind)
		}
	})
}

func BenchmarkPreparedSQLOf(b *testing.B) {
	for _, q := range []string{"SELECT abalance FROM pgbench_accounts WHERE aid = 5", "EXECUTE m(5)", "PREPARE m (int) AS SELECT $1 + 1"} {
		b.Run(strings.Fields(q)[0], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				router.PreparedSQLOf(q)
			}
		})
	}
}

// TestPlainExecuteAgreesWithGrammar: the cheap reading of EXECUTE finds what the grammar
// finds, and leaves the rest to it.
func TestPlainExecuteAgreesWithGrammar(t *testing.T) {
	for _, q := range []string{
		"EXECUTE foo", "execute Foo(1, 'a')", `EXECUTE "Mixed Case" (1)`, "  /* c */ EXECUTE s -- x",
		`EXECUTE"s"(1)`, "EXECUTE " + strings.Repeat("x", 70) + "(1)", "EXECUTE transaction", "EXECUTE execute(1)",
	} {
		fast, ok := router.PlainExecute(q)
		require.True(t, ok, q)
		slow, ok := router.PreparedSQLByGrammar(q)
		require.True(t, ok, q)
		require.Equal(t, slow, fast, q)
	}
	for _, q := range []string{
		"EXECUTE select", "EXECUTE foo; SELECT 1", "EXECUTE ÉTÉ", "EXECUTE 1x", "EXECUTE", `EXECUTE ""`,
		"EXECUTE foo bar", "EXECUTE foo(';')",
	} {
		_, ok := router.PlainExecute(q)
		require.False(t, ok, q)
	}
	// Every word taken as reserved is one the grammar refuses as a statement name.
	for w := range router.ReservedWords {
		p, ok := router.PreparedSQLOf("PREPARE " + w + " AS SELECT 1")
		require.True(t, ok, w)
		require.Equal(t, router.SQLUnparsed, p.Kind, w)
	}
}
