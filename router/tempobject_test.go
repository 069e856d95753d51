package router_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/router"
)

func TestTempObject(t *testing.T) {
	for _, tc := range []struct{ sql, want string }{
		{"create temp table t (x int)", "temporary table t"},
		{"CREATE TEMPORARY TABLE t (x int)", "temporary table t"},
		{"create local temporary table t (x int)", "temporary table t"},
		{"create global temp table t (x int)", "temporary table t"},
		{"create temp table if not exists t (x int)", "temporary table t"},
		{"create temp table t (x int) on commit preserve rows", "temporary table t"},
		{"create temp table t (x int) on commit delete rows", "temporary table t"},
		{"create temp table t as select 1 as x", "temporary table t"},
		{"select 1 as x into temp t", "temporary table t"},
		{"select 1 as x into temporary table t", "temporary table t"},
		{"select 1 as x into temp t union select 2", "temporary table t"},
		{"create table pg_temp.t (x int)", "temporary table t"},
		{"create table pg_temp_3.t (x int)", "temporary table t"},
		{"create table pg_temp.t as select 1", "temporary table t"},
		{"create temp view v as select 1", "temporary view v"},
		{"create or replace temp view v as select 1", "temporary view v"},
		{"create view pg_temp.v as select 1", "temporary view v"},
		{"create temp sequence s", "temporary sequence s"},
		{"create sequence pg_temp.s", "temporary sequence s"},
		{"create function pg_temp.f() returns int language sql as 'select 1'", "temporary function f"},
		{"create type pg_temp.ty as (a int)", "temporary type ty"},
		{"create type pg_temp.en as enum ('a')", "temporary type en"},
		{"create domain pg_temp.d as int", "temporary domain d"},
		{"select 1; create temp table t (x int)", "temporary table t"},
		{"explain analyze create temp table t as select 1", "temporary table t"},

		// Gone at the end of the transaction, or not temporary at all.
		{"create temp table t (x int) on commit drop", ""},
		{"create temp table t on commit drop as select 1", ""},
		{"select 1 into temp t on commit drop", ""}, // not valid SQL: the server refuses it
		{"create table t (x int)", ""},
		{"create unlogged table t (x int)", ""},
		{"create table temp (x int)", ""},
		{"create table \"pg_temp\".t (x int)", "temporary table t"},
		{"create table \"PG_TEMP\".t (x int)", ""},
		{"create table my_pg_temp.t (x int)", ""},
		{"select * from pg_temp.t", ""},
		{"insert into pg_temp.t values (1)", ""},
		{"drop table pg_temp.t", ""},
		{"select temp from readings", ""},
		{"create view v as select * from temp_t", ""},
		{"select 1 as x into t", ""},
		{"do $$ begin create temp table t (x int); end $$", ""},
		{"create temp table", ""}, // a syntax error: the server reports it

		// Created and dropped by the same query string.
		{"create temp table ms(x int); insert into ms values (1); drop table ms", ""},
		{"create temp table ms(x int); drop table if exists pg_temp.ms", ""},
		{"create temp table a(x int); create temp view v as select 1; drop view v; drop table a, b", ""},
		{"create function pg_temp.f() returns int language sql as 'select 1'; drop function pg_temp.f()", ""},
		{"create type pg_temp.ty as (a int); drop type pg_temp.ty", ""},
		{"create temp table ms(x int); drop table other_schema.ms", "temporary table ms"},
		{"create temp table ms(x int); drop view ms", "temporary table ms"},
		{"create temp table ms(x int); drop table other", "temporary table ms"},
		{"drop table ms; create temp table ms(x int)", "temporary table ms"},
		{"create temp table a(x int); create temp table b(x int); drop table a", "temporary table b"},
	} {
		t.Run(tc.sql, func(t *testing.T) {
			require.Equal(t, tc.want, router.TempObject(tc.sql))
		})
	}
}

func FuzzTempObject(f *testing.F) {
	for _, q := range []string{"create temp table t (x int)", "create temp table t (x int) on commit drop",
		"select 1 into temp t", "create table pg_temp.t (x int); drop table t", "create temp view v as select 'a"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		what := router.TempObject(q)
		if what != "" && !strings.HasPrefix(what, "temporary ") {
			t.Fatalf("TempObject(%q) = %q", q, what)
		}
	})
}
