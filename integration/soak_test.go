//go:build soak

package integration_test

import (
	"flag"
	"fmt"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
)

// The soak test is built only with -tags soak:
//
//	go test -tags soak -run TestSoak -v -timeout 15m ./integration/
//
// It runs the ledger workload through cmpool for -soak.duration (5 minutes by default),
// restarting the replica every -soak.restart, and checks that memory and goroutines stay
// flat and that every acknowledged write is on the primary.

var (
	soakDuration = flag.Duration("soak.duration", 5*time.Minute, "how long TestSoak runs")
	soakRestart  = flag.Duration("soak.restart", 30*time.Second, "how often TestSoak restarts the replica")
)

// soakSample is the proxy process's state at one moment.
type soakSample struct {
	at         time.Duration
	heap       uint64 // live heap after a GC, less the workload's records
	goroutines int
	acked      int
}

// sampleProcess measures the live heap, less the workload's own records of every write and
// read (which grow with the run by design), and the goroutines.
func sampleProcess(start time.Time, l *ledger) soakSample {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	l.mu.Lock()
	records := uint64(cap(l.acked))*uint64(unsafe.Sizeof(ledgerWrite{})) +
		uint64(cap(l.readsAt)+cap(l.replicaAt))*uint64(unsafe.Sizeof(time.Time{}))
	acked := len(l.acked)
	l.mu.Unlock()
	return soakSample{at: time.Since(start).Round(time.Second), heap: ms.HeapAlloc - min(records, ms.HeapAlloc),
		goroutines: runtime.NumGoroutine(), acked: acked}
}

func TestSoak(t *testing.T) {
	c := integration.StartCluster(t, integration.Options{Replicas: 1, Settings: map[string]string{"synchronous_commit": "on"}})
	admin := direct(t, c)
	ctx := ctxT(t, *soakDuration+5*time.Minute)
	_, err := admin.Exec(ctx, ledgerDDL)
	require.NoError(t, err)
	require.NoError(t, c.WaitReplication(ctx))
	cfg := faultConfig(c)
	p := integration.StartProxy(t, c, cfg)
	require.Eventually(t, func() bool { return replicaOK(p) }, 20*time.Second, 50*time.Millisecond)

	start := time.Now()
	l := startLedger(t, p.URL("", ""), 6)
	var samples []soakSample
	restarts := 0
	nextRestart := start.Add(*soakRestart)
	for time.Since(start) < *soakDuration {
		time.Sleep(5 * time.Second)
		samples = append(samples, sampleProcess(start, l))
		if time.Now().After(nextRestart) && time.Since(start) < *soakDuration-10*time.Second {
			require.NoError(t, c.StopNode(c.Replicas[0]))
			require.NoError(t, c.StartNode(ctx, c.Replicas[0]))
			restarts++
			nextRestart = time.Now().Add(*soakRestart)
		}
	}
	l.halt()
	present := l.checkPresent(t, c.Primary)
	require.Empty(t, l.dirty, "reads found servers in a bad state")
	l.mu.Lock()
	for code, n := range l.errs {
		require.Contains(t, codesNodeDown, code, "%d errors with SQLSTATE %s, e.g. %s", n, code, l.samples[code])
	}
	maxOp := l.maxOp
	reads := len(l.readsAt)
	onReplica := len(l.replicaAt)
	l.mu.Unlock()
	require.Less(t, maxOp, clientBound(cfg), "a client waited too long")

	// Flat: compare the last third of the run with the first third (after warm-up).
	third := len(samples) / 3
	require.Positive(t, third, "the soak is too short to compare")
	var early, late soakSample
	for _, s := range samples[1 : third+1] {
		early.heap = max(early.heap, s.heap)
		early.goroutines = max(early.goroutines, s.goroutines)
	}
	for _, s := range samples[len(samples)-third:] {
		late.heap = max(late.heap, s.heap)
		late.goroutines = max(late.goroutines, s.goroutines)
	}
	report := fmt.Sprintf("soak %s: %d replica restarts; acked writes %d (present %d), reads %d (%d on the replica); errors %s; longest wait %s; "+
		"heap max early %.1f MiB late %.1f MiB; goroutines max early %d late %d",
		time.Since(start).Round(time.Second), restarts, l.ackedCount(), present, reads, onReplica, l.errorSummary(), maxOp.Round(time.Millisecond),
		float64(early.heap)/(1<<20), float64(late.heap)/(1<<20), early.goroutines, late.goroutines)
	t.Log(report)
	for _, s := range samples {
		t.Logf("  at %6s heap %6.1f MiB goroutines %4d acked %6d", s.at, float64(s.heap)/(1<<20), s.goroutines, s.acked)
	}
	require.LessOrEqual(t, late.heap, early.heap*3/2+8<<20, "memory grows")
	require.LessOrEqual(t, late.goroutines, early.goroutines+10, "goroutines grow")
}
