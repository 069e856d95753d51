package router

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// naiveContainsFold is the plain definition ContainsFold must match.
func naiveContainsFold(s, substr string) bool {
	return strings.Contains(strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s), substr)
}

func TestContainsFold(t *testing.T) {
	cases := []struct {
		s, sub string
		want   bool
	}{
		{"SELECT pg_advisory_lock(1)", "advisory_lock", true},
		{"select PG_ADVISORY_LOCK(1)", "advisory_lock", true},
		{"select pg_advisory_unlock(1)", "advisory_lock", false},
		{"CREATE TEMP TABLE t()", "temp", true},
		{"tem", "temp", false},
		{"", "temp", false},
		{"x", "", true},
		{"TeMpTeMp", "temp", true},
		{"ttttemp", "temp", true},
		{"DECLARE c CURSOR WITH HOLD FOR SELECT 1", "with hold", true},
		{"with  hold", "with hold", false},
		{"_temp", "_temp", true},
		{"ÉTEMP", "temp", true},
	}
	for _, c := range cases {
		if got := ContainsFold(c.s, c.sub); got != c.want {
			t.Errorf("ContainsFold(%q, %q) = %v, want %v", c.s, c.sub, got, c.want)
		}
		if got := ContainsFold([]byte(c.s), c.sub); got != c.want {
			t.Errorf("ContainsFold([]byte(%q), %q) = %v, want %v", c.s, c.sub, got, c.want)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := "teEmMpPT_ x"
	for range 50000 {
		b := make([]byte, rng.IntN(12))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		sub := []string{"temp", "te", "t", "_t", "x e", "mp"}[rng.IntN(6)]
		if got, want := ContainsFold(string(b), sub), naiveContainsFold(string(b), sub); got != want {
			t.Fatalf("ContainsFold(%q, %q) = %v, want %v", b, sub, got, want)
		}
	}
}

func FuzzContainsFold(f *testing.F) {
	f.Add("SELECT pg_advisory_lock(1)", "advisory_lock")
	f.Add("CREATE TEMP TABLE t()", "temp")
	f.Fuzz(func(t *testing.T, s, sub string) {
		sub = strings.ToLower(sub)
		for i := 0; i < len(sub); i++ {
			if sub[i] >= 0x80 {
				return // substr is lower-case ASCII by contract
			}
		}
		if got, want := ContainsFold(s, sub), naiveContainsFold(s, sub); got != want {
			t.Fatalf("ContainsFold(%q, %q) = %v, want %v", s, sub, got, want)
		}
	})
}

func BenchmarkContainsFold(b *testing.B) {
	q := "SELECT abalance FROM pgbench_accounts WHERE aid = 4242424;"
	b.ReportAllocs()
	for b.Loop() {
		for _, sub := range []string{"temp", "with hold", "advisory_lock", "unlock", "prepare", "execute"} {
			if ContainsFold(q, sub) {
				b.Fatal("found")
			}
		}
	}
}

// A long statement full of one case of substr's first byte: each case is scanned once,
// not once per candidate.
func BenchmarkContainsFoldManyCandidates(b *testing.B) {
	q := strings.Repeat("t", 1<<20) + "TEMP"
	b.ReportAllocs()
	for b.Loop() {
		if !ContainsFold(q, "temp") {
			b.Fatal("not found")
		}
	}
}
