package lease

import (
	"context"

	"github.com/cmlite/cmpool/pool/internal/session"
	"github.com/cmlite/cmpool/router"
)

// Settings changed without SET or RESET.
//
// set_config, a function or procedure body, or a DO block may change any setting, and
// nothing in the statement says which. Such statements are found by the router's grammar
// (router.Verdict): only statements with a parenthesis, more than one statement or a
// first word that runs code are asked about (router.MayChangeSettings), so an ordinary
// query costs nothing more. When a lease ran one, syncUntracked reads the settings back
// before the server goes back to the pool: the named ones when every change is named,
// else every setting the server holds at session level. What changed becomes the
// client's own state, as on a direct connection, and the server's record is corrected,
// so that the next client gets its own values back.
//
// User-defined functions are judged by their source, in the same query: one whose body,
// or the body of a function it calls (three calls deep), may run SET, RESET, DISCARD,
// LOAD, EXECUTE or set_config, or that is written in a language other than SQL and
// PL/pgSQL and is not part of an extension (PostGIS, pgcrypto, … are trusted), may
// change settings; the names its source gives say which, unless it is opaque (dynamic
// SQL, a computed name, RESET ALL, another language). The answer is cached per database
// and function for funcSettingsTTL, and until DDL passes through cmpool; while a
// function is known not to change settings, calling it costs nothing more.
//
// Custom placeholders (myapp.tenant) set by such code cannot all be listed: PostgreSQL
// shows none in pg_settings. Those the statement, a DO body or the called functions'
// source names are read back. When code may have set others (a DO block, set_config
// with a computed name, a function that may change settings, …), the server is marked,
// and the next other client to use it gets RESET ALL before its own settings.

// withSettingEffects adds to t what the classifier says of how q may change settings
// without naming them (session.WithSettingEffects).
func withSettingEffects(cl *router.Classifier, q string, t session.Traits) session.Traits {
	return session.WithSettingEffects(cl, q, t)
}

// untrackedChanges reports whether l ran something that may have changed settings it
// does not name: a statement the router marked, or a function not known to leave them
// alone. The caller holds c.mu.
func (l *Lease) untrackedChanges() bool {
	c := l.c
	if l.untracked {
		return true
	}
	if len(l.settingFuncs) == 0 {
		return false
	}
	gen, now := c.Host.Statements().SchemaGen(), Nanotime()
	for _, f := range l.settingFuncs {
		if j, ok := c.Host.Judgement(f, gen, now); !ok || j.MayChange {
			return true
		}
	}
	return false
}

// syncLease reads back what the lease's statements changed and ends the lease (see
// syncTracked). It reports whether the server is still usable.
func (l *Lease) syncLease() bool {
	c := l.c
	c.Mu.Lock()
	all := l.untrackedChanges()
	c.Mu.Unlock()
	if all {
		return l.syncUntracked()
	}
	return l.syncTracked()
}

// syncUntracked reads back the settings after a lease that may have changed some
// without naming them, makes what changed the client's, corrects the server's record,
// and ends the lease. It reports whether the server is still usable.
//
// When every setting that may have changed is named (by the statements, or by the
// source of functions judged before), only those are read. Otherwise every setting whose
// source is the session is, and functions not judged yet are judged in the same query.
func (l *Lease) syncUntracked() bool {
	c := l.c
	sc := l.sc
	c.Mu.Lock()
	names := append([]string{"role"}, l.track...)
	names = append(names, l.settingNames...)
	for k := range c.Settings.Names() {
		names = append(names, k)
	}
	funcs, unnamed := l.settingFuncs, l.opaque
	c.Mu.Unlock()
	for k := range sc.Set {
		names = append(names, k)
	}
	gen, now := c.Host.Statements().SchemaGen(), Nanotime()
	var judge []string
	for _, f := range funcs {
		fs, ok := c.Host.Judgement(f, gen, now)
		if !ok {
			judge = append(judge, f)
			continue
		}
		names = append(names, fs.Names...)
		unnamed = unnamed || fs.Opaque
	}
	full := unnamed || len(judge) > 0
	q := session.KnownReadback(names)
	if full {
		q = session.UntrackedReadback(names, judge)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Host.Config().ServerConnectTimeout)
	res, err := sc.Exec(ctx, q)
	cancel()
	ok := err == nil && res.Err == nil && len(res.Row) == 1 && sc.TxStatus == 'I'
	var got map[string]session.ReadbackValue
	var judged map[string]session.Judgement
	if ok {
		if got, judged, err = session.ParseReadback(res.Row[0]); err != nil {
			ok = false
		}
	}
	for _, f := range judge {
		j, found := judged[f]
		if found {
			c.Host.Judged(f, j, gen, now)
		}
		unnamed = unnamed || j.Opaque || !found
	}

	c.Mu.Lock()
	if !ok {
		c.Log.Warn("could not read back session state", "error", err, "server_error", res.Err)
	} else {
		c.Settings.ApplyReadback(serverSettings(sc), got, full)
		sc.ConfiguredFor, sc.ConfiguredVersion = c.ID, c.Settings.Version()
		if unnamed {
			// Custom placeholders nobody named may be set too: they are the client's, on
			// this server only, until another client needs it (see applyParams).
			sc.UnnamedSettings = true
		}
	}
	l.track = nil
	l.untracked, l.opaque, l.settingNames, l.settingFuncs = false, false, nil, nil
	l.leaveClient()
	c.Mu.Unlock()
	return ok
}
