package backend_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/auth"
	"github.com/cmlite/cmpool/pool/internal/backend"
	"github.com/cmlite/cmpool/pool/internal/pgmock"
)

func newPool(t *testing.T, s *pgmock.Server, cfg backend.PoolConfig) *backend.Pool {
	t.Helper()
	cc, err := pgconn.ParseConfig(s.URL("app", "app"))
	require.NoError(t, err)
	cfg.ConnConfig, cfg.Name = cc, "primary"
	if cfg.Size == 0 {
		cfg.Size = 2
	}
	cfg.ConnectTimeout = 5 * time.Second
	p, err := backend.NewPool(cfg)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	return p
}

func TestPoolReleaseAndReconnect(t *testing.T) {
	t.Parallel()
	s := pgmock.NewServer(t, pgmock.Options{})
	p := newPool(t, s, backend.PoolConfig{MaxPrepared: 3})
	ctx := context.Background()

	res, err := p.Acquire(ctx)
	require.NoError(t, err)
	sc := res.Value()
	require.NotNil(t, sc.Prepared, "every connection gets its prepared set")
	require.Zero(t, sc.Prepared.Len())
	sc.Linked.Store(42)
	p.Release(res)
	require.Zero(t, sc.Linked.Load(), "a returned server is linked to no client")
	require.EqualValues(t, 1, p.Stat().Idle)

	res = p.TryAcquire(ctx)
	require.NotNil(t, res)
	require.Same(t, sc, res.Value(), "the idle connection is lent again")
	var conns []*backend.Conn
	for c := range p.Conns() {
		conns = append(conns, c)
	}
	require.Equal(t, []*backend.Conn{sc}, conns)

	require.False(t, p.CloseNeeded(sc))
	p.Reconnect(time.Now())
	require.True(t, p.CloseNeeded(sc), "made before RECONNECT")
	p.Release(res)
	// puddle destroys in the background.
	require.Eventually(t, func() bool {
		for range p.Conns() {
			return false
		}
		return p.Stat().Total == 0
	}, 5*time.Second, time.Millisecond, "closed on return")
}

func TestPoolLogsInWithAPassthroughPassword(t *testing.T) {
	t.Parallel()
	s := pgmock.NewServer(t, pgmock.Options{})
	var asked atomic.Int32
	p := newPool(t, s, backend.PoolConfig{Passthrough: func() *auth.Passthrough {
		asked.Add(1)
		return &auth.Passthrough{Password: "secret"}
	}})
	res, err := p.Acquire(context.Background())
	require.NoError(t, err)
	defer p.Release(res)
	require.EqualValues(t, 1, asked.Load(), "the pool has no password of its own")
}

func TestCancelReachesTheServer(t *testing.T) {
	t.Parallel()
	s := pgmock.NewServer(t, pgmock.Options{})
	p := newPool(t, s, backend.PoolConfig{})
	res, err := p.Acquire(context.Background())
	require.NoError(t, err)
	defer p.Release(res)
	sc := res.Value()

	sc.Cancels.Add()
	require.Equal(t, 1, p.BeingCanceled(), "counted before it is sent")
	require.NoError(t, sc.Cancel(context.Background(), &p.Cancels, true))
	got := s.WaitCancels(1, 5*time.Second)
	require.Len(t, got, 1)
	require.Equal(t, sc.PID, got[0].ProcessID)
	require.Equal(t, s.Keys()[0].SecretKey, got[0].SecretKey)

	require.Zero(t, p.BeingCanceled())
	require.True(t, sc.Cancels.Settle(time.Second), "answered: the server may be lent again")
	waiting, active, conns := p.Cancels.Snapshot()
	require.Zero(t, waiting)
	require.Zero(t, active)
	require.Zero(t, conns)
}

func TestPoolLogsInItselfWithPassthroughKeys(t *testing.T) {
	t.Parallel()
	s := pgmock.NewServer(t, pgmock.Options{Params: map[string]string{"application_name": "pgmock"}})
	p := newPool(t, s, backend.PoolConfig{Passthrough: func() *auth.Passthrough {
		return &auth.Passthrough{MD5: "md5" + "0123456789abcdef0123456789abcdef"}
	}})
	res, err := p.Acquire(context.Background())
	require.NoError(t, err)
	defer p.Release(res)
	sc := res.Value()
	// The fake server asks for no password; what matters is what the login kept.
	require.Equal(t, s.Keys()[0].ProcessID, sc.PID)
	require.Equal(t, "pgmock", sc.Defaults["application_name"])
	require.Equal(t, byte('I'), sc.TxStatus)
	require.Empty(t, sc.Set)

	s.Expect(pgmock.ExpectQuery("SELECT 1"), pgmock.Send(pgmock.Reply([]string{"n"}, [][]string{{"1"}}, "SELECT 1", 'I')...))
	out, err := sc.Exec(context.Background(), "SELECT 1")
	require.NoError(t, err)
	require.Equal(t, []string{"1"}, out.Row, "the socket is read and written after the login")
	s.Wait(5 * time.Second)
}
