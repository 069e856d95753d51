package lease

import "testing"

// BenchmarkTraitsOf judges a simple query's first statement, as the client goroutine
// does for every simple query in transaction mode. The target is 0 allocs/op.
func BenchmarkTraitsOf(b *testing.B) {
	const q = "SELECT abalance FROM pgbench_accounts WHERE aid = 4711;"
	b.ReportAllocs()
	for b.Loop() {
		if t := traitsOf(q); t.SessionBound || t.Track != nil {
			b.Fatal("a plain SELECT has no traits")
		}
	}
}
