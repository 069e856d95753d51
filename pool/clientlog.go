package pool

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/cmlite/cmpool/pool/internal/lease"
)

// clientLog is the handler of a client session's logger. It adds who the client is (its
// address, and once it has sent its startup packet its user and database) to each record
// as the record is logged, where slog.Logger.With would format them into a new handler for
// every connection up front: that cost about 150 bytes per client, held for the life of
// every idle connection, for records that are rarely written.
type clientLog struct {
	h    slog.Handler
	addr string
	root *clientLog // the handler newClientLog made (itself there), which the derived ones share
	// who, on root, is the client once it has sent its startup packet: its User and
	// Database, which do not change from then on.
	who atomic.Pointer[lease.Client]
}

func newClientLog(h slog.Handler, addr string) *slog.Logger {
	l := &clientLog{h: h, addr: addr}
	l.root = l
	return slog.New(l)
}

// setClientIdent adds the user and database of c to what log, a clientLog logger, tells of
// its client.
func setClientIdent(log *slog.Logger, c *lease.Client) {
	if cl, ok := log.Handler().(*clientLog); ok {
		cl.root.who.Store(c)
	}
}

func (l *clientLog) Enabled(ctx context.Context, level slog.Level) bool {
	return l.h.Enabled(ctx, level)
}

func (l *clientLog) Handle(ctx context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(slog.String("client", l.addr))
	if c := l.root.who.Load(); c != nil {
		r.AddAttrs(slog.String("user", c.User), slog.String("database", c.Database))
	}
	return l.h.Handle(ctx, r)
}

func (l *clientLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &clientLog{h: l.h.WithAttrs(attrs), addr: l.addr, root: l.root}
}

func (l *clientLog) WithGroup(name string) slog.Handler {
	return &clientLog{h: l.h.WithGroup(name), addr: l.addr, root: l.root}
}
