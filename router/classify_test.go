package router_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/router"
)

func TestClassifyReadsAndWrites(t *testing.T) {
	c := router.NewClassifier(0)
	reads := []string{
		"select 1",
		"SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
		"select * from t where a = $1 and b = $2",
		"values (1), (2)",
		"table t",
		"show work_mem",
		"select now(), count(*), current_setting('work_mem'), inet_server_port() from t",
		"select random(), pg_sleep(0.1), gen_random_uuid()",
		"explain select * from t",
		"explain (analyze) select * from t",
		"with x as (select 1) select * from x",
		"select * from t; select 2",
		"copy t to stdout",
		"copy (select * from t) to stdout",
		"select coalesce(a, b), greatest(a, b) from t",
		"select 'insert into t values (1)' as text_not_sql",
		"select * from t where name = 'for update'",
		"  select information from forms",
		"select pg_catalog.count(*) from t",
	}
	for _, q := range reads {
		t.Run(q, func(t *testing.T) {
			v := c.Classify(q)
			require.False(t, v.Write, "reason %q", v.Reason)
			require.Empty(t, v.Funcs)
		})
	}
	writes := map[string]string{
		"insert into t values (1)": "InsertStmt",
		"update t set a = 1":       "UpdateStmt",
		"delete from t":            "DeleteStmt",
		"merge into t using s on t.a = s.a when matched then delete": "MergeStmt",
		"create table x(a int)":                                                      "CreateStmt",
		"with d as (delete from t returning *) select * from d":                      "writable CTE (DELETE)",
		"select * from (with u as (update t set a=1 returning a) select a from u) s": "writable CTE (UPDATE)",
		"select * from t for update":                                                 "FOR UPDATE/SHARE",
		"select * from t for no key update":                                          "FOR UPDATE/SHARE",
		"select * from t for key share":                                              "FOR UPDATE/SHARE",
		"select * into newt from t":                                                  "SELECT INTO",
		"select nextval('s')":                                                        "function nextval",
		"select pg_advisory_lock(1)":                                                 "function pg_advisory_lock",
		"select txid_current()":                                                      "function txid_current",
		"select set_config('a.b', '1', false)":                                       "function set_config",
		"do $$ begin perform 1; end $$":                                              "DoStmt",
		"call p()":                                                                   "CallStmt",
		"copy t from stdin":                                                          "COPY FROM",
		"lock table t":                                                               "LockStmt",
		"vacuum t":                                                                   "VacuumStmt",
		"listen ch":                                                                  "ListenStmt",
		"notify ch":                                                                  "NotifyStmt",
		"select 1; insert into t values (1)":                                         "InsertStmt",
		"explain analyze insert into t values (1)":                                   "InsertStmt",
		"selec 1":              "unparsable",
		"set work_mem = '8MB'": "SET",
		"savepoint a":          "transaction control",
	}
	for q, reason := range writes {
		t.Run(q, func(t *testing.T) {
			v := c.Classify(q)
			require.True(t, v.Write, "%q should go to the primary", q)
			require.Contains(t, v.Reason, reason)
		})
	}
}

func TestClassifyUnknownFunctions(t *testing.T) {
	v := router.NewClassifier(0).Classify("select my_func(a), public.other(b), lower(c) from t")
	require.False(t, v.Write)
	require.Equal(t, []string{"my_func", "public.other"}, v.Funcs)
}

func TestClassifyTransactionsAndHints(t *testing.T) {
	c := router.NewClassifier(0)
	for _, tc := range []struct {
		q                    string
		begin, readOnly, end bool
		hint                 string
		write                bool
	}{
		{q: "begin", begin: true},
		{q: "BEGIN READ ONLY", begin: true, readOnly: true},
		{q: "start transaction isolation level repeatable read, read only", begin: true, readOnly: true},
		{q: "begin read write", begin: true},
		{q: "set transaction read only", readOnly: true},
		{q: "commit", end: true},
		{q: "rollback", end: true},
		{q: "end", end: true},
		{q: "/* cmpool:replica */ select * from t", hint: "replica"},
		{q: "select * from t -- cmpool:primary", hint: "primary"},
		{q: "insert into t values (1) /* cmpool:replica */", hint: "replica", write: true},
		{q: "select 'cmpool:primary' from t"},
	} {
		t.Run(tc.q, func(t *testing.T) {
			v := c.Classify(tc.q)
			require.Equal(t, tc.begin, v.Begin, "begin")
			require.Equal(t, tc.readOnly, v.ReadOnly, "read only")
			require.Equal(t, tc.end, v.End, "end")
			require.Equal(t, tc.hint, v.Hint, "hint")
			require.Equal(t, tc.write, v.Write, "write (%s)", v.Reason)
		})
	}
}

func TestClassifyProxySettings(t *testing.T) {
	c := router.NewClassifier(0)
	v := c.Classify("SET cmpool.route = 'primary'")
	require.Equal(t, &router.Setting{Name: "cmpool.route", Value: "primary"}, v.ProxySet)
	v = c.Classify("set local cmpool.route to replica")
	require.Equal(t, &router.Setting{Name: "cmpool.route", Value: "replica", Local: true}, v.ProxySet)
	v = c.Classify("set cmpool.min_lsn = '0/16B3748'")
	require.Equal(t, "0/16B3748", v.ProxySet.Value)
	v = c.Classify("SHOW cmpool.last_write_lsn")
	require.Equal(t, "cmpool.last_write_lsn", v.ProxyShow)
}

func TestClassifierCacheIsBounded(t *testing.T) {
	c := router.NewClassifier(10)
	for i := range 100 {
		v := c.Classify("select " + string(rune('a'+i%26)) + " from t")
		require.False(t, v.Write)
	}
	require.Same(t, c.Classify("insert into t values (1)"), c.Classify("insert into t values (1)"))
}

func FuzzClassify(f *testing.F) {
	for _, q := range []string{"select 1", "insert into t values ($1)", "begin read only", "/* cmpool:replica */ select", "with x as (delete from t) select 1", "select 'a"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		v := router.NewClassifier(1).Classify(q)
		if v.Statements < 0 {
			t.Fatal("negative statement count")
		}
	})
}

func BenchmarkClassify(b *testing.B) {
	for _, bc := range []struct{ name, q string }{
		{"fast path", "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"},
		{"full parse", "select a.x, count(*) from a join b on a.id = b.id where b.y > $1 group by a.x"},
	} {
		b.Run(bc.name+" uncached", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				router.NewClassifier(1).Classify(bc.q)
			}
		})
		b.Run(bc.name+" cached", func(b *testing.B) {
			c := router.NewClassifier(0)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				c.Classify(bc.q)
			}
		})
	}
}

func TestClassifySessionOnly(t *testing.T) {
	for _, tc := range []struct {
		sql         string
		sessionOnly bool
	}{
		{"SET extra_float_digits = 3", true},
		{"SET application_name = 'PostgreSQL JDBC Driver'", true},
		{"set search_path = a, b; set work_mem = '8MB'", true},
		{"reset all", true},
		{"set work_mem = '8MB'; insert into t values (1)", false},
		{"insert into t values (1); set work_mem = '8MB'", false},
		{"select nextval('s'); set work_mem = '8MB'", false},
		{"discard all", false},
		{"update t set a = 1", false},
		{"select 1", false},
	} {
		t.Run(tc.sql, func(t *testing.T) {
			v := router.NewClassifier(0).Classify(tc.sql)
			require.Equal(t, tc.sessionOnly, v.SessionOnly, "%+v", v)
			if tc.sessionOnly {
				require.True(t, v.Write, "a SET still runs on the primary")
			}
		})
	}
}
