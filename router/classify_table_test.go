package router_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/router"
)

// routeOf names where a query goes by its verdict alone: "replica", "primary", or
// "lookup" when a function's volatility decides.
func routeOf(v *router.Verdict) string {
	switch {
	case v.Write:
		return "primary"
	case len(v.Funcs) > 0:
		return "lookup"
	}
	return "replica"
}

// TestClassifyTable is the rule book as a table: every rule, with its traps.
func TestClassifyTable(t *testing.T) {
	const R, P, L = "replica", "primary", "lookup"
	table := []struct{ sql, want string }{
		// Plain reads.
		{"select 1", R}, {"SELECT 1;", R}, {"  select 1  ", R}, {"select * from t", R},
		{"select a, b from t where c = $1", R}, {"select a from t where b in ($1, $2)", R},
		{"select a from t order by a desc limit 10 offset 5", R}, {"select distinct a from t", R},
		{"select a, count(*) from t group by a having count(*) > 1", R},
		{"select * from t1 join t2 using (id)", R}, {"select * from t1 left join t2 on t1.id = t2.id", R},
		{"select * from t where exists (select 1 from u where u.id = t.id)", R},
		{"select * from (select * from t) s", R}, {"select a from t union select b from u", R},
		{"select a from t intersect select b from u", R}, {"select a from t except select b from u", R},
		{"values (1, 'a'), (2, 'b')", R}, {"table t", R}, {"table only t", R},
		{"with x as (select 1 as a) select a from x", R},
		{"with recursive r(n) as (select 1 union all select n+1 from r where n < 5) select * from r", R},
		{"select * from t where a = any($1::int[])", R}, {"select $1::text", R},
		{"select case when a > 0 then 'p' else 'n' end from t", R},
		{"select a::text, b::numeric(10,2) from t", R}, {"select row(1, 2)", R}, {"select array[1,2,3]", R},
		{"select * from t tablesample system (10)", R}, {"select * from t where a is null", R},
		{"select * from generate_series(1, 10)", R}, {"select * from unnest(array[1,2]) as u(x)", R},
		{"select * from lateral_t, lateral (select * from u where u.a = lateral_t.a) s", R},
		{"select * from t window w as (partition by a)", R},
		{"select row_number() over (order by a) from t", R},
		{"select json_build_object('a', 1)", R}, {"select jsonb_path_query(doc, '$.a') from t", R},
		{"select to_char(now(), 'YYYY')", R}, {"select date_trunc('day', now())", R},
		{"select extract(year from now())", R}, {"select coalesce(a, 0), nullif(b, 0) from t", R},
		{"select greatest(a, b), least(a, b) from t", R}, {"select current_user, session_user", R},
		{"select current_timestamp, localtimestamp", R}, {"select current_setting('work_mem')", R},
		{"select inet_server_port(), inet_server_addr()", R}, {"select version()", R},
		{"select count(*), sum(a), avg(a), min(a), max(a) from t", R},
		{"select string_agg(a, ',') from t", R}, {"select random()", R}, {"select gen_random_uuid()", R},
		{"select clock_timestamp()", R}, {"select pg_sleep(0.01)", R}, {"select pg_backend_pid()", R},
		{"select pg_is_in_recovery()", R}, {"select pg_last_wal_replay_lsn()", R},
		{"select lower(name), upper(name), length(name) from t", R},
		{"select pg_catalog.now()", R}, {"select pg_catalog.count(*) from t", R},
		{"select * from t where name like 'a%'", R}, {"select * from t where name ~ '^a'", R},
		{"select * from t where tsv @@ to_tsquery('x')", R},
		// Strings, identifiers and comments that only look like writes.
		{"select 'insert into t values (1)'", R}, {"select 'delete from t' as x", R},
		{"select $$update t set a = 1$$", R}, {"select $tag$ drop table t $tag$", R},
		{`select "insert" from t`, R}, {`select "for update" from t`, R}, {`select * from "delete"`, R},
		{"select 1 -- insert into t", R}, {"select 1 /* update t set a = 1 */", R},
		{"/* delete from t */ select 1", R}, {"select * from t where note = 'for update'", R},
		{"select information from forms", R}, {"select fortune from cookies", R},
		{"select intolerance from t", R}, {"select a as \"into\" from t", R},
		// Show and explain.
		{"show work_mem", R}, {"show all", R}, {"show transaction isolation level", R},
		{"explain select * from t", R}, {"explain (costs off) select * from t", R},
		{"explain analyze select * from t", R}, {"explain (analyze false) insert into t values (1)", P}, // conservative
		{"copy t to stdout", R}, {"copy (select * from t) to stdout with csv", R},
		// Writes and DDL.
		{"insert into t values (1)", P}, {"insert into t select * from u", P},
		{"insert into t values (1) on conflict do nothing", P}, {"insert into t values (1) returning id", P},
		{"update t set a = 1", P}, {"update t set a = 1 where id = $1 returning *", P},
		{"delete from t", P}, {"delete from t using u where t.id = u.id", P},
		{"merge into t using s on t.id = s.id when matched then update set a = s.a", P},
		{"truncate t", P}, {"create table t2 (a int)", P}, {"create index on t (a)", P},
		{"create view v as select 1", P}, {"create materialized view mv as select 1", P},
		{"refresh materialized view mv", P}, {"alter table t add column b int", P},
		{"drop table t", P}, {"drop index i", P}, {"create schema s", P}, {"create extension pgcrypto", P},
		{"create function f() returns int language sql as 'select 1'", P},
		{"comment on table t is 'x'", P}, {"grant select on t to public", P}, {"revoke all on t from public", P},
		{"create role r", P}, {"alter role r set work_mem = '8MB'", P}, {"reindex table t", P},
		{"cluster t", P}, {"analyze t", P}, {"vacuum t", P}, {"vacuum full", P},
		{"checkpoint", P}, {"lock table t in access exclusive mode", P}, {"lock t", P},
		{"do $$ begin perform 1; end $$", P}, {"call p()", P}, {"call p($1)", P},
		{"copy t from stdin", P}, {"copy t from '/tmp/x'", P}, {"copy t to program 'cat'", P},
		{"listen ch", P}, {"unlisten ch", P}, {"notify ch, 'x'", P},
		{"prepare q as select 1", P}, {"execute q", P}, {"deallocate q", P},
		{"declare c cursor for select 1", P}, {"fetch 10 from c", P}, {"close c", P},
		{"discard all", P}, {"reset all", P}, {"set work_mem = '8MB'", P}, {"set search_path = a, b", P},
		{"select * into t2 from t", P}, {"create table t3 as select * from t", P},
		{"security label on table t is 'x'", P}, {"load 'auto_explain'", P},
		// Locking reads.
		{"select * from t for update", P}, {"select * from t for share", P},
		{"select * from t for no key update", P}, {"select * from t for key share", P},
		{"select * from t for update skip locked", P}, {"select * from t for update nowait", P},
		{"select * from (select * from t for update) s", P},
		{"select * from t where id in (select id from u for share)", P},
		// Writable CTEs, at any depth.
		{"with d as (delete from t returning *) select * from d", P},
		{"with i as (insert into t values (1) returning id) select id from i", P},
		{"with u as (update t set a = 1 returning a) select count(*) from u", P},
		{"with x as (select 1), d as (delete from t returning 1) select * from x", P},
		{"select * from (with d as (delete from t returning *) select * from d) s", P},
		{"with a as (with b as (insert into t values (1) returning 1) select * from b) select * from a", P},
		// Functions that write, lock or need the primary.
		{"select nextval('s')", P}, {"select setval('s', 10)", P}, {"select currval('s')", P},
		{"select lastval()", P}, {"select pg_advisory_lock(1)", P}, {"select pg_try_advisory_lock(1)", P},
		{"select pg_advisory_xact_lock(1)", P}, {"select pg_advisory_unlock_all()", P},
		{"select txid_current()", P}, {"select pg_current_xact_id()", P},
		{"select set_config('a.b', '1', false)", P}, {"select pg_notify('ch', 'x')", P},
		{"select pg_current_wal_lsn()", P}, {"select lo_create(0)", P},
		{"select pg_terminate_backend(123)", P}, {"select pg_cancel_backend(123)", P},
		{"select * from t where id = nextval('s')", P},
		{"select a from t where b = (select nextval('s'))", P},
		{"select (select pg_advisory_lock(1)) from t", P},
		{"select count(*) from t where exists (select txid_current())", P},
		// Multi-statement strings.
		{"select 1; select 2", R}, {"select 1; insert into t values (1)", P},
		{"insert into t values (1); select 1", P}, {"select 1; select nextval('s')", P},
		{"show work_mem; select 1", R}, {"select 1; create table x (a int)", P},
		// Unknown functions: their volatility decides.
		{"select my_func()", L}, {"select public.my_func(1)", L}, {"select * from my_srf()", L},
		{"select a from t where my_check(a)", L}, {"select (select my_func()) from t", L},
		// Unparsable text goes to the primary.
		{"selec 1", P}, {"select (", P}, {"insert into", P}, {"", R},
	}
	require.GreaterOrEqual(t, len(table), 150)
	c := router.NewClassifier(0)
	for _, tc := range table {
		t.Run(tc.sql, func(t *testing.T) {
			v := c.Classify(tc.sql)
			require.Equal(t, tc.want, routeOf(v), "reason %q, funcs %v", v.Reason, v.Funcs)
		})
	}
}
