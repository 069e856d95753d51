// Package notify gives LISTEN and NOTIFY to clients that hold no server of their own
// (transaction and statement pooling). For each database one listening server connection,
// not taken from any pool, holds the union of its clients' channels; each
// NotificationResponse it receives goes to every client listening on that channel.
//
// A client's LISTEN is answered once the listening connection listens too, so a NOTIFY
// sent after the client saw its LISTEN complete reaches it. Notifications reach a client
// through a queue of its own (Subscriber), which a goroutine of its own writes to the
// client: a client that does not read them holds up no one else, and once its queue is
// full it is disconnected. When the listening connection is lost, it is opened again and
// listens again on every channel; the clients of those channels are told, with a NOTICE,
// that notifications may have been lost meanwhile.
package notify

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Hub holds the listening connections, one per database.
type Hub struct {
	log *slog.Logger
	ctx context.Context // ends when cmpool shuts down

	mu  sync.Mutex
	dbs map[string]*listener // by database, as clients name it
}

// NewHub returns a hub whose listening connections are closed when ctx ends.
func NewHub(ctx context.Context, log *slog.Logger) *Hub {
	return &Hub{log: log, ctx: ctx, dbs: map[string]*listener{}}
}

// ConfigFunc returns the connection configuration of a database's listening connection,
// as it is now: after a promotion, the new primary's.
type ConfigFunc func() (*pgconn.Config, error)

// Listen makes s listen on channel of database db, whose listening connection is opened
// with config when it is not open yet. It returns once the listening connection listens,
// or with the error that kept it from it.
func (h *Hub) Listen(ctx context.Context, db string, config ConfigFunc, s *Subscriber, channel string) error {
	h.mu.Lock()
	l := h.dbs[db]
	if l == nil {
		l = newListener(h, db, config)
		h.dbs[db] = l
	}
	h.mu.Unlock()
	return l.listen(ctx, s, channel)
}

// Unlisten stops s listening on channel of db; with channel "" on every channel.
func (h *Hub) Unlisten(db string, s *Subscriber, channel string) {
	h.mu.Lock()
	l := h.dbs[db]
	h.mu.Unlock()
	if l != nil {
		l.unlisten(s, channel)
	}
}

// Sync waits until every notification the server had for database db's listening
// connection when Sync was called has been written to s: a round trip on that connection
// (the server sends what it holds for it before answering), then s's queue written out. A
// client's request waits for it, so that a NOTIFY committed before the request reaches the
// client before the request's reply, as on a direct connection.
func (h *Hub) Sync(ctx context.Context, db string, s *Subscriber) {
	h.mu.Lock()
	l := h.dbs[db]
	h.mu.Unlock()
	if l == nil {
		return
	}
	done := make(chan struct{})
	l.mu.Lock()
	l.syncs = append(l.syncs, done)
	l.wakeLocked()
	l.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return
	}
	s.waitDrained()
}

// Close closes every listening connection.
func (h *Hub) Close() {
	h.mu.Lock()
	dbs := h.dbs
	h.dbs = map[string]*listener{}
	h.mu.Unlock()
	for _, l := range dbs {
		l.close()
	}
}

// Channels returns how many channels database db's listening connection listens on, and
// how many clients listen in all (for the console and tests).
func (h *Hub) Channels(db string) (channels, subscribers int) {
	h.mu.Lock()
	l := h.dbs[db]
	h.mu.Unlock()
	if l == nil {
		return 0, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := map[*Subscriber]bool{}
	for _, subs := range l.subs {
		for s := range subs {
			seen[s] = true
		}
	}
	return len(l.subs), len(seen)
}

// request is a LISTEN or UNLISTEN for the listening connection to run.
type request struct {
	sql  string
	done chan error // nil when nobody waits
}

// listener is one database's listening connection and who listens on what through it.
type listener struct {
	hub    *Hub
	db     string
	config ConfigFunc

	mu   sync.Mutex
	subs map[string]map[*Subscriber]struct{} // channel -> its subscribers
	reqs []request                           // to run, in order
	// syncs are closed after the next round trip on the connection (Sync).
	syncs []chan struct{}
	wake  context.CancelFunc // interrupts the wait for notifications
	stop  context.CancelFunc
	done  chan struct{}
}

func newListener(h *Hub, db string, config ConfigFunc) *listener {
	ctx, stop := context.WithCancel(h.ctx)
	l := &listener{hub: h, db: db, config: config, subs: map[string]map[*Subscriber]struct{}{}, stop: stop, done: make(chan struct{})}
	go l.run(ctx)
	return l
}

// listen adds s to channel, and waits for the listening connection to listen on it when it
// is the channel's first subscriber.
func (l *listener) listen(ctx context.Context, s *Subscriber, channel string) error {
	l.mu.Lock()
	subs := l.subs[channel]
	first := subs == nil
	if first {
		subs = map[*Subscriber]struct{}{}
		l.subs[channel] = subs
	}
	if _, ok := subs[s]; !ok {
		subs[s] = struct{}{}
		s.addChannels(1)
	}
	var done chan error
	if first {
		done = make(chan error, 1)
		l.reqs = append(l.reqs, request{sql: "LISTEN " + quoteIdent(channel), done: done})
		l.wakeLocked()
	}
	l.mu.Unlock()
	if !first {
		return nil
	}
	select {
	case err := <-done:
		if err != nil {
			l.unlisten(s, channel)
		}
		return err
	case <-ctx.Done():
		l.unlisten(s, channel)
		return ctx.Err()
	}
}

// unlisten removes s from channel ("" : from every channel); a channel left without
// subscribers is unlistened on the server.
func (l *listener) unlisten(s *Subscriber, channel string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ch, subs := range l.subs {
		if channel != "" && ch != channel {
			continue
		}
		if _, ok := subs[s]; !ok {
			continue
		}
		delete(subs, s)
		s.addChannels(-1)
		if len(subs) == 0 {
			delete(l.subs, ch)
			l.reqs = append(l.reqs, request{sql: "UNLISTEN " + quoteIdent(ch)})
			l.wakeLocked()
		}
	}
}

// wakeLocked interrupts the wait for notifications so that requests run. The caller holds
// l.mu.
func (l *listener) wakeLocked() {
	if l.wake != nil {
		l.wake()
	}
}

func (l *listener) close() {
	l.stop()
	<-l.done
}

// run keeps the listening connection open, runs requests, and waits for notifications,
// until ctx ends.
func (l *listener) run(ctx context.Context) {
	defer close(l.done)
	var conn *pgconn.PgConn
	defer func() {
		if conn != nil {
			closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = conn.Close(closeCtx)
			cancel()
		}
		l.failRequests(context.Canceled)
	}()
	lost := false // the connection was lost: tell the subscribers when it is back
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if conn == nil || conn.IsClosed() {
			var err error
			conn, err = l.connect(ctx, lost)
			if err != nil {
				l.hub.log.Warn("LISTEN connection failed", "database", l.db, "error", err)
				l.failRequests(err)
				select {
				case <-ctx.Done():
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			backoff = 100 * time.Millisecond
			lost = false
		}
		if err := l.runRequests(ctx, conn); err != nil {
			lost = true
			continue
		}
		waitCtx, cancel := context.WithCancel(ctx)
		l.mu.Lock()
		l.wake = cancel
		pending := len(l.reqs) > 0 || len(l.syncs) > 0
		l.mu.Unlock()
		if pending {
			cancel()
		}
		err := conn.WaitForNotification(waitCtx)
		interrupted := waitCtx.Err() != nil
		cancel()
		l.mu.Lock()
		l.wake = nil
		l.mu.Unlock()
		if err != nil && (!interrupted || conn.IsClosed()) {
			l.hub.log.Warn("LISTEN connection lost; opening it again", "database", l.db, "error", err)
			lost = true
			_ = conn.Close(context.Background())
		}
	}
}

// connect opens the listening connection and listens on every channel subscribed to. After
// a loss (lost), the subscribers are told, before any notification that follows.
func (l *listener) connect(ctx context.Context, lost bool) (*pgconn.PgConn, error) {
	cfg, err := l.config()
	if err != nil {
		return nil, err
	}
	cfg = cfg.Copy()
	cfg.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) { l.deliver(n) }
	// Interrupting a wait must leave the connection usable: a deadline, not a cancel request
	// (which could land on the next LISTEN).
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = "cmpool listener"
	connCtx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout+10*time.Second)
	defer cancel()
	conn, err := pgconn.ConnectConfig(connCtx, cfg)
	if err != nil {
		return nil, err
	}
	if lost {
		l.noticeLost()
	}
	l.mu.Lock()
	var sql string
	for ch := range l.subs {
		sql += "LISTEN " + quoteIdent(ch) + ";"
	}
	// Requests made before now are covered by this.
	reqs := l.reqs
	l.reqs = nil
	l.mu.Unlock()
	if sql != "" {
		if _, err := conn.Exec(connCtx, sql).ReadAll(); err != nil {
			_ = conn.Close(context.Background())
			l.mu.Lock()
			l.reqs = append(reqs, l.reqs...)
			l.mu.Unlock()
			return nil, err
		}
	}
	for _, r := range reqs {
		if r.done != nil {
			r.done <- nil
		}
	}
	return conn, nil
}

// runRequests runs the LISTEN and UNLISTEN requests queued, in order, and a round trip
// for the syncs waiting. An error means the connection is lost; the requests not run stay
// queued.
func (l *listener) runRequests(ctx context.Context, conn *pgconn.PgConn) error {
	l.mu.Lock()
	syncs := l.syncs
	l.syncs = nil
	l.mu.Unlock()
	if len(syncs) > 0 {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := conn.Exec(rctx, "").ReadAll()
		cancel()
		// Released even on failure: a lost connection has nothing more to deliver.
		for _, done := range syncs {
			close(done)
		}
		if err != nil {
			_ = conn.Close(context.Background())
			return err
		}
	}
	for {
		l.mu.Lock()
		if len(l.reqs) == 0 {
			l.mu.Unlock()
			return nil
		}
		r := l.reqs[0]
		l.mu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := conn.Exec(rctx, r.sql).ReadAll()
		cancel()
		var pgErr *pgconn.PgError
		if err != nil && !asPgError(err, &pgErr) {
			_ = conn.Close(context.Background())
			return err
		}
		l.mu.Lock()
		l.reqs = l.reqs[1:]
		l.mu.Unlock()
		if r.done != nil {
			r.done <- err // a server error (say, a name too long) goes to the client
		}
	}
}

// failRequests answers the requests waiting with err; they are not run.
func (l *listener) failRequests(err error) {
	l.mu.Lock()
	reqs := l.reqs
	l.reqs = nil
	l.mu.Unlock()
	for _, r := range reqs {
		if r.done != nil {
			r.done <- err
		}
	}
}

// deliver hands a notification to every subscriber of its channel.
func (l *listener) deliver(n *pgconn.Notification) {
	msg, err := (&pgproto3.NotificationResponse{PID: n.PID, Channel: n.Channel, Payload: n.Payload}).Encode(nil)
	if err != nil {
		return
	}
	l.mu.Lock()
	subs := make([]*Subscriber, 0, len(l.subs[n.Channel]))
	for s := range l.subs[n.Channel] {
		subs = append(subs, s)
	}
	l.mu.Unlock()
	for _, s := range subs {
		s.enqueue(msg)
	}
}

// noticeLost tells every subscriber that notifications may have been lost while the
// listening connection was down.
func (l *listener) noticeLost() {
	msg, _ := (&pgproto3.NoticeResponse{Severity: "WARNING", SeverityUnlocalized: "WARNING", Code: "01000",
		Message: "cmpool's LISTEN connection to the server was lost and opened again: notifications sent meanwhile may have been lost"}).Encode(nil)
	l.mu.Lock()
	seen := map[*Subscriber]bool{}
	for _, subs := range l.subs {
		for s := range subs {
			seen[s] = true
		}
	}
	l.mu.Unlock()
	for s := range seen {
		s.enqueue(msg)
	}
}
