package pool_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/cmlite/cmpool/pool"
)

// Embedding cmpool and talking to it in-process, with pgx dialing through the server
// instead of TCP. (The backend here is a stand-in; point Primary at a real server.) With
// no auth settings, a client must prove the password cmpool holds for its user: here the
// primary URL's, for app, checked with SCRAM-SHA-256.
func ExampleServer_DialContext() {
	backend, stop := exampleBackend()
	defer stop()

	srv, err := pool.New(pool.Config{
		Primary: "postgres://app:app-secret@" + backend + "/app?sslmode=disable",
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown(context.Background())

	cfg, err := pgx.ParseConfig("postgres://app:app-secret@127.0.0.1/app?sslmode=disable") // the address is not dialed
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg.DialFunc = srv.DialContext
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close(context.Background())

	var one int
	if err := conn.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(one)
	// Output: 1
}

// Serving cmpool on a listener of your own, next to the rest of a Go service.
func ExampleServer_Serve() {
	backend, stop := exampleBackend()
	defer stop()

	srv, err := pool.New(pool.Config{
		Primary:         "postgres://app:app-secret@" + backend + "/app?sslmode=disable",
		PoolMode:        pool.ModeTransaction,
		DefaultPoolSize: 10,
		Logger:          slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())

	conn, err := pgx.Connect(context.Background(), "postgres://app:app-secret@"+ln.Addr().String()+"/app?sslmode=disable&default_query_exec_mode=simple_protocol")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close(context.Background())
	var one int
	_ = conn.QueryRow(context.Background(), "SELECT 1").Scan(&one)
	fmt.Println(one, srv.Stat().Clients)
	// Output: 1 1
}

// Counting queries and timing transactions with an Observer: the same events feed the
// binary's Prometheus histograms.
func ExampleConfig_observer() {
	backend, stop := exampleBackend()
	defer stop()

	var mu sync.Mutex
	counts := map[pool.EventKind]int{}
	srv, err := pool.New(pool.Config{
		Primary: "postgres://app:app-secret@" + backend + "/app?sslmode=disable",
		Logger:  slog.New(slog.DiscardHandler),
		Observer: pool.ObserverFunc(func(e pool.Event) {
			mu.Lock()
			counts[e.Kind]++
			mu.Unlock()
		}),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown(context.Background())
	cfg, _ := pgx.ParseConfig("postgres://app:app-secret@127.0.0.1/app?sslmode=disable&default_query_exec_mode=simple_protocol")
	cfg.DialFunc = srv.DialContext
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	for range 3 {
		_, _ = conn.Exec(context.Background(), "SELECT 1")
	}
	conn.Close(context.Background())

	mu.Lock()
	defer mu.Unlock()
	fmt.Println(counts[pool.EventQuery], "queries,", counts[pool.EventTransaction], "transactions")
	// Output: 3 queries, 3 transactions
}

// A Router that keeps a tenant's reads on the primary and sends reporting queries to
// replicas, on top of cmpool's own classification.
func ExampleConfig_router() {
	router := pool.RouterFunc(func(r pool.RouteRequest) pool.Route {
		switch {
		case r.User == "billing":
			return pool.RoutePrimary // this tenant must read its own writes at once
		case !r.Write && strings.HasPrefix(r.Query, "/* report */"):
			return pool.RouteReplica
		}
		return pool.RouteDefault
	})
	cfg := pool.Config{
		Primary:  "postgres://app@db-primary/app",
		Replicas: []string{"postgres://app@db-replica/app"},
		Router:   router,
	}
	fmt.Println(router.Route(pool.RouteRequest{User: "billing", Query: "SELECT 1"}))
	fmt.Println(router.Route(pool.RouteRequest{User: "web", Query: "/* report */ SELECT count(*) FROM orders"}))
	_, err := pool.New(cfg)
	fmt.Println(err)
	// Output:
	// primary
	// replica
	// <nil>
}

// exampleBackend starts the benchmarks' stand-in server outside a test.
func exampleBackend() (addr string, stop func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go serveFake(conn)
		}
	}()
	return ln.Addr().String(), func() { _ = ln.Close() }
}
