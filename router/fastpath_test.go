package router

import (
	"strings"
	"testing"
)

// FuzzFastPathAgreesWithGrammar checks that the fast path never sends to a replica what
// the full grammar would send to the primary. Text the grammar cannot parse is left
// out: a replica rejects it exactly as the primary would.
func FuzzFastPathAgreesWithGrammar(f *testing.F) {
	for _, q := range []string{
		"select a from t where b = $1",
		"SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
		"select * from t for update",
		"select * into x from t",
		"select a, b from t order by a limit 10",
		"select\tx\nfrom y",
		"select 1 for share",
		"select a from t union select b from u",
		"select * from t where x = $12",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		if !isPlainSelect(q) {
			return
		}
		full := classifyFull(q)
		if strings.HasPrefix(full.Reason, "unparsable") {
			return
		}
		if full.Write || len(full.Funcs) > 0 {
			t.Fatalf("fast path says replica for %q; the grammar says primary (%s, funcs %v)", q, full.Reason, full.Funcs)
		}
	})
}
