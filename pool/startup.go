package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"sort"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/puddle/v2"

	"github.com/cmlite/cmpool/pool/internal/lease"
	"github.com/cmlite/cmpool/pool/internal/peer"
	"github.com/cmlite/cmpool/pool/internal/session"
	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// startup negotiates SSL, reads the StartupMessage, logs the client in and sends the
// initial parameter statuses, all under client_login_timeout.
func (c *clientSession) startup(ctx context.Context) error {
	_ = c.Conn.Net.SetDeadline(time.Now().Add(c.srv.conf().ClientLoginTimeout))
	if c.Closing.Load() {
		// Shutdown began before this goroutine ran: its drain deadline stands.
		_ = c.Conn.Net.SetReadDeadline(time.Now().Add(drainGrace))
	}
	var req *protocol.StartupRequest
	for sslDone, gssDone := false, false; ; {
		var err error
		if !sslDone {
			sslDone, err = maybeDirectTLS(&c.Conn, ctx, &c.srv.clientTLS, c.Log)
		}
		if err == nil {
			req, err = protocol.ReadStartupRequest(c.Conn.R)
		}
		if err != nil {
			if lease.IsTimeout(err) && c.Closing.Load() {
				return protocol.NewFatal(protocol.CodeAdminShutdown, "cmpool is shutting down")
			}
			if lease.IsTimeout(err) {
				return protocol.NewFatal(protocol.CodeProtocolViolation, "client_login_timeout: startup not completed in time")
			}
			return err
		}
		switch {
		case req.SSL && !sslDone:
			sslDone = true
			if err := negotiateSSL(&c.Conn, ctx, &c.srv.clientTLS, c.Log); err != nil {
				return err
			}
			continue
		case req.GSSENC && !gssDone:
			gssDone = true
			if _, err := c.Conn.Net.Write([]byte{'N'}); err != nil {
				return err
			}
			continue
		case req.SSL || req.GSSENC:
			return protocol.NewFatal(protocol.CodeProtocolViolation, "duplicate SSL or GSSAPI negotiation request")
		case req.Cancel != nil:
			c.srv.handleCancel(ctx, req.Cancel)
			return io.EOF
		}
		break
	}
	sm := req.Startup
	if kind, ok := sm.Parameters[peer.StartupParam]; ok {
		return c.servePeerLink(kind)
	}
	c.User = sm.Parameters["user"]
	c.Database = sm.Parameters["database"]
	if c.Database == "" {
		c.Database = c.User
	}
	setClientIdent(c.Log, &c.Client)
	if sm.Parameters["replication"] != "" && sm.Parameters["replication"] != "false" && sm.Parameters["replication"] != "off" {
		return protocol.NewFatal(protocol.CodeFeatureNotSupported, "replication connections are not supported through cmpool")
	}
	if req.NeedsNegotiation() {
		b, _ := req.NegotiateMessage().Encode(nil)
		_, _ = c.Conn.W.Write(b)
	}
	if c.srv.overClientLimit() {
		return protocol.NewFatal(protocol.CodeTooManyConnections,
			fmt.Sprintf("no more connections allowed (max_client_conn %d)", c.srv.conf().MaxClientConn))
	}
	params := make(map[string]string, len(sm.Parameters))
	ignored := session.Names(c.srv.conf().IgnoreStartupParameters)
	for k, v := range sm.Parameters {
		if !session.IgnoredStartup(k) && !ignored[session.CanonicalName(k)] {
			params[session.CanonicalName(k)] = v
		}
	}
	if opts := sm.Parameters["options"]; opts != "" && !ignored["options"] {
		o, err := protocol.ParseOptions(opts)
		if err != nil {
			return protocol.NewFatal(protocol.CodeFeatureNotSupported, err.Error())
		}
		for k, v := range o {
			if !ignored[session.CanonicalName(k)] {
				params[session.CanonicalName(k)] = v
			}
		}
	}
	c.routing.route = router.RouteAuto
	if r, ok := params["cmpool.route"]; ok {
		delete(params, "cmpool.route")
		route, err := router.ParseRoute(r)
		if err != nil {
			return protocol.NewFatal("22023", err.Error())
		}
		c.routing.route = route
	}
	if r := c.srv.conf().Databases[c.Database].Route; r != "" {
		c.routing.route = r
	}
	c.Settings = c.srv.startupParams.settings(params)
	if err := c.authenticate(ctx); err != nil {
		return err
	}
	if c.srv.isAdminDatabase(c.Database) {
		return c.adminStartup()
	}
	if c.srv.disabledDBs()[c.Database] {
		return protocol.NewFatal(protocol.CodeObjectNotInState, fmt.Sprintf("database %q is not currently accepting connections", c.Database))
	}

	gen := c.srv.primaryGen.Load()
	bp, err := c.srv.poolFor(c.Database, c.User, backendPrimary)
	if err != nil {
		return protocol.NewFatal(protocol.CodeInvalidCatalogName, err.Error())
	}
	c.pools = clientPools{c: c, primary: bp, gen: gen}
	c.Mode = bp.mode.lease()
	c.Pin = c.srv.pinPolicy(c.Database, c.User)

	// While the database is paused, a transaction-mode client logs in without a server,
	// as in PgBouncer, when an earlier login of the same user to it left the server's
	// parameters; its first query waits for RESUME.
	if p := c.srv.pauses.Load(); c.Mode != lease.Session && p.covers(c.Database) && !p.holdsLogins(c.Database) {
		if w, ok := c.srv.welcomes.Load(welcomeKey{c.Database, c.User}); ok {
			return c.loginWithoutServer(w.(map[string]string))
		}
	}

	// Log in on a real server: it proves the database and user exist, and it gives the
	// server's canonical values of the client's parameters to report back.
	acqCtx, cancel := c.srv.waitContext(ctx)
	defer cancel()
	if err := c.waitUnpaused(acqCtx); err != nil {
		return c.srv.acquireError(err, true)
	}
	// Waiting here counts as waiting for a server, as it does later.
	start := lease.Nanotime()
	c.waitingSince.Store(start)
	res, err := bp.Acquire(acqCtx)
	for attempt := 0; errors.Is(err, puddle.ErrClosedPool) && !c.srv.closing.Load() && attempt < 3; attempt++ {
		// A reload or a promotion replaced the pool meanwhile: take the new one.
		if bp, err = c.pools.at(backendPrimary); err == nil {
			res, err = bp.Acquire(acqCtx)
		}
	}
	c.waitingSince.Store(0)
	if d := time.Duration(lease.Nanotime() - start); d > time.Millisecond {
		c.srv.noteWait(c.Database, c.User, bp, d)
	}
	if err != nil {
		// With the primary down, a replica can log the client in: its reads still work.
		rbp, rres := c.pools.loginOnReplica(ctx, err, c.Mode, c.Log)
		if rres == nil {
			return c.srv.acquireError(err, true)
		}
		bp, res = rbp, rres
	}
	sc := res.Value()
	err = c.ApplyParams(ctx, sc)
	if err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) {
			// The server refused a parameter value: the server itself is fine.
			bp.GiveBack(res, false)
			return pe
		}
		bp.GiveBack(res, true)
		return protocol.NewFatal(protocol.CodeConnectionFailure, "server connection failed during login: "+err.Error())
	}
	c.srv.noteWelcome(welcomeKey{c.Database, c.User}, sc.Defaults)
	// Report the server's values, then the client's canonical ones.
	report := maps.Clone(sc.Defaults)
	for k, v := range sc.Set {
		report[k] = v
	}
	c.Settings.Adopt(report)
	sc.ConfiguredFor, sc.ConfiguredVersion = c.ID, c.Settings.Version()
	if err := c.welcome(report); err != nil {
		bp.GiveBack(res, false)
		return err
	}
	if c.Mode == lease.Session {
		c.Start(bp.Pool, res, lease.Route{Replica: -1})
		c.EnsureRelay()
	} else {
		bp.GiveBack(res, false)
		c.ArmIdleTimeout(false)
	}
	return nil
}

// loginWithoutServer completes the login of a transaction-mode client from the
// parameters a server of its database and user reported at an earlier login, with the
// client's own values over them (as the client sent them: no server has checked them yet;
// a server refuses a bad one at the first query).
func (c *clientSession) loginWithoutServer(serverParams map[string]string) error {
	report := maps.Clone(serverParams)
	c.Settings.Over(report)
	if err := c.welcome(report); err != nil {
		return err
	}
	c.ArmIdleTimeout(false)
	return nil
}

// welcome sends the end of a successful login: the parameter statuses in report,
// BackendKeyData and ReadyForQuery. The client is logged in from then on.
func (c *clientSession) welcome(report map[string]string) error {
	if err := c.srv.registerClient(c); err != nil {
		return err
	}
	c.Settings.MarkStartup()
	names := make([]string, 0, len(report))
	for k := range report {
		names = append(names, k)
	}
	sort.Strings(names)
	var out []byte
	for _, k := range names {
		out, _ = (&pgproto3.ParameterStatus{Name: k, Value: report[k]}).Encode(out)
	}
	out, _ = (&pgproto3.BackendKeyData{ProcessID: c.key.pid, SecretKey: c.key.secret[:]}).Encode(out)
	out = protocol.AppendReadyForQuery(out, 'I')
	_ = c.Conn.Net.SetDeadline(time.Time{})
	if err := c.Conn.WriteLocal(out); err != nil {
		return err
	}
	// A TLS client never parks (its TLS layer may hold decrypted bytes): the sweeper must
	// not wake it every sweep to ask. Set before loggedIn, which the sweeper reads first.
	c.parkable = c.parkable && c.Conn.TLS == nil
	c.loggedIn.Store(true)
	c.Mu.Lock()
	c.IdleSince.Store(lease.Nanotime())
	if c.Closing.Load() {
		// A drain began during the login: the client's first request is on its way.
		c.CloseAt.Store(lease.Nanotime() + int64(drainGrace))
		_ = c.Conn.Net.SetReadDeadline(time.Now().Add(drainGrace))
	}
	c.Mu.Unlock()
	return nil
}
