package pool

import (
	"context"
	"fmt"
	"time"

	"github.com/cmlite/cmpool/pool/internal/admin"
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

func (cc consoleControl) Shutdown() {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), cc.s.conf().ShutdownTimeout)
		defer cancel()
		_ = cc.s.Shutdown(ctx)
	}()
}
