package lease

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/pool/internal/backend"
	"github.com/cmlite/cmpool/pool/internal/session"
)

// Session state that outlives a transaction, in transaction and statement modes.
//
// Parameters PostgreSQL reports (TimeZone, application_name, …) follow the client through
// ParameterStatus. For the others (search_path on PostgreSQL 15, work_mem, role, …) a
// non-LOCAL SET or RESET is noticed by statement, and when the transaction that ran it
// ends, cmpool reads the values back with current_setting before the server goes back to
// the pool; they are then applied, like startup parameters, on any server the client uses.
//
// Session advisory locks, WITH HOLD cursors and temporary objects cannot follow a client
// from server to server. With pin_session_state (the default) the client keeps its server
// while it holds any (pin.go). Without it, the rest of this comment applies.
//
// For session advisory locks and WITH HOLD cursors, cmpool warns the client, and resets
// the server with DISCARD ALL before another client can get it, so nothing leaks.
//
// Temporary objects cannot follow it either, and a warning is not enough for them: once the
// server is reset, a later statement naming a temporary table reaches the permanent table
// of the same name (DROP TABLE t drops it). So a statement that creates a temporary object
// that could outlive its transaction (router.TempObject: anything but a table created ON
// COMMIT DROP) is refused with 0A000 before it reaches a server, in the simple and the
// extended protocol. What the grammar cannot show (a DO block or a function that creates
// one) is caught when the server is released: a transaction whose text mentions "temp", or
// that ran code cmpool cannot see, has the server checked for temporary objects, and reset
// if it holds any (tempobjects.go).
//
// RESET returning to the client's startup values is in resetrestore.go; settings changed
// by set_config, functions, DO or CALL are read back as untracked.go says. The client's
// settings themselves, and the SQL that reads them back or applies them, are
// pool/internal/session's.

// traitsOf inspects the first statement of a query (session.TraitsOf).
func traitsOf(q string) session.Traits { return session.TraitsOf(q) }

// applyTraits records a statement sent on l. The caller holds c.mu. It reports whether
// the client should be warned now (the first session-bound statement of the lease).
func (l *Lease) applyTraits(t session.Traits) (warn bool) {
	c := l.c
	if c.Mode == Session {
		return false
	}
	for _, n := range t.Track {
		if n == "*" {
			for k := range c.Settings.Names() {
				if !session.IsReported(strings.ToLower(k)) {
					l.track = appendUnique(l.track, k)
				}
			}
			l.track = appendUnique(l.track, "search_path")
			continue
		}
		l.track = appendUnique(l.track, session.CanonicalName(n))
	}
	// Code cmpool cannot see (a user-defined function, DO, EXECUTE) may create temporary
	// objects as well as change settings: the server is checked for them too (with
	// pinning, by the check that pins the client).
	if c.Pin.On {
		l.notePinTraits(&t)
	} else if t.MentionsTemp || t.Untracked || len(t.SettingFuncs) > 0 {
		l.tempCheck = true
	}
	l.untracked = l.untracked || t.Untracked
	l.opaque = l.opaque || t.Opaque
	for _, n := range t.SettingNames {
		l.settingNames = appendUnique(l.settingNames, n)
	}
	for _, f := range t.SettingFuncs {
		l.settingFuncs = appendUnique(l.settingFuncs, f)
	}
	if t.SessionBound && !(c.Pin.On && t.Pins) && !l.resetNeeded {
		l.resetNeeded = true
		return true
	}
	return false
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// sessionBoundWarning is the notice that tells a client in mode that what it just did
// will not outlive the transaction. It is written between whole messages, under
// clientConn.wmu (writeLocal).
func (m Mode) sessionBoundWarning() []byte {
	n := pgproto3.NoticeResponse{
		Severity: "WARNING", SeverityUnlocalized: "WARNING", Code: "01000",
		Message: fmt.Sprintf("session advisory locks and WITH HOLD cursors do not outlive the transaction in %s pooling mode", m),
		Hint:    "cmpool resets the server connection when this transaction ends; use pool_mode = session for session state",
	}
	b, _ := n.Encode(nil)
	return b
}

// syncTracked reads back the parameters the lease's transactions changed, makes them the
// client's, and only then ends the lease. The client goroutine waits meanwhile (the lease
// is marked syncing), so nothing else is sent on the server. It reports whether the server
// is still usable.
func (l *Lease) syncTracked() bool {
	c := l.c
	names := l.track
	ctx, cancel := context.WithTimeout(context.Background(), c.Host.Config().ServerConnectTimeout)
	res, err := l.sc.Exec(ctx, session.TrackedReadback(names))
	cancel()
	ok := err == nil && res.Err == nil && len(res.Row) == len(names) && l.sc.TxStatus == 'I'

	c.Mu.Lock()
	if !ok {
		c.Log.Warn("could not read back session state", "error", err, "server_error", res.Err)
	} else if len(names) > 0 {
		c.Settings.ApplyTracked(l.sc.Set, names, res.Row)
		l.sc.ConfiguredFor, l.sc.ConfiguredVersion = c.ID, c.Settings.Version()
	}
	l.track = nil
	l.leaveClient()
	c.Mu.Unlock()
	return ok
}

// resetServer runs DISCARD ALL on a server whose transaction used session-bound features,
// and forgets what cmpool knew of its state. It reports whether the server is usable.
func resetServer(sc *backend.Conn, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res, err := sc.Exec(ctx, "DISCARD ALL")
	if err != nil || res.Err != nil || sc.TxStatus != 'I' {
		return false
	}
	sc.Set = make(map[string]string)
	sc.UnnamedSettings = false
	sc.ConfiguredFor = 0
	sc.Prepared.Clear()
	return true
}
