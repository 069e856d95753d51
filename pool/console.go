package pool

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cmlite/cmpool/pool/internal/admin"
	"github.com/cmlite/cmpool/pool/internal/lease"
	"github.com/cmlite/cmpool/protocol"
)

// The admin console (pool/internal/admin) is served to clients of the database
// AdminDatabase: this file finishes their login, hands their connection to the console
// and gives it a Controller over the Server. docs/operations.md is the reference.

// Version is cmpool's version, reported by SHOW VERSION and `cmpool version`.
var Version = "0.1.0-dev"

// AdminDatabase is the admin console's database name; PgBouncer's name is an alias.
const AdminDatabase = admin.DatabaseName

// isAdminDatabase reports whether a client asking for database wants the console: a
// configured database of that name wins.
func (s *Server) isAdminDatabase(database string) bool {
	if database != AdminDatabase && database != "pgbouncer" {
		return false
	}
	_, configured := s.conf().Databases[database]
	return !configured
}

// adminStartup finishes the login of a console client, authenticated already: what
// follows the AuthenticationOk that authenticate sent.
func (c *clientSession) adminStartup() error {
	c.admin = true
	if (consoleControl{c.srv}).Role(c.User) == admin.RoleNone {
		return protocol.NewFatal(protocol.CodeInvalidAuthorization,
			fmt.Sprintf("not allowed: user %q is in neither admin_users nor stats_users", c.User))
	}
	c.key = c.srv.unregisteredKey()
	out := admin.StartupReply(c.Settings.Value("application_name"), c.key.pid, c.key.secret[:])
	_ = c.Conn.Net.SetDeadline(time.Time{})
	c.loggedIn.Store(true)
	return c.Conn.WriteLocal(out)
}

// adminLoop serves console commands until the client leaves.
func (c *clientSession) adminLoop(ctx context.Context) error {
	console := &admin.Console{Ctl: consoleControl{c.srv}, Log: c.srv.log, User: c.User, Version: Version}
	return console.Serve(ctx, admin.Conn{
		Frames:  c.Conn.FR,
		Write:   c.Conn.WriteLocal,
		Closing: c.Closing.Load,
		Failed:  func(code string) { c.srv.noteError(c.Database, c.User, code) },
	})
}

// consoleControl is the Server as the console sees it.
type consoleControl struct{ s *Server }

var _ admin.Controller = consoleControl{}

func (cc consoleControl) Snapshot(parts admin.Parts) *admin.Snapshot { return cc.s.snapshot(parts) }

func (cc consoleControl) Role(user string) admin.Role {
	cfg := cc.s.conf()
	return admin.RoleOf(user, cfg.AdminUsers, cfg.StatsUsers)
}

func (cc consoleControl) Pause(ctx context.Context, database string) error {
	return cc.s.pause(ctx, database)
}

func (cc consoleControl) Resume(database string) bool { return cc.s.setPause(database, false, false) }

func (cc consoleControl) Kill(database string) { cc.s.kill(database) }

func (cc consoleControl) SetDisabled(database string, disabled bool) {
	cc.s.setDisabled(database, disabled)
}

func (cc consoleControl) WaitClose(ctx context.Context, database string) error {
	return cc.s.waitClose(ctx, database)
}

func (cc consoleControl) Reconnect(database string) { cc.s.reconnect(database) }

func (cc consoleControl) Reload() ([]string, error) { return cc.s.reloadFromSource() }

func (cc consoleControl) Shutdown(mode admin.ShutdownMode) { cc.s.shutdownFromConsole(mode) }

func (cc consoleControl) KillClient(id uint64) bool { return cc.s.killClient(id) }

func (cc consoleControl) Set(key, value string) *protocol.Error {
	return cc.s.setFromConsole(key, value)
}

// consoleShutdown is a shutdown the console began.
type consoleShutdown struct {
	// done is closed once the shutdown is over (Serve waits for it).
	done chan struct{}
	// drain is closed when a SHUTDOWN (or SHUTDOWN WAIT_FOR_SERVERS) follows a SHUTDOWN
	// WAIT_FOR_CLIENTS: the wait for clients ends and the drain begins.
	drain     chan struct{}
	drainOnce sync.Once
}

// shutdownFromConsole begins a shutdown of mode in the background. WAIT_FOR_CLIENTS
// closes the listeners and waits, with no time limit, until no client but console
// clients is left (or a drain is asked for meanwhile: a later SHUTDOWN, SIGTERM or
// Shutdown); then, as for the other modes, the drain of Shutdown runs within
// shutdown_timeout and closes what is left, console clients included.
func (s *Server) shutdownFromConsole(mode admin.ShutdownMode) {
	cs := &consoleShutdown{done: make(chan struct{}), drain: make(chan struct{})}
	if !s.stopping.CompareAndSwap(nil, cs) {
		// A shutdown is under way: a plain one now ends a wait for clients.
		if mode == admin.ShutdownDrain {
			cs = s.stopping.Load()
			cs.drainOnce.Do(func() { close(cs.drain) })
		}
		return
	}
	if mode == admin.ShutdownWaitForClients {
		s.mu.Lock()
		s.noAccept.Store(true)
		for ln := range s.listeners {
			_ = ln.Close()
		}
		s.mu.Unlock()
		s.log.Info("waiting for every client to leave before shutting down (SHUTDOWN WAIT_FOR_CLIENTS)")
	}
	go func() {
		defer close(cs.done)
		if mode == admin.ShutdownWaitForClients {
			s.waitClientsGone(cs.drain)
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.conf().ShutdownTimeout)
		defer cancel()
		_ = s.Shutdown(ctx)
	}()
}

// waitClientsGone returns once no client but console clients is connected, or when
// drain is closed or a Shutdown has begun.
func (s *Server) waitClientsGone(drain <-chan struct{}) {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if s.closing.Load() {
			return
		}
		gone := true
		for _, c := range s.clientsOf("") {
			if !c.loggedIn.Load() || !c.admin {
				gone = false
				break
			}
		}
		if gone {
			s.log.Info("the last client has left: shutting down")
			return
		}
		select {
		case <-drain:
			return
		case <-tick.C:
		}
	}
}

// killableWait makes *cancel the way KILL_CLIENT ends c's wait for a server; nil when the
// wait is over.
func (c *clientSession) killableWait(cancel *context.CancelFunc) {
	c.waitKill.Store(cancel)
	if cancel != nil && c.killed.Load() {
		(*cancel)() // killed just before
	}
}

// killedError is what a client killed by KILL_CLIENT is told.
func killedError() *protocol.Error {
	return protocol.NewFatal(protocol.CodeAdminShutdown, "terminating connection due to administrator command")
}

// killGrace is how long KILL_CLIENT waits for a client that is neither reading nor
// waiting for a server (logging in, say) to notice, before closing its socket without a
// message.
const killGrace = time.Second

// killClient is the console's KILL_CLIENT: client id is closed at once with FATAL 57P01.
// Its server, if it holds one, is given back when idle and closed otherwise (a
// transaction in progress is rolled back by the server).
func (s *Server) killClient(id uint64) bool {
	var target *clientSession
	s.mu.Lock()
	for c := range s.conns {
		if c.ID == id {
			target = c
			break
		}
	}
	s.mu.Unlock()
	if target == nil {
		return false
	}
	target.Log.Info("client killed by the admin console (KILL_CLIENT)")
	// A client waiting for a server stops waiting, and one that gets a server gives it
	// back unused (see acquire): its request is never sent.
	target.killed.Store(true)
	if cancel := target.waitKill.Load(); cancel != nil {
		(*cancel)()
	}
	// The loop reads Closing when its read fails and answers FATAL 57P01.
	target.CloseAt.Store(lease.Nanotime())
	target.Closing.Store(true)
	_ = target.Conn.Net.SetReadDeadline(time.Now())
	time.AfterFunc(killGrace, func() { _ = target.Conn.Net.Close() })
	return true
}
