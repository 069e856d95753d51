package router_test

import (
	"testing"

	"github.com/cmlite/cmpool/router"
)

// pgbenchStatements are the statements of pgbench's built-in scripts, as they reach the
// proxy in simple and extended mode.
var pgbenchStatements = []struct{ name, sql string }{
	{"select-only", "SELECT abalance FROM pgbench_accounts WHERE aid = 4711;"},
	{"select-only extended", "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"},
	{"tpcb begin", "BEGIN;"},
	{"tpcb update", "UPDATE pgbench_accounts SET abalance = abalance + -1234 WHERE aid = 4711;"},
	{"tpcb insert", "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (3, 1, 4711, -1234, CURRENT_TIMESTAMP);"},
	{"tpcb end", "END;"},
}

// BenchmarkVerdictCached is the routing verdict for a statement the classifier has seen,
// which is every statement of a steady workload. The target is at most 1 µs.
func BenchmarkVerdictCached(b *testing.B) {
	for _, st := range pgbenchStatements {
		c := router.NewClassifier(0)
		c.Classify(st.sql)
		b.Run(st.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if c.Classify(st.sql) == nil {
					b.Fatal("no verdict")
				}
			}
		})
	}
	// The relay holds the query as bytes of a Query or Parse message.
	b.Run("select-only from wire bytes", func(b *testing.B) {
		c := router.NewClassifier(0)
		q := []byte(pgbenchStatements[0].sql)
		c.Classify(string(q))
		b.ReportAllocs()
		for b.Loop() {
			if c.Classify(string(q)) == nil {
				b.Fatal("no verdict")
			}
		}
	})
	// Every client session asks the one classifier of the server.
	b.Run("select-only parallel", func(b *testing.B) {
		c := router.NewClassifier(0)
		q := pgbenchStatements[0].sql
		c.Classify(q)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if c.Classify(q) == nil {
					b.Error("no verdict")
					return
				}
			}
		})
	})
}
