package integration_test

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// heapAfterGC is the live heap, in bytes, after a full collection.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestPreparedRegistryBounded: a client that prepares a new statement text for every
// query (as ORMs building IN lists do) through pgx's statement cache, which deallocates
// the statements it evicts. cmpool's registry of statements keeps only those a client or
// a server still holds, so it stays small however many texts went through. The number of
// texts is 20,000, or CMPOOL_PREPARED_TEXTS.
func TestPreparedRegistryBounded(t *testing.T) {
	n := 20000
	if v := os.Getenv("CMPOOL_PREPARED_TEXTS"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(t, err)
	}
	const poolSize, maxPrepared = 2, 10
	_, p := proxy(t, pool.Config{DefaultPoolSize: poolSize, MaxPreparedStatements: maxPrepared})
	ctx := ctxT(t, 30*time.Minute)
	conn := connect(t, p.URL("", ""), pgx.QueryExecModeCacheStatement)
	cacheSize := conn.Config().StatementCacheCapacity
	// What clients and servers may hold at once, and some room for statements that are
	// no longer held and not yet collected.
	bound := cacheSize + poolSize*maxPrepared + 64

	var heapAt10k uint64
	var lenAt10k int
	start := time.Now()
	for i := range n {
		var v int
		require.NoError(t, conn.QueryRow(ctx, fmt.Sprintf("SELECT $1::int + %d", i), 1).Scan(&v))
		require.Equal(t, i+1, v)
		if i+1 == 10000 {
			heapAt10k, lenAt10k = heapAfterGC(), p.Server.Stat().PreparedStatements
		}
	}
	heapEnd := heapAfterGC()
	require.Eventually(t, func() bool {
		runtime.GC()
		return p.Server.Stat().PreparedStatements <= bound
	}, 10*time.Second, 50*time.Millisecond, "registry holds %d statements after %d texts (bound %d)",
		p.Server.Stat().PreparedStatements, n, bound)
	t.Logf("%d texts in %s; heap after GC: %d KiB at 10k, %d KiB at the end; registry: %d at 10k, %d at the end",
		n, time.Since(start).Round(time.Second), heapAt10k>>10, heapEnd>>10, lenAt10k, p.Server.Stat().PreparedStatements)
}
