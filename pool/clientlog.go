package pool

import (
	"context"
	"log/slog"
	"sync/atomic"
)

// clientLog is the handler of a client session's logger. It adds who the client is (its
// address, and once it has sent its startup packet its user and database) to each record
// as the record is logged, where slog.Logger.With would format them into a new handler for
// every connection up front: that cost about 150 bytes per client, held for the life of
// every idle connection, for records that are rarely written.
type clientLog struct {
	h     slog.Handler
	addr  string
	ident *atomic.Pointer[clientIdent] // shared by the handlers derived with WithAttrs
}

// clientIdent is the user and database a client asked for.
type clientIdent struct{ user, database string }

func newClientLog(h slog.Handler, addr string) *slog.Logger {
	return slog.New(&clientLog{h: h, addr: addr, ident: new(atomic.Pointer[clientIdent])})
}

// setClientIdent adds user and database to what log, a clientLog logger, tells of its
// client.
func setClientIdent(log *slog.Logger, user, database string) {
	if cl, ok := log.Handler().(*clientLog); ok {
		cl.ident.Store(&clientIdent{user: user, database: database})
	}
}

func (l *clientLog) Enabled(ctx context.Context, level slog.Level) bool {
	return l.h.Enabled(ctx, level)
}

func (l *clientLog) Handle(ctx context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(slog.String("client", l.addr))
	if id := l.ident.Load(); id != nil {
		r.AddAttrs(slog.String("user", id.user), slog.String("database", id.database))
	}
	return l.h.Handle(ctx, r)
}

func (l *clientLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &clientLog{h: l.h.WithAttrs(attrs), addr: l.addr, ident: l.ident}
}

func (l *clientLog) WithGroup(name string) slog.Handler {
	return &clientLog{h: l.h.WithGroup(name), addr: l.addr, ident: l.ident}
}
