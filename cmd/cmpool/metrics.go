package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cmlite/cmpool/pool"
)

// The HTTP endpoint on --metrics-listen:
//   - /metrics: Prometheus metrics (docs/operations.md lists them);
//   - /healthz: 200 while the process is up;
//   - /readyz: 200 while the primary is reachable and cmpool is not shutting down.

// durationBuckets spans 100 µs to 10 s, so that P95 is meaningful for fast point queries
// and for slow reports alike.
var durationBuckets = prometheus.ExponentialBucketsRange(0.0001, 10, 21)

// metrics holds the histograms fed by pool events and the collector reading Stat.
type metrics struct {
	registry    *prometheus.Registry
	queryDur    *prometheus.HistogramVec
	xactDur     *prometheus.HistogramVec
	waitDur     *prometheus.HistogramVec
	errorsTotal *prometheus.CounterVec
	routed      *prometheus.CounterVec
	srv         atomic.Pointer[pool.Server]
	// byBackend caches, by database and backend (a backendKey), the backendMetrics every
	// request observes, so that a request looks its labels up once, in a sync.Map, not
	// once per metric in the vectors.
	byBackend sync.Map
}

// backendKey is a database and a backend, the labels of byBackend's entries.
type backendKey struct{ database, backend string }

// backendMetrics are the children of the vectors for one backendKey.
type backendMetrics struct {
	query, xact prometheus.Observer
	routed      prometheus.Counter
}

// backend returns the metrics of database's backend, made at first use.
func (m *metrics) backend(database, backend string) *backendMetrics {
	k := backendKey{database, backend}
	if bm, ok := m.byBackend.Load(k); ok {
		return bm.(*backendMetrics)
	}
	bm := &backendMetrics{
		query:  m.queryDur.WithLabelValues(database, backend),
		xact:   m.xactDur.WithLabelValues(database, backend),
		routed: m.routed.WithLabelValues(database, backend),
	}
	v, _ := m.byBackend.LoadOrStore(k, bm)
	return v.(*backendMetrics)
}

// newMetrics makes the registry. Its Observe method is the pool's Observer; the Stat
// collector starts reporting once setServer is called.
func newMetrics() *metrics {
	m := &metrics{registry: prometheus.NewRegistry()}
	m.queryDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "cmpool", Name: "query_duration_seconds",
		Help:    "Time from a request's first message to its ReadyForQuery, by database and backend.",
		Buckets: durationBuckets,
	}, []string{"database", "backend"})
	m.xactDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "cmpool", Name: "transaction_duration_seconds",
		Help:    "Time from a transaction's first request to its end, by database and backend.",
		Buckets: durationBuckets,
	}, []string{"database", "backend"})
	m.waitDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "cmpool", Name: "client_wait_seconds",
		Help:    "Time clients waited for a server connection, by database.",
		Buckets: durationBuckets,
	}, []string{"database"})
	m.errorsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "cmpool", Name: "errors_total",
		Help: "ErrorResponses sent to clients, by database and SQLSTATE class.",
	}, []string{"database", "class"})
	m.routed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "cmpool", Name: "routed_transactions_total",
		Help: "Transactions by the backend routing sent them to (with replicas configured).",
	}, []string{"database", "backend"})
	m.registry.MustRegister(m.queryDur, m.xactDur, m.waitDur, m.errorsTotal, m.routed,
		statCollector{m}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Observe is the pool.Observer.
func (m *metrics) Observe(e pool.Event) {
	switch e.Kind {
	case pool.EventQuery:
		m.backend(e.Database, e.Backend).query.Observe(e.Duration.Seconds())
	case pool.EventTransaction:
		m.backend(e.Database, e.Backend).xact.Observe(e.Duration.Seconds())
	case pool.EventWait:
		m.waitDur.WithLabelValues(e.Database).Observe(e.Duration.Seconds())
	case pool.EventError:
		class := e.Code
		if len(class) > 2 {
			class = class[:2]
		}
		m.errorsTotal.WithLabelValues(e.Database, class).Inc()
	case pool.EventRoute:
		m.backend(e.Database, e.Backend).routed.Inc()
	}
}

func (m *metrics) setServer(s *pool.Server) { m.srv.Store(s) }

// statCollector reports pool.Stat at each scrape.
type statCollector struct{ m *metrics }

var (
	poolLabels   = []string{"database", "user", "backend"}
	clientLabels = []string{"database", "user"}

	descXacts     = prometheus.NewDesc("cmpool_transactions_total", "Transactions ended.", poolLabels, nil)
	descQueries   = prometheus.NewDesc("cmpool_queries_total", "Requests (simple queries, or extended-protocol batches up to Sync) answered.", poolLabels, nil)
	descXactTime  = prometheus.NewDesc("cmpool_transaction_seconds_total", "Total time spent in transactions.", poolLabels, nil)
	descQueryTime = prometheus.NewDesc("cmpool_query_seconds_total", "Total time spent answering requests.", poolLabels, nil)
	descRecv      = prometheus.NewDesc("cmpool_received_bytes_total", "Bytes received from clients.", poolLabels, nil)
	descSent      = prometheus.NewDesc("cmpool_sent_bytes_total", "Bytes sent to clients.", poolLabels, nil)
	descAcquires  = prometheus.NewDesc("cmpool_server_assignments_total", "Server connections lent to clients.", poolLabels, nil)
	descWaits     = prometheus.NewDesc("cmpool_client_waits_total", "Times a client had to wait for a server connection.", poolLabels, nil)
	descWaitTime  = prometheus.NewDesc("cmpool_client_wait_seconds_total", "Total time clients waited for a server connection.", poolLabels, nil)
	descSvActive  = prometheus.NewDesc("cmpool_servers_active", "Server connections lent to a client.", poolLabels, nil)
	descSvIdle    = prometheus.NewDesc("cmpool_servers_idle", "Server connections idle in the pool.", poolLabels, nil)
	descSvMax     = prometheus.NewDesc("cmpool_servers_max", "The pool's size.", poolLabels, nil)
	descSvUsed    = prometheus.NewDesc("cmpool_servers_used_ratio", "Share of the pool's size lent to clients (1 = pool exhausted).", poolLabels, nil)
	descCancels   = prometheus.NewDesc("cmpool_cancel_requests", "Cancel requests in flight to this pool's servers, by state: waiting to be sent, or active (sent, not yet answered).", append(poolLabels, "state"), nil)
	descSvCancel  = prometheus.NewDesc("cmpool_servers_being_canceled", "Server connections with a cancel request in flight, not lent until it is answered.", poolLabels, nil)
	descClActive  = prometheus.NewDesc("cmpool_clients_active", "Logged-in clients not waiting.", clientLabels, nil)
	descClWaiting = prometheus.NewDesc("cmpool_clients_waiting", "Clients waiting for a server connection.", clientLabels, nil)
	descClMaxWait = prometheus.NewDesc("cmpool_clients_maxwait_seconds", "How long the oldest waiting client has waited.", clientLabels, nil)
	descClients   = prometheus.NewDesc("cmpool_clients", "Client connections open, including those logging in.", nil, nil)
	descParked    = prometheus.NewDesc("cmpool_clients_parked", "Idle client connections with no goroutine: parked, or waiting on an event loop.", nil, nil)
	descLoopEv    = prometheus.NewDesc("cmpool_event_loop_events_total", "Socket events the event loops handled (event_loops).", nil, nil)
	descLoopDet   = prometheus.NewDesc("cmpool_event_loop_detached_total", "Event loop workers that left their loop to a new goroutine before blocking, by cause: announced (a wait for a server that a claim cannot serve, a full or empty socket) or watchdog.", []string{"cause"}, nil)
	descLoopWaits = prometheus.NewDesc("cmpool_event_loop_server_waits_total", "Waits for a server that sessions on the event loops took as claims, without a goroutine, by how they ended: handed (a server given back was handed over) or other (query_wait_timeout, KILL_CLIENT, a server closed, the pool closed).", []string{"end"}, nil)
	descReplLag   = prometheus.NewDesc("cmpool_replica_lag_bytes", "A replica's replay lag behind the primary, in bytes of WAL.", []string{"host"}, nil)
	descReplLagS  = prometheus.NewDesc("cmpool_replica_lag_seconds", "A replica's replay lag behind the primary, in time.", []string{"host"}, nil)
	descReplUp    = prometheus.NewDesc("cmpool_replica_usable", "1 when a replica takes reads (healthy, in recovery, not lagging).", []string{"host", "state"}, nil)
	descReplRoute = prometheus.NewDesc("cmpool_replica_routed_total", "Transactions routed to a replica.", []string{"host"}, nil)
	descFallback  = prometheus.NewDesc("cmpool_reads_on_primary_total", "Reads sent to the primary for want of a usable, caught-up replica.", nil, nil)
	descReplays   = prometheus.NewDesc("cmpool_read_only_replays_total", "Requests a replica refused with 25006 that ran again on the primary.", nil, nil)
	descPromos    = prometheus.NewDesc("cmpool_promotions_total", "Replica promotions cmpool followed.", nil, nil)
	descPaused    = prometheus.NewDesc("cmpool_paused", "1 while PAUSE holds new transactions.", []string{"database"}, nil)
	descPrepared  = prometheus.NewDesc("cmpool_prepared_statements", "Distinct statements clients have prepared.", nil, nil)
	descReadRuns  = prometheus.NewDesc("cmpool_read_replays_total", "Reads whose replica failed before they answered anything, run again elsewhere.", nil, nil)
	descReadWaits = prometheus.NewDesc("cmpool_read_waits_total", "Reads that waited (up to rw_wait) for a replica to replay the writes they must see.", nil, nil)
	descNotWaited = prometheus.NewDesc("cmpool_reads_not_waited_total", "Reads sent to the primary at once because the writes they must see were not flushed on the primary yet (also in cmpool_reads_on_primary_total).", nil, nil)
	descWALReads  = prometheus.NewDesc("cmpool_write_position_reads_total", "Reads of the primary's WAL position for read-your-writes: one per read that follows a write, shared by the reads waiting at the same time.", nil, nil)
	descClPinned  = prometheus.NewDesc("cmpool_pinned_clients", "Clients pinned to a server by session state (advisory locks, temporary tables, WITH HOLD cursors).", clientLabels, nil)
	descPinRefuse = prometheus.NewDesc("cmpool_pin_refused_total", "Statements refused because the pool had max_pinned pinned clients.", clientLabels, nil)
)

func (statCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descXacts, descQueries, descXactTime, descQueryTime, descRecv, descSent,
		descAcquires, descWaits, descWaitTime, descSvActive, descSvIdle, descSvMax, descSvUsed, descCancels, descSvCancel, descClActive,
		descClWaiting, descClMaxWait, descClients, descParked, descReplLag, descReplLagS, descReplUp, descReplRoute,
		descFallback, descReplays, descPromos, descPaused, descPrepared, descReadRuns, descReadWaits, descNotWaited, descWALReads,
		descClPinned, descPinRefuse,
		descLoopEv, descLoopDet, descLoopWaits} {
		ch <- d
	}
}

func (c statCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.srv.Load()
	if s == nil {
		return
	}
	st := s.Stat()
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	seen := make(map[[3]string]bool)
	for _, p := range st.Pools {
		l := [3]string{p.Database, p.User, p.Backend}
		if seen[l] {
			continue // a retired pool whose replica index now names another host
		}
		seen[l] = true
		counter(descXacts, float64(p.Transactions), l[:]...)
		counter(descQueries, float64(p.Queries), l[:]...)
		counter(descXactTime, p.TransactionTime.Seconds(), l[:]...)
		counter(descQueryTime, p.QueryTime.Seconds(), l[:]...)
		counter(descRecv, float64(p.BytesReceived), l[:]...)
		counter(descSent, float64(p.BytesSent), l[:]...)
		counter(descAcquires, float64(p.Acquires), l[:]...)
		counter(descWaits, float64(p.Waits), l[:]...)
		counter(descWaitTime, p.WaitTime.Seconds(), l[:]...)
		gauge(descSvActive, float64(p.ActiveServers), l[:]...)
		gauge(descSvIdle, float64(p.IdleServers), l[:]...)
		gauge(descSvMax, float64(p.MaxServers), l[:]...)
		used := 0.0
		if p.MaxServers > 0 {
			used = float64(p.ActiveServers) / float64(p.MaxServers)
		}
		gauge(descSvUsed, used, l[:]...)
		gauge(descCancels, float64(p.CancelsWaiting), p.Database, p.User, p.Backend, "waiting")
		gauge(descCancels, float64(p.CancelsActive), p.Database, p.User, p.Backend, "active")
		gauge(descSvCancel, float64(p.ServersBeingCanceled), l[:]...)
	}
	for _, g := range st.ClientGroups {
		gauge(descClActive, float64(g.Active), g.Database, g.User)
		gauge(descClWaiting, float64(g.Waiting), g.Database, g.User)
		gauge(descClMaxWait, g.MaxWait.Seconds(), g.Database, g.User)
		gauge(descClPinned, float64(g.Pinned), g.Database, g.User)
		counter(descPinRefuse, float64(g.PinRefused), g.Database, g.User)
	}
	gauge(descClients, float64(st.Clients))
	gauge(descParked, float64(st.ParkedClients))
	if st.EventLoops.Loops > 0 {
		counter(descLoopEv, float64(st.EventLoops.Events))
		counter(descLoopDet, float64(st.EventLoops.Detached-st.EventLoops.Watchdog), "announced")
		counter(descLoopDet, float64(st.EventLoops.Watchdog), "watchdog")
		counter(descLoopWaits, float64(st.EventLoops.ServerWaitsHanded), "handed")
		counter(descLoopWaits, float64(st.EventLoops.ServerWaitsOther), "other")
	}
	for _, r := range st.Replicas {
		gauge(descReplLag, float64(r.LagBytes), r.Host)
		gauge(descReplLagS, r.LagTime.Seconds(), r.Host)
		usable := 0.0
		if r.State == "ok" && r.Role == "replica" {
			usable = 1
		}
		gauge(descReplUp, usable, r.Host, r.State)
		counter(descReplRoute, float64(r.Routed), r.Host)
	}
	counter(descFallback, float64(st.ReadsOnPrimary))
	counter(descReplays, float64(st.ReadOnlyReplays))
	counter(descPromos, float64(st.Promotions))
	counter(descReadRuns, float64(st.ReadReplays))
	counter(descReadWaits, float64(st.ReadWaits))
	counter(descNotWaited, float64(st.ReadsNotWaited))
	counter(descWALReads, float64(st.WritePositionReads))
	for _, db := range st.Paused {
		gauge(descPaused, 1, db)
	}
	gauge(descPrepared, float64(st.PreparedStatements))
}

// metricsServer is the HTTP endpoint on --metrics-listen.
type metricsServer struct {
	srv      *http.Server
	addr     net.Addr
	draining atomic.Bool
	m        *metrics
}

// startMetrics listens on addr and serves the endpoint in the background.
func startMetrics(addr string, m *metrics, logger *slog.Logger) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	ms := &metricsServer{addr: ln.Addr(), m: m}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", ms.healthz)
	mux.HandleFunc("GET /readyz", ms.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	ms.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := ms.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server stopped", "error", err)
		}
	}()
	logger.Info("metrics listening", "addr", ms.addr.String())
	return ms, nil
}

// healthz answers 200 while the process is up, draining or not: a liveness probe must
// not kill a process that is draining.
func (ms *metricsServer) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok")
}

// readyz answers 200 when cmpool can serve: not shutting down, and the primary
// reachable.
func (ms *metricsServer) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if ms.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "shutting down")
		return
	}
	if s := ms.m.srv.Load(); s != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if err := s.Ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "not ready: "+err.Error())
			return
		}
	}
	io.WriteString(w, "ok")
}

// setDraining makes /readyz fail, so that load balancers stop sending
// clients. Nil-safe.
func (ms *metricsServer) setDraining() {
	if ms != nil {
		ms.draining.Store(true)
	}
}

// close stops the endpoint at once. Nil-safe.
func (ms *metricsServer) close() {
	if ms != nil {
		ms.srv.Close()
	}
}
