package router_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/integration"
	"github.com/cmlite/cmpool/router"
)

// ---- A fake PostgreSQL node that answers the monitor's check queries ----

// fakeNode is an in-process server on 127.0.0.1:0 that speaks just enough of the protocol
// (trust startup, simple queries) to answer the ReplicaSet's checks with the values it holds.
type fakeNode struct {
	ln       net.Listener
	attempts atomic.Int64 // startup messages and queries received (cancel requests are not counted)
	// insertReads counts reads of pg_current_wal_insert_lsn(), answered with lsn.
	insertReads atomic.Int64
	wg          sync.WaitGroup

	mu         sync.Mutex
	inRecovery bool
	lsn        string // the primary's pg_current_wal_lsn(), or the replica's replay LSN
	receive    string // the replica's receive LSN
	age        string // seconds since the last replayed commit; "-1" for none
	down       bool   // refuse connections and drop open ones
	conns      []net.Conn
}

func startFake(t testing.TB, inRecovery bool, lsn string) *fakeNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &fakeNode{ln: ln, inRecovery: inRecovery, lsn: lsn, receive: lsn, age: "-1"}
	f.wg.Go(f.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		f.setDown(true)
		f.wg.Wait()
	})
	return f
}

func (f *fakeNode) URL() string {
	return "postgres://monitor@" + f.ln.Addr().String() + "/postgres?sslmode=disable"
}

// set changes the values the node reports.
func (f *fakeNode) set(lsn, receive, age string, inRecovery bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lsn, f.receive, f.age, f.inRecovery = lsn, receive, age, inRecovery
}

// setDown makes the node refuse connections and drops the open ones (down), or serve again.
func (f *fakeNode) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
	if down {
		for _, c := range f.conns {
			_ = c.Close()
		}
		f.conns = nil
	}
}

func (f *fakeNode) accept() {
	for {
		conn, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns = append(f.conns, conn)
		f.mu.Unlock()
		f.wg.Go(func() { f.serve(conn) })
	}
}

func (f *fakeNode) serve(conn net.Conn) {
	defer conn.Close()
	be := pgproto3.NewBackend(conn, conn)
	be.SetMaxBodyLen(1 << 20)
startup:
	for {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return
		}
		switch msg.(type) {
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return
			}
		case *pgproto3.StartupMessage:
			f.attempts.Add(1)
			break startup
		default:
			return // a CancelRequest: pgconn sends one when it closes a broken connection
		}
	}
	f.mu.Lock()
	down := f.down
	f.mu.Unlock()
	if down {
		return
	}
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "17.0"})
	be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if be.Flush() != nil {
		return
	}
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		q, ok := msg.(*pgproto3.Query)
		if !ok {
			return // Terminate, or something a check never sends
		}
		row, ok := f.answer(q.String)
		if !ok {
			return
		}
		fields := make([]pgproto3.FieldDescription, len(row))
		values := make([][]byte, len(row))
		for i, v := range row {
			fields[i] = pgproto3.FieldDescription{Name: fmt.Appendf(nil, "c%d", i), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}
			values[i] = []byte(v)
		}
		be.Send(&pgproto3.RowDescription{Fields: fields})
		be.Send(&pgproto3.DataRow{Values: values})
		be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
		be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		if be.Flush() != nil {
			return
		}
	}
}

// answer returns the row for a check query, or false when the node is down.
func (f *fakeNode) answer(sql string) ([]string, bool) {
	f.attempts.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, false
	}
	recovery := "f"
	if f.inRecovery {
		recovery = "t"
	}
	if strings.Contains(sql, "pg_current_wal_insert_lsn") {
		f.insertReads.Add(1)
		return []string{f.lsn, f.lsn}, true // insert and flush positions
	}
	if strings.Contains(sql, "pg_current_wal_lsn") {
		return []string{f.lsn, recovery}, true
	}
	return []string{recovery, f.lsn, f.receive, f.age}, true
}

// fakeSet is a ReplicaSet over fake nodes: a primary at primaryLSN and one replica per entry of
// replays, each caught up to that replay LSN.
type fakeSet struct {
	rs       *router.ReplicaSet
	primary  *fakeNode
	replicas []*fakeNode
}

func newFakeSet(t testing.TB, cfg router.ReplicaSetConfig, primaryLSN string, replays ...string) *fakeSet {
	t.Helper()
	fs := &fakeSet{primary: startFake(t, false, primaryLSN)}
	cfg.Primary = fs.primary.URL()
	for _, lsn := range replays {
		f := startFake(t, true, lsn)
		fs.replicas = append(fs.replicas, f)
		cfg.Replicas = append(cfg.Replicas, f.URL())
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	rs, err := router.NewReplicaSet(cfg)
	require.NoError(t, err)
	t.Cleanup(rs.Close)
	fs.rs = rs
	return fs
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func replicaStates(rs *router.ReplicaSet) []string {
	var out []string
	for _, s := range rs.Snapshot() {
		out = append(out, s.State)
	}
	return out
}

// picks runs n Picks (each followed by Done) and counts them per replica; -1 counts misses.
func countPicks(rs *router.ReplicaSet, minLSN router.LSN, n int) map[int]int {
	got := map[int]int{}
	for range n {
		i, ok := rs.Pick(minLSN)
		if !ok {
			got[-1]++
			continue
		}
		got[i]++
		rs.Done(i)
	}
	return got
}

func mustLSN(t testing.TB, s string) router.LSN {
	t.Helper()
	l, err := router.ParseLSN(s)
	require.NoError(t, err)
	return l
}

// ---- Unit tests on fake nodes ----

func TestReplicaSetConfigValidation(t *testing.T) {
	ok := "postgres://u@127.0.0.1:1/db?sslmode=disable"
	tests := []struct {
		name string
		cfg  router.ReplicaSetConfig
		err  string // empty: valid
	}{
		{"minimal", router.ReplicaSetConfig{Primary: ok}, ""},
		{"dsn", router.ReplicaSetConfig{Primary: "host=127.0.0.1 port=1 user=u sslmode=disable", Replicas: []string{ok}}, ""},
		{"every balance", router.ReplicaSetConfig{Primary: ok, Balance: router.BalanceLeastOutstanding}, ""},
		{"no primary", router.ReplicaSetConfig{Replicas: []string{ok}}, "no primary"},
		{"bad primary", router.ReplicaSetConfig{Primary: "postgres://u@127.0.0.1:notaport/db"}, "primary"},
		{"bad replica", router.ReplicaSetConfig{Primary: ok, Replicas: []string{ok, "postgres://u@[::1/db"}}, "replica 1"},
		{"bad balance", router.ReplicaSetConfig{Primary: ok, Balance: "weighted"}, "unknown balance"},
		{"negative interval", router.ReplicaSetConfig{Primary: ok, CheckInterval: -time.Second}, "negative"},
		{"negative lag", router.ReplicaSetConfig{Primary: ok, MaxLagBytes: -1}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := router.NewReplicaSet(tt.cfg)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			defer rs.Close()
			for _, s := range rs.Snapshot() {
				require.Equal(t, router.ReplicaUnknown, s.State)
				require.Equal(t, router.RoleReplica, s.Role)
				require.Equal(t, "127.0.0.1:1", s.Host)
			}
			_, ok := rs.Pick(0)
			require.False(t, ok, "nothing is usable before the first check")
		})
	}
}

func TestPickBalance(t *testing.T) {
	tests := []struct {
		name    string
		balance router.Balance
		replays []string
		minLSN  string
		n       int
		want    map[int]int // exact counts; nil: every eligible replica gets a fair share
	}{
		{"round robin", "", []string{"0/100", "0/100", "0/100"}, "0/0", 30, map[int]int{0: 10, 1: 10, 2: 10}},
		{"round robin explicit", router.BalanceRoundRobin, []string{"0/100", "0/100"}, "0/0", 10, map[int]int{0: 5, 1: 5}},
		{"round robin min lsn", "", []string{"0/100", "0/200", "0/300"}, "0/200", 30, map[int]int{1: 15, 2: 15}},
		{"min lsn beyond all", "", []string{"0/100", "0/200"}, "0/201", 10, map[int]int{-1: 10}},
		{"least outstanding", router.BalanceLeastOutstanding, []string{"0/100", "0/100", "0/100"}, "0/0", 30, map[int]int{0: 10, 1: 10, 2: 10}},
		{"least outstanding min lsn", router.BalanceLeastOutstanding, []string{"0/100", "0/300"}, "0/300", 10, map[int]int{1: 10}},
		{"random", router.BalanceRandom, []string{"0/100", "0/100", "0/100"}, "0/0", 3000, nil},
		{"random min lsn", router.BalanceRandom, []string{"0/300", "0/100", "0/300"}, "0/300", 2000, nil},
		{"no replicas", "", nil, "0/0", 5, map[int]int{-1: 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFakeSet(t, router.ReplicaSetConfig{Balance: tt.balance}, "0/300", tt.replays...)
			fs.rs.CheckNow(t.Context())
			for _, s := range fs.rs.Snapshot() {
				require.Equal(t, router.ReplicaOK, s.State, "replica %d: %s", s.Index, s.LastError)
			}
			got := countPicks(fs.rs, mustLSN(t, tt.minLSN), tt.n)
			if tt.want != nil {
				require.Equal(t, tt.want, got)
				return
			}
			minLSN := mustLSN(t, tt.minLSN)
			var eligible int
			for i, r := range tt.replays {
				if mustLSN(t, r) >= minLSN {
					eligible++
				} else {
					require.Zero(t, got[i], "replica %d is behind minLSN", i)
				}
			}
			for i, r := range tt.replays {
				if mustLSN(t, r) >= minLSN {
					share := tt.n / eligible
					require.InDelta(t, share, got[i], float64(share)/3, "replica %d: %v", i, got)
				}
			}
			require.Zero(t, got[-1])
		})
	}
}

func TestPickRoundRobinOrder(t *testing.T) {
	fs := newFakeSet(t, router.ReplicaSetConfig{}, "0/100", "0/100", "0/100", "0/100", "0/100")
	fs.rs.CheckNow(t.Context())
	var got []int
	for range 8 {
		i, ok := fs.rs.Pick(0)
		require.True(t, ok)
		got = append(got, i)
	}
	require.Equal(t, []int{0, 1, 2, 3, 0, 1, 2, 3}, got)
	for _, s := range fs.rs.Snapshot() {
		require.EqualValues(t, 2, s.Routed)
		require.EqualValues(t, 2, s.Outstanding)
	}
	for _, i := range got {
		fs.rs.Done(i)
	}
	for _, s := range fs.rs.Snapshot() {
		require.Zero(t, s.Outstanding)
	}
}

func TestPickLeastOutstanding(t *testing.T) {
	fs := newFakeSet(t, router.ReplicaSetConfig{Balance: router.BalanceLeastOutstanding}, "0/100", "0/100", "0/100", "0/100", "0/100")
	rs := fs.rs
	rs.CheckNow(t.Context())
	held := map[int]int{}
	for range 8 { // two on each
		i, ok := rs.Pick(0)
		require.True(t, ok)
		held[i]++
	}
	require.Equal(t, map[int]int{0: 2, 1: 2, 2: 2, 3: 2}, held)
	rs.Done(2)
	rs.Done(2)
	rs.Done(1)
	i, ok := rs.Pick(0)
	require.True(t, ok)
	require.Equal(t, 2, i, "replica 2 has no outstanding work")
	i, ok = rs.Pick(0)
	require.True(t, ok)
	require.Contains(t, []int{1, 2}, i, "replicas 1 and 2 have one each")
}

func TestReplicaSetLag(t *testing.T) {
	tests := []struct {
		name        string
		cfg         router.ReplicaSetConfig
		primary     string
		replay, age string
		state       string
		lagBytes    int64
		lagTime     time.Duration
	}{
		{"caught up", router.ReplicaSetConfig{MaxLagBytes: 1000, MaxLagTime: time.Second}, "1/0", "1/0", "3600", router.ReplicaOK, 0, 0},
		{"ahead of the primary reading", router.ReplicaSetConfig{MaxLagBytes: 1000}, "1/0", "1/10", "-1", router.ReplicaOK, 0, 0},
		{"within bytes", router.ReplicaSetConfig{MaxLagBytes: 1000}, "1/1000", "1/C18", "2", router.ReplicaOK, 1000, 2 * time.Second},
		{"over bytes", router.ReplicaSetConfig{MaxLagBytes: 1000}, "1/1000", "1/C17", "2", router.ReplicaLagging, 1001, 2 * time.Second},
		{"across the 4GB boundary", router.ReplicaSetConfig{MaxLagBytes: 1 << 20}, "1/100000", "0/FFF00000", "0.5", router.ReplicaLagging, 2 << 20, 500 * time.Millisecond},
		{"no byte limit", router.ReplicaSetConfig{}, "5/0", "1/0", "-1", router.ReplicaOK, 4 << 32, 0},
		{"over time", router.ReplicaSetConfig{MaxLagTime: 10 * time.Second}, "1/2000", "1/1000", "30.5", router.ReplicaLagging, 0x1000, 30500 * time.Millisecond},
		{"within time", router.ReplicaSetConfig{MaxLagTime: 10 * time.Second}, "1/2000", "1/1000", "9.5", router.ReplicaOK, 0x1000, 9500 * time.Millisecond},
		{"unknown replay time", router.ReplicaSetConfig{MaxLagTime: 10 * time.Second}, "1/2000", "1/1000", "-1", router.ReplicaOK, 0x1000, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFakeSet(t, tt.cfg, tt.primary, tt.replay)
			fs.replicas[0].set(tt.replay, tt.replay, tt.age, true)
			fs.rs.CheckNow(t.Context())
			require.Equal(t, mustLSN(t, tt.primary), fs.rs.PrimaryLSN())
			s := fs.rs.Snapshot()[0]
			require.Equal(t, tt.state, s.State)
			require.Equal(t, tt.lagBytes, s.LagBytes)
			require.Equal(t, tt.lagTime, s.LagTime)
			require.Equal(t, mustLSN(t, tt.replay), s.ReplayLSN)
			_, ok := fs.rs.Pick(0)
			require.Equal(t, tt.state == router.ReplicaOK, ok)
		})
	}
}

// A replica seen caught up is at most the time since then behind, whatever the age of its last
// replayed commit: the WAL it lacks may hold no commit at all (a checkpoint on an idle primary).
func TestReplicaSetLagTimeBoundedByLastCatchUp(t *testing.T) {
	fs := newFakeSet(t, router.ReplicaSetConfig{MaxLagTime: 10 * time.Second}, "1/1000", "1/1000")
	fs.replicas[0].set("1/1000", "1/1000", "600", true)
	fs.rs.CheckNow(t.Context())
	require.Equal(t, []string{router.ReplicaOK}, replicaStates(fs.rs))

	fs.primary.set("1/1100", "", "", false) // a checkpoint record, not replayed yet
	fs.rs.CheckNow(t.Context())
	s := fs.rs.Snapshot()[0]
	require.Equal(t, router.ReplicaOK, s.State)
	require.EqualValues(t, 0x100, s.LagBytes)
	require.Less(t, s.LagTime, 5*time.Second)
}

func TestReplicaSetBanAndBackoff(t *testing.T) {
	const ban = 100 * time.Millisecond
	fs := newFakeSet(t, router.ReplicaSetConfig{BanTime: ban}, "0/100", "0/100", "0/100")
	rs, bad := fs.rs, fs.replicas[1]
	rs.CheckNow(t.Context())
	require.Equal(t, []string{router.ReplicaOK, router.ReplicaOK}, replicaStates(rs))

	// Each failure after a ban ends doubles the ban, up to 8x.
	bad.setDown(true)
	for _, factor := range []time.Duration{1, 2, 4, 8, 8} {
		before := time.Now()
		rs.CheckNow(t.Context())
		s := rs.Snapshot()[1]
		require.Equal(t, router.ReplicaBanned, s.State)
		require.NotEmpty(t, s.LastError)
		require.WithinRange(t, s.BannedUntil, before.Add(factor*ban), time.Now().Add(factor*ban))
		require.Equal(t, map[int]int{0: 10}, countPicks(rs, 0, 10))

		// Not checked again while banned.
		attempts := bad.attempts.Load()
		rs.CheckNow(t.Context())
		require.Equal(t, attempts, bad.attempts.Load(), "factor %d", factor)
		require.Equal(t, s.BannedUntil, rs.Snapshot()[1].BannedUntil)
		time.Sleep(time.Until(s.BannedUntil))
	}

	// Back up: the first check after the ban brings it back and resets the backoff.
	bad.setDown(false)
	rs.CheckNow(t.Context())
	s := rs.Snapshot()[1]
	require.Equal(t, router.ReplicaOK, s.State)
	require.Empty(t, s.LastError)
	require.Equal(t, map[int]int{0: 5, 1: 5}, countPicks(rs, 0, 10))

	// Ban from the pool: 1x again; a second Ban while banned does not extend it.
	before := time.Now()
	rs.Ban(1, fmt.Errorf("dial: connection refused"))
	s = rs.Snapshot()[1]
	require.Equal(t, router.ReplicaBanned, s.State)
	require.Equal(t, "dial: connection refused", s.LastError)
	require.WithinRange(t, s.BannedUntil, before.Add(ban), time.Now().Add(ban))
	rs.Ban(1, nil)
	require.Equal(t, s.BannedUntil, rs.Snapshot()[1].BannedUntil)
	require.Equal(t, map[int]int{0: 10}, countPicks(rs, 0, 10))

	time.Sleep(time.Until(s.BannedUntil))
	rs.CheckNow(t.Context())
	require.Equal(t, []string{router.ReplicaOK, router.ReplicaOK}, replicaStates(rs))

	require.Panics(t, func() { rs.Ban(2, nil) })
	require.Panics(t, func() { rs.Done(-1) })
}

func TestReplicaSetPromotionFake(t *testing.T) {
	var promoted []int
	var mu sync.Mutex
	cfg := router.ReplicaSetConfig{OnPromotion: func(i int) {
		mu.Lock()
		defer mu.Unlock()
		promoted = append(promoted, i)
	}}
	fs := newFakeSet(t, cfg, "0/100", "0/100", "0/100")
	fs.rs.CheckNow(t.Context())
	fs.replicas[1].set("0/100", "0/100", "-1", false)
	fs.rs.CheckNow(t.Context())
	fs.rs.CheckNow(t.Context())
	mu.Lock()
	require.Equal(t, []int{1}, promoted, "called once per promotion")
	mu.Unlock()
	s := fs.rs.Snapshot()
	require.Equal(t, router.RolePrimary, s[1].Role)
	require.Equal(t, router.RoleReplica, s[0].Role)
	require.Equal(t, map[int]int{0: 10}, countPicks(fs.rs, 0, 10))

	// Rebuilt as a replica, then promoted again.
	fs.replicas[1].set("0/100", "0/100", "-1", true)
	fs.rs.CheckNow(t.Context())
	require.Equal(t, router.RoleReplica, fs.rs.Snapshot()[1].Role)
	fs.replicas[1].set("0/100", "0/100", "-1", false)
	fs.rs.CheckNow(t.Context())
	mu.Lock()
	require.Equal(t, []int{1, 1}, promoted)
	mu.Unlock()
}

// TestReplicaSetPromotionWhileBanned: a replica that failed often (its ban doubled to 8x)
// and then came back is promoted after the primary fails. The monitor checks it while the
// primary fails, ban or not, and follows the promotion in the round that first sees the
// primary down.
func TestReplicaSetPromotionWhileBanned(t *testing.T) {
	var promoted atomic.Int64
	cfg := router.ReplicaSetConfig{BanTime: time.Hour, OnPromotion: func(int) { promoted.Add(1) }}
	fs := newFakeSet(t, cfg, "0/100", "0/100")
	rs, r := fs.rs, fs.replicas[0]
	rs.CheckNow(t.Context())
	rs.Ban(0, fmt.Errorf("connection reset"))
	require.Equal(t, []string{router.ReplicaBanned}, replicaStates(rs))

	// The primary is up: the banned replica is left alone, and stays banned.
	attempts := r.attempts.Load()
	rs.CheckNow(t.Context())
	require.Equal(t, attempts, r.attempts.Load())

	// Healthy again but banned, while the primary fails: checked, still banned.
	fs.primary.setDown(true)
	rs.CheckNow(t.Context())
	require.Greater(t, r.attempts.Load(), attempts, "checked in the round that saw the primary fail")
	require.Equal(t, []string{router.ReplicaBanned}, replicaStates(rs))
	require.Zero(t, promoted.Load())

	// Promoted: seen at the next round, ban or not.
	r.set("0/100", "0/100", "-1", false)
	rs.CheckNow(t.Context())
	require.Equal(t, int64(1), promoted.Load())
	s := rs.Snapshot()[0]
	require.Equal(t, router.RolePrimary, s.Role)
	require.Equal(t, router.ReplicaOK, s.State)
	require.Equal(t, map[int]int{-1: 3}, countPicks(rs, 0, 3), "a promoted replica takes no reads")
}

// TestReplicaSetBannedReplicaCheckedAsThePrimaryFails: the round whose primary check fails
// first also checks the banned replicas, so a promotion that happened just before is
// followed within that round.
func TestReplicaSetBannedReplicaCheckedAsThePrimaryFails(t *testing.T) {
	var promoted atomic.Int64
	cfg := router.ReplicaSetConfig{BanTime: time.Hour, OnPromotion: func(int) { promoted.Add(1) }}
	fs := newFakeSet(t, cfg, "0/100", "0/100")
	fs.rs.CheckNow(t.Context())
	fs.rs.Ban(0, fmt.Errorf("connection reset"))
	fs.primary.setDown(true)
	fs.replicas[0].set("0/100", "0/100", "-1", false)
	fs.rs.CheckNow(t.Context())
	require.Equal(t, int64(1), promoted.Load())
	require.Equal(t, router.RolePrimary, fs.rs.Snapshot()[0].Role)
}

func TestReplicaSetWaitForFake(t *testing.T) {
	// A long CheckInterval: only WaitFor's own polling can see the replay advance in time.
	fs := newFakeSet(t, router.ReplicaSetConfig{CheckInterval: time.Hour}, "0/200", "0/100", "0/100")
	rs := fs.rs
	rs.Start()
	require.Eventually(t, func() bool { return countPicks(rs, 0, 1)[-1] == 0 }, 5*time.Second, time.Millisecond)

	i, ok := rs.WaitFor(t.Context(), mustLSN(t, "0/100"))
	require.True(t, ok, "already replayed")
	rs.Done(i)

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, ok = rs.WaitFor(ctx, mustLSN(t, "0/200"))
	require.False(t, ok, "no replica gets there before ctx ends")

	go func() {
		time.Sleep(50 * time.Millisecond)
		fs.replicas[1].set("0/200", "0/200", "-1", true)
	}()
	begin := time.Now()
	ctx, cancel = context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	i, ok = rs.WaitFor(ctx, mustLSN(t, "0/200"))
	require.True(t, ok)
	require.Equal(t, 1, i)
	require.Less(t, time.Since(begin), time.Second)
	rs.Done(i)

	// Close ends the waits.
	errc := make(chan bool, 1)
	go func() {
		_, ok := rs.WaitFor(context.Background(), mustLSN(t, "1/0"))
		errc <- ok
	}()
	time.Sleep(20 * time.Millisecond)
	rs.Close()
	select {
	case ok := <-errc:
		require.False(t, ok)
	case <-time.After(5 * time.Second):
		t.Fatal("WaitFor still waiting after Close")
	}
	rs.Close()
	_, ok = rs.Pick(0)
	require.False(t, ok)
	rs.CheckNow(t.Context()) // does nothing once closed
}

func TestReplicaSetPrimaryDown(t *testing.T) {
	fs := newFakeSet(t, router.ReplicaSetConfig{MaxLagBytes: 1000}, "0/5000", "0/5000")
	fs.rs.CheckNow(t.Context())
	require.Equal(t, mustLSN(t, "0/5000"), fs.rs.PrimaryLSN())
	fs.primary.setDown(true)
	fs.replicas[0].set("0/6000", "0/6000", "1", true)
	fs.rs.CheckNow(t.Context())
	require.Equal(t, mustLSN(t, "0/5000"), fs.rs.PrimaryLSN(), "the last position read stays")
	require.Equal(t, []string{router.ReplicaOK}, replicaStates(fs.rs), "replicas still serve reads")
}

func BenchmarkPick(b *testing.B) {
	for _, balance := range []router.Balance{router.BalanceRoundRobin, router.BalanceRandom, router.BalanceLeastOutstanding} {
		b.Run(string(balance), func(b *testing.B) {
			fs := newFakeSet(b, router.ReplicaSetConfig{Balance: balance, Logger: slog.New(slog.DiscardHandler)},
				"0/300", "0/100", "0/200", "0/300")
			fs.rs.CheckNow(b.Context())
			minLSN := router.LSN(0x200)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i, ok := fs.rs.Pick(minLSN)
					if !ok {
						b.Error("no replica")
						return
					}
					fs.rs.Done(i)
				}
			})
		})
	}
}

// ---- Integration tests against real PostgreSQL ----

func execSQL(t *testing.T, url string, sql string) [][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	results, err := conn.Exec(ctx, sql).ReadAll()
	require.NoError(t, err, sql)
	var rows [][]string
	for _, r := range results {
		for _, raw := range r.Rows {
			row := make([]string, len(raw))
			for i, v := range raw {
				row[i] = string(v)
			}
			rows = append(rows, row)
		}
	}
	return rows
}

func clusterSet(t *testing.T, c *integration.Cluster, cfg router.ReplicaSetConfig) *router.ReplicaSet {
	t.Helper()
	cfg.Primary = c.Primary.URL("", "")
	for _, n := range c.Replicas {
		cfg.Replicas = append(cfg.Replicas, n.URL("", ""))
	}
	cfg.Logger = testLogger(t)
	rs, err := router.NewReplicaSet(cfg)
	require.NoError(t, err)
	t.Cleanup(rs.Close)
	return rs
}

// waitStates runs checks until the replicas are in the states want, for at most 20 seconds,
// each check after the bans (if any) end.
func waitStates(t *testing.T, rs *router.ReplicaSet, want ...string) []router.ReplicaStatus {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, s := range rs.Snapshot() {
			if time.Now().Before(s.BannedUntil) {
				time.Sleep(time.Until(s.BannedUntil))
			}
		}
		rs.CheckNow(t.Context())
		got := rs.Snapshot()
		if slices.Equal(replicaStates(rs), want) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas are %+v, want states %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReplicaSetCluster(t *testing.T) {
	t.Parallel()
	c := integration.StartCluster(t, integration.Options{Replicas: 2})
	primary := c.Primary.URL("", "")
	ctx := func(d time.Duration) context.Context {
		ctx, cancel := context.WithTimeout(t.Context(), d)
		t.Cleanup(cancel)
		return ctx
	}

	t.Run("HealthAndRoundRobin", func(t *testing.T) {
		require.NoError(t, c.WaitReplication(ctx(30*time.Second)))
		rs := clusterSet(t, c, router.ReplicaSetConfig{})
		rs.CheckNow(t.Context())
		require.NotZero(t, rs.PrimaryLSN())
		for i, s := range rs.Snapshot() {
			require.Equal(t, router.ReplicaOK, s.State, s.LastError)
			require.Equal(t, router.RoleReplica, s.Role)
			require.Equal(t, c.Replicas[i].Addr(), s.Host)
			require.Less(t, s.LagBytes, int64(1<<20))
			require.NotZero(t, s.ReplayLSN)
		}
		var got []int
		for range 6 {
			i, ok := rs.Pick(0)
			require.True(t, ok)
			got = append(got, i)
			rs.Done(i)
		}
		require.Equal(t, []int{0, 1, 0, 1, 0, 1}, got)
	})

	t.Run("PrimaryLSNAndWaitFor", func(t *testing.T) {
		rs := clusterSet(t, c, router.ReplicaSetConfig{})
		rs.CheckNow(t.Context())
		before := rs.PrimaryLSN()
		require.NotZero(t, before)

		execSQL(t, primary, "create table waitfor as select g, repeat('x', 1000) as pad from generate_series(1, 4000) g")
		// pg_current_wal_lsn() is the write position: asynchronous commits may still sit in the
		// WAL buffers until the WAL writer's next round.
		require.Eventually(t, func() bool {
			rs.CheckNow(t.Context())
			return rs.PrimaryLSN() > before+router.LSN(2<<20)
		}, 10*time.Second, 20*time.Millisecond, "about 4MB written after %s", before)
		after := rs.PrimaryLSN()

		rs.Start()
		require.NoError(t, c.WaitReplication(ctx(30*time.Second)))
		begin := time.Now()
		i, ok := rs.WaitFor(ctx(10*time.Second), after)
		require.True(t, ok)
		require.Less(t, time.Since(begin), 500*time.Millisecond)
		require.GreaterOrEqual(t, rs.Snapshot()[i].ReplayLSN, after)
		rs.Done(i)
	})

	t.Run("StoppedReplicaIsBanned", func(t *testing.T) {
		rs := clusterSet(t, c, router.ReplicaSetConfig{BanTime: 200 * time.Millisecond})
		rs.CheckNow(t.Context())
		require.Equal(t, []string{router.ReplicaOK, router.ReplicaOK}, replicaStates(rs))

		require.NoError(t, c.StopNode(c.Replicas[1]))
		rs.CheckNow(t.Context())
		s := rs.Snapshot()[1]
		require.Equal(t, router.ReplicaBanned, s.State)
		require.NotEmpty(t, s.LastError)
		require.Equal(t, map[int]int{0: 20}, countPicks(rs, 0, 20))

		require.NoError(t, c.StartNode(ctx(60*time.Second), c.Replicas[1]))
		waitStates(t, rs, router.ReplicaOK, router.ReplicaOK)
		require.Empty(t, rs.Snapshot()[1].LastError)
		require.Equal(t, map[int]int{0: 10, 1: 10}, countPicks(rs, 0, 20))
		require.NoError(t, c.WaitReplication(ctx(30*time.Second)))
	})

	t.Run("LaggingReplicaIsSkipped", func(t *testing.T) {
		rs := clusterSet(t, c, router.ReplicaSetConfig{MaxLagBytes: 1000})
		require.NoError(t, c.WaitReplication(ctx(30*time.Second)))
		waitStates(t, rs, router.ReplicaOK, router.ReplicaOK)

		paused := c.Replicas[0].URL("", "")
		execSQL(t, paused, "select pg_wal_replay_pause()")
		resumed := false
		t.Cleanup(func() {
			if !resumed {
				execSQL(t, paused, "select pg_wal_replay_resume()")
			}
		})
		execSQL(t, primary, "create table lagging as select g, repeat('x', 1000) as pad from generate_series(1, 1000) g")

		s := waitStates(t, rs, router.ReplicaLagging, router.ReplicaOK)
		require.Greater(t, s[0].LagBytes, int64(1000))
		require.Equal(t, map[int]int{1: 20}, countPicks(rs, 0, 20))

		execSQL(t, paused, "select pg_wal_replay_resume()")
		resumed = true
		require.NoError(t, c.WaitReplication(ctx(30*time.Second)))
		waitStates(t, rs, router.ReplicaOK, router.ReplicaOK)
		require.Equal(t, map[int]int{0: 10, 1: 10}, countPicks(rs, 0, 20))
	})
}

func TestReplicaSetPromotion(t *testing.T) {
	t.Parallel()
	c := integration.StartCluster(t, integration.Options{Replicas: 2})
	promoted := make(chan int, 4)
	rs := clusterSet(t, c, router.ReplicaSetConfig{OnPromotion: func(i int) { promoted <- i }})
	rs.CheckNow(t.Context())
	require.Equal(t, []string{router.ReplicaOK, router.ReplicaOK}, replicaStates(rs))

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	require.NoError(t, c.Promote(ctx, c.Replicas[1]))
	rs.CheckNow(t.Context())
	s := rs.Snapshot()
	require.Equal(t, router.RolePrimary, s[1].Role)
	require.Equal(t, router.RoleReplica, s[0].Role)
	select {
	case i := <-promoted:
		require.Equal(t, 1, i)
	default:
		t.Fatal("OnPromotion not called")
	}
	require.Equal(t, map[int]int{0: 20}, countPicks(rs, 0, 20))
	rs.CheckNow(t.Context())
	require.Empty(t, promoted, "OnPromotion is called once")
}
