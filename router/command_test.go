package router_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/router"
)

func TestCommandOf(t *testing.T) {
	for _, tc := range []struct {
		q    string
		kind router.Command
		name string
	}{
		{"SET Work_Mem = '64MB'", router.CommandSet, "work_mem"},
		{"set SESSION search_path TO a", router.CommandSet, "search_path"},
		{"RESET ALL", router.CommandResetAll, ""},
		{"Reset My.Setting", router.CommandReset, "my.setting"},
		{"DEALLOCATE PREPARE \"Stmt\"", router.CommandDeallocate, "Stmt"},
		{"DEALLOCATE S1", router.CommandDeallocate, "s1"},
		{"DISCARD ALL", router.CommandDiscardAll, ""},
		{"SELECT 1", router.CommandOther, ""},
		{"PREPARE TRANSACTION 'x'", router.CommandPrepareTransaction, ""},
		{"prepare /* c */ transaction E'x'", router.CommandPrepareTransaction, ""},
		{"PREPARE transaction AS SELECT 1", router.CommandPrepare, ""},
		{"PREPARE transaction (int) AS SELECT $1", router.CommandPrepare, ""},
		{"PREPARE q AS SELECT 1", router.CommandPrepare, ""},
		{"COMMIT PREPARED 'x'", router.CommandOther, ""},
		{"ROLLBACK PREPARED 'x'", router.CommandOther, ""},
		{"LISTEN Jobs", router.CommandListen, "jobs"},
		{"listen \"Jobs\";", router.CommandListen, "Jobs"},
		{"LISTEN jobs; SELECT 1", router.CommandListen, ""},
		{"LISTEN", router.CommandListen, ""},
		{"LISTEN " + strings.Repeat("c", 70), router.CommandListen, strings.Repeat("c", 63)},
		{"UNLISTEN jobs", router.CommandUnlisten, "jobs"},
		{"UNLISTEN *", router.CommandUnlistenAll, ""},
		{"unlisten * ; ", router.CommandUnlistenAll, ""},
		{"UNLISTEN *; SELECT 1", router.CommandUnlisten, ""},
	} {
		t.Run(tc.q, func(t *testing.T) {
			kind, name := router.CommandOf(tc.q)
			require.Equal(t, tc.kind, kind)
			require.Equal(t, tc.name, name)
		})
	}
}

func TestIsPlainBegin(t *testing.T) {
	for q, want := range map[string]bool{
		"BEGIN": true, "begin": true, "BEGIN;": true, " begin ; ": true, "Begin Work": true,
		"BEGIN TRANSACTION;": true, "begin\ttransaction": true, "begin  work": true,
		"BEGIN ISOLATION LEVEL SERIALIZABLE": false, "BEGIN READ ONLY": false,
		"START TRANSACTION": false, "BEGIN; SELECT 1": false, "/* x */ BEGIN": false,
		"BEGINWORK": false, "BEGIN WORKS": false, "BEGI": false, "": false, ";": false,
		"begin transaction isolation level read committed": false, "BEGIN -- c": false,
	} {
		if got := router.IsPlainBegin(q); got != want {
			t.Errorf("IsPlainBegin(%q) = %v, want %v", q, got, want)
		}
	}
}

func FuzzCommandOf(f *testing.F) {
	for _, q := range []string{"SET work_mem TO DEFAULT", "set session \"x\".y = 1", "RESET ALL", "DEALLOCATE PREPARE \"s\"",
		"prepare transaction 'x'", "/* a /* nested */ c */ DISCARD ALL;", "SET TIME ZONE LOCAL", "-- c\nlisten x", "UNLISTEN *", "unlisten \"é\""} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		kind, name := router.CommandOf(q)
		switch kind {
		case router.CommandListen, router.CommandUnlisten:
			if len(name) > 63 {
				t.Fatalf("channel name %q longer than PostgreSQL's", name)
			}
		case router.CommandSet, router.CommandReset, router.CommandDeallocate:
		default:
			if name != "" {
				t.Fatalf("command %d names %q", kind, name)
			}
		}
		if router.IsSetToDefault(q) && kind != router.CommandSet {
			t.Fatalf("a SET to DEFAULT judged command %d", kind)
		}
		if router.IsPlainBegin(q) && kind != router.CommandOther {
			t.Fatalf("a plain BEGIN judged command %d", kind)
		}
		router.SessionBound(q)
		router.MayChangeSettings(q)
		if len(router.WithoutNumbers(q)) > len(q) {
			t.Fatal("WithoutNumbers grew the query")
		}
	})
}
