package session

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// Plan's shortcut for a server already in sync must give what the full plan gives:
// nothing. Checked over random servers and clients drawn from a few names and values,
// identity parameters and role "none" included.
func TestPlanShortcutMatchesFullPlan(t *testing.T) {
	names := []string{"role", "session_authorization", "work_mem", "search_path", "myapp.tenant"}
	values := []string{"a", "b", "none"}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func() map[string]string {
		m := map[string]string{}
		for _, n := range names {
			if rng.IntN(3) > 0 {
				m[n] = values[rng.IntN(len(values))]
			}
		}
		return m
	}
	inSyncSeen, outSeen := 0, 0
	for range 20000 {
		sv := Server{Defaults: pick(), Set: pick()}
		params := pick()
		if rng.IntN(2) == 0 {
			// A client whose settings are what the server holds: the case the shortcut is for.
			params = map[string]string{}
			for _, n := range names {
				if v, ok := sv.Value(n); ok {
					params[n] = v
				}
			}
			for n := range sv.Set {
				params[n] = sv.Set[n]
			}
		}
		for _, resetAll := range []bool{false, true} {
			full := planSteps(sv, params, resetAll)
			got := Plan(sv, params, resetAll)
			require.Equal(t, len(full), len(got), "server %v, client %v, resetAll %v", sv, params, resetAll)
			require.Equal(t, Query(full), Query(got))
			if !resetAll && inSync(sv, params) {
				inSyncSeen++
				require.Empty(t, full, "in sync, yet the full plan has steps: server %v, client %v", sv, params)
			} else if !resetAll {
				outSeen++
			}
		}
	}
	require.Greater(t, inSyncSeen, 1000)
	require.Greater(t, outSeen, 1000)
}

func TestPlanInSyncAllocatesNothing(t *testing.T) {
	sv := Server{Defaults: map[string]string{"TimeZone": "UTC", "application_name": "app"}, Set: map[string]string{"work_mem": "4MB"}}
	params := map[string]string{"TimeZone": "UTC", "application_name": "app", "work_mem": "4MB"}
	allocs := testing.AllocsPerRun(100, func() {
		if Plan(sv, params, false) != nil {
			t.Fatal("steps for a server in sync")
		}
	})
	require.Zero(t, allocs)
}

// BenchmarkPlanInSync is the check made each time a client gets a server that last ran
// another client with the same settings (pgbench's clients, on a pool of servers).
func BenchmarkPlanInSync(b *testing.B) {
	sv := Server{Defaults: map[string]string{"TimeZone": "UTC", "application_name": "", "client_encoding": "UTF8", "DateStyle": "ISO, MDY"},
		Set: map[string]string{"application_name": "pgbench"}}
	params := map[string]string{"application_name": "pgbench", "client_encoding": "UTF8"}
	for i := 0; i < b.N; i++ {
		if Plan(sv, params, false) != nil {
			b.Fatal("steps for a server in sync")
		}
	}
}
