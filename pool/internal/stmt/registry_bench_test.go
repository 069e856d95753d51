package stmt

import (
	"strconv"
	"testing"

	"github.com/cmlite/cmpool/protocol"
)

// pgbenchSelect is the statement of pgbench -S -M prepared and -M extended.
const pgbenchSelect = "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"

// BenchmarkPreparedNameMapping maps a client's Parse to the proxy-wide server-side
// statement and checks whether the server connection has it, as the relay does for every
// Parse (pgbench -M extended sends one per transaction).
func BenchmarkPreparedNameMapping(b *testing.B) {
	types := []byte{0, 1, 0, 0, 0, 23} // one parameter of type int4
	msg := protocol.AppendParse(nil, "", pgbenchSelect, types)
	body := msg[5:]

	b.Run("parse to server statement", func(b *testing.B) {
		reg := NewRegistry()
		lru := NewPrepared(100)
		lru.add(reg.Get(pgbenchSelect, types), nil)
		b.ReportAllocs()
		for b.Loop() {
			_, query, ts, ok := protocol.ParseParse(body)
			if !ok {
				b.Fatal("bad Parse")
			}
			if !lru.has(reg.Get(string(query), ts)) {
				b.Fatal("statement not prepared")
			}
		}
	})
	b.Run("registry get parallel", func(b *testing.B) {
		reg := NewRegistry()
		reg.Get(pgbenchSelect, types)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			_, query, ts, _ := protocol.ParseParse(body)
			for pb.Next() {
				if reg.Get(string(query), ts) == nil {
					b.Error("no statement")
					return
				}
			}
		})
	})
	// A client's Bind of a statement it prepared by name: its own map, then the server's LRU.
	b.Run("bind by client name", func(b *testing.B) {
		reg := NewRegistry()
		lru := NewPrepared(100)
		byClientName := map[string]*Stmt{"P_0": reg.Get(pgbenchSelect, types)}
		lru.add(byClientName["P_0"], nil)
		name := []byte("P_0")
		b.ReportAllocs()
		for b.Loop() {
			stmt := byClientName[string(name)]
			if stmt == nil || !lru.has(stmt) {
				b.Fatal("statement not prepared")
			}
		}
	})
	// Every add evicts: 200 statements cycling through an LRU of 100.
	b.Run("lru add with eviction", func(b *testing.B) {
		reg := NewRegistry()
		stmts := make([]*Stmt, 200)
		for i := range stmts {
			stmts[i] = reg.Get("SELECT "+strconv.Itoa(i), nil)
		}
		lru := NewPrepared(100)
		var evicted []*Stmt
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			evicted = lru.add(stmts[i%len(stmts)], evicted[:0])
			i++
		}
	})
}
