package pool

import "testing"

func TestIsPlainBegin(t *testing.T) {
	for q, want := range map[string]bool{
		"BEGIN": true, "begin": true, "BEGIN;": true, " begin ; ": true, "Begin Work": true,
		"BEGIN TRANSACTION;": true, "begin\ttransaction": true, "begin  work": true,
		"BEGIN ISOLATION LEVEL SERIALIZABLE": false, "BEGIN READ ONLY": false,
		"START TRANSACTION": false, "BEGIN; SELECT 1": false, "/* x */ BEGIN": false,
		"BEGINWORK": false, "BEGIN WORKS": false, "BEGI": false, "": false, ";": false,
		"begin transaction isolation level read committed": false, "BEGIN -- c": false,
	} {
		if got := isPlainBegin(q); got != want {
			t.Errorf("isPlainBegin(%q) = %v, want %v", q, got, want)
		}
	}
}
