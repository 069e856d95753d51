package pool_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// TestCancelKeysExhausted: with a peer id, cancel keys come from a bounded space (here
// shrunk to 4 process ids). Sockets that never log in hold none; once logged-in clients
// hold them all, the next login is refused with 53300, while those clients and the admin
// console go on working, and a key comes back when its client leaves.
func TestCancelKeysExhausted(t *testing.T) {
	srv, err := pool.New(pool.Config{AuthType: "trust", Primary: "postgres://bench@" + fakeBackend(t) + "/bench?sslmode=disable",
		DefaultPoolSize: 2, PeerID: 3, AdminUsers: []string{"bench"}, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	pool.SetCancelPIDBits(srv, 2)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, pool.ErrServerClosed) {
			t.Error(err)
		}
	})
	addr := ln.Addr().String()
	url := "postgres://bench@" + addr + "/bench?sslmode=disable"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Twice as many sockets as keys, none of which logs in.
	for range 8 {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
	}
	connect := func() (*pgconn.PgConn, error) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return pgconn.Connect(cctx, url)
	}
	var clients []*pgconn.PgConn
	pids := make(map[uint32]bool)
	for range 4 {
		conn, err := connect()
		require.NoError(t, err, "a login while idle sockets are open")
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
		clients = append(clients, conn)
		require.Equal(t, uint32(3), conn.PID()>>16, "the key carries the peer id")
		pids[conn.PID()] = true
	}
	require.Len(t, pids, 4, "every client has its own key")

	_, err = connect()
	var pe *pgconn.PgError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "53300", pe.Code)
	require.Contains(t, pe.Message, "cancel key")

	for _, conn := range clients {
		_, err := conn.Exec(ctx, "select 1").ReadAll()
		require.NoError(t, err)
	}
	console, err := pgconn.Connect(ctx, "postgres://bench@"+addr+"/"+pool.AdminDatabase+"?sslmode=disable")
	require.NoError(t, err, "the console while keys are exhausted")
	defer console.Close(context.Background())
	res, err := console.Exec(ctx, "SHOW CLIENTS").ReadAll()
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(res[0].Rows), 4+8, "logged-in clients and sockets still logging in")

	require.NoError(t, clients[0].Close(ctx))
	require.Eventually(t, func() bool {
		conn, err := connect()
		if err != nil {
			return false
		}
		_ = conn.Close(ctx)
		return true
	}, 5*time.Second, 20*time.Millisecond, "a key is free again once its client left")
}
