package router_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/router"
)

func TestPrimaryLSNAfterReadsOncePerTime(t *testing.T) {
	t.Parallel()
	fs := newFakeSet(t, router.ReplicaSetConfig{}, "0/100", "0/100")
	ctx := t.Context()

	t0 := time.Now()
	lsn, err := fs.rs.PrimaryLSNAfter(ctx, t0)
	require.NoError(t, err)
	require.Equal(t, mustLSN(t, "0/100"), lsn)
	require.EqualValues(t, 1, fs.primary.insertReads.Load())

	// A time before the last read is served by it.
	fs.primary.set("0/200", "0/200", "-1", false)
	lsn, err = fs.rs.PrimaryLSNAfter(ctx, t0)
	require.NoError(t, err)
	require.Equal(t, mustLSN(t, "0/100"), lsn)
	require.EqualValues(t, 1, fs.primary.insertReads.Load())

	// A later time needs a new read, and many callers with the same time share one.
	t1 := time.Now()
	var wg sync.WaitGroup
	got := make([]router.LSN, 50)
	for i := range got {
		wg.Go(func() {
			l, err := fs.rs.PrimaryLSNAfter(ctx, t1)
			if err == nil {
				got[i] = l
			}
		})
	}
	wg.Wait()
	for _, l := range got {
		require.Equal(t, mustLSN(t, "0/200"), l)
	}
	require.EqualValues(t, 2, fs.primary.insertReads.Load())
}

func TestPrimaryLSNAfterErrors(t *testing.T) {
	t.Parallel()
	fs := newFakeSet(t, router.ReplicaSetConfig{CheckTimeout: 500 * time.Millisecond}, "0/100", "0/100")

	fs.primary.setDown(true)
	_, err := fs.rs.PrimaryLSNAfter(t.Context(), time.Now())
	require.Error(t, err, "a primary that is down gives no position")

	fs.primary.setDown(false)
	lsn, err := fs.rs.PrimaryLSNAfter(t.Context(), time.Now())
	require.NoError(t, err, "the next caller tries again")
	require.Equal(t, mustLSN(t, "0/100"), lsn)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = fs.rs.PrimaryLSNAfter(ctx, time.Now())
	require.ErrorIs(t, err, context.Canceled)

	fs.rs.Close()
	_, err = fs.rs.PrimaryLSNAfter(t.Context(), time.Now())
	require.ErrorIs(t, err, router.ErrClosed)
}
