package router

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// checkGlance fails unless each bit of GlanceAt(q) is what ContainsFold says of its word.
func checkGlance(t *testing.T, q string) {
	t.Helper()
	g := GlanceAt(q)
	for i, w := range glanceWords {
		if got, want := g.Has(1<<i), ContainsFold(q, w); got != want {
			t.Fatalf("GlanceAt(%q) has %q: %v, ContainsFold: %v", q, w, got, want)
		}
	}
	if !g.MayUsePreparedSQL() && mayUsePreparedSQL(q) {
		t.Fatalf("GlanceAt(%q) rules out SQL PREPARE, which PreparedSQLOf may find", q)
	}
	if g.PinsSession() != PinsSession(q) {
		t.Fatalf("GlanceAt(%q).PinsSession() = %v, PinsSession: %v", q, g.PinsSession(), PinsSession(q))
	}
}

func TestGlanceAgreesWithContainsFold(t *testing.T) {
	for _, q := range []string{
		"", "SELECT 1", "SELECT abalance FROM pgbench_accounts WHERE aid = 42;",
		"SET cmpool.route = 'primary'", "SHOW CMPOOL.ROUTE",
		"DECLARE c CURSOR WITH HOLD FOR SELECT 1", "declare c cursor WITH  HOLD for select 1",
		"SELECT pg_advisory_lock(1)", "SELECT PG_TRY_ADVISORY_LOCK_SHARED(1)", "SELECT pg_advisory_unlock(1)",
		"CREATE TEMP TABLE t()", "create temporary table t()", "PREPARE p AS SELECT 1; EXECUTE p; DEALLOCATE p",
		"EXPLAIN EXECUTE p", "execute p(1)", "SELECT 1; deallocate all",
		"tttemp", "ddeclare", "cmpoolcmpool.", "advisory_loc", "with holdwith hold", "ÉTÉ temp", "\x00temp\xff",
	} {
		checkGlance(t, q)
	}
	// Random texts built from the words, their pieces, their other case and noise.
	pieces := []string{" ", ";", "(", "é", "x"}
	for _, w := range glanceWords {
		pieces = append(pieces, w, strings.ToUpper(w), w[:len(w)/2], w[len(w)/2:], w[:1])
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		var b strings.Builder
		for n := rng.IntN(8); n > 0; n-- {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		checkGlance(t, b.String())
	}
}

func FuzzGlance(f *testing.F) {
	f.Add("SELECT pg_advisory_lock(1)")
	f.Add("DECLARE c CURSOR WITH HOLD FOR SELECT 1; SET cmpool.route = 'replica'")
	f.Fuzz(func(t *testing.T, q string) { checkGlance(t, q) })
}

func TestGlanceAllocatesNothing(t *testing.T) {
	q := "SELECT abalance FROM pgbench_accounts WHERE aid = 4242424;"
	if n := testing.AllocsPerRun(100, func() { sinkGlance = GlanceAt(q) }); n != 0 {
		t.Fatalf("GlanceAt allocates %v times", n)
	}
}

var sinkGlance Glance

// BenchmarkGlance is one glance at pgbench's query, for the words BenchmarkContainsFold
// looks for one scan at a time, and the rest.
func BenchmarkGlance(b *testing.B) {
	q := "SELECT abalance FROM pgbench_accounts WHERE aid = 4242424;"
	b.ReportAllocs()
	for b.Loop() {
		if GlanceAt(q).Has(MentionsTemp) {
			b.Fatal("found")
		}
	}
}

func BenchmarkGlanceManyCandidates(b *testing.B) {
	q := strings.Repeat("t", 1<<20) + "TEMP"
	b.ReportAllocs()
	for b.Loop() {
		if !GlanceAt(q).Has(MentionsTemp) {
			b.Fatal("not found")
		}
	}
}

// pgbench's TPC-B statements, for BenchmarkGlanceTPCB and BenchmarkContainsFoldTPCB.
var tpcbStatements = []string{
	"UPDATE pgbench_accounts SET abalance = abalance + -4321 WHERE aid = 765432;",
	"SELECT abalance FROM pgbench_accounts WHERE aid = 765432;",
	"UPDATE pgbench_tellers SET tbalance = tbalance + -4321 WHERE tid = 42;",
	"UPDATE pgbench_branches SET bbalance = bbalance + -4321 WHERE bid = 7;",
	"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (42, 7, 765432, -4321, CURRENT_TIMESTAMP);",
}

func BenchmarkGlanceTPCB(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		for _, q := range tpcbStatements {
			if GlanceAt(q).Has(MentionsTemp) {
				b.Fatal("found")
			}
		}
	}
}

// BenchmarkContainsFoldTPCB is what judging the statements cost before GlanceAt: the
// scans of the checks, one word at a time.
func BenchmarkContainsFoldTPCB(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		for _, q := range tpcbStatements {
			for _, w := range []string{"cmpool.", "with hold", "advisory_lock", "temp", "prepare", "execute", "deallocate"} {
				if ContainsFold(q, w) {
					b.Fatal("found")
				}
			}
		}
	}
}
