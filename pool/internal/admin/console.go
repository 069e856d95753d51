// Package admin is the admin console: a virtual database named "cmpool" (alias
// "pgbouncer") that answers PgBouncer's console commands over the simple query protocol,
// with PgBouncer's column names and types, so that its tools (pgbouncer_exporter,
// scripts, psql habits) work unchanged. docs/operations.md is the reference.
//
// The console reads a server through a Snapshot and acts on it through a Controller; it
// knows nothing else of the server.
package admin

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/protocol"
)

// DatabaseName is the console's database name; PgBouncer's name, "pgbouncer", is an alias.
const DatabaseName = "cmpool"

// Role is what a console user may do.
type Role int

const (
	RoleNone  Role = iota
	RoleStats      // SHOW commands
	RoleAdmin      // everything
)

// RoleOf returns user's role, given the admin_users and stats_users lists.
func RoleOf(user string, adminUsers, statsUsers []string) Role {
	switch {
	case slices.Contains(adminUsers, user):
		return RoleAdmin
	case slices.Contains(statsUsers, user):
		return RoleStats
	}
	return RoleNone
}

// Controller is the server as the console sees it: a snapshot to show, and the commands
// that act. database "" means every database where a command allows it.
type Controller interface {
	// Snapshot takes a snapshot holding parts.
	Snapshot(parts Parts) *Snapshot
	// Role returns what user may do now (the admin lists can change with RELOAD).
	Role(user string) Role
	// Pause makes new transactions of database wait and returns once its servers are
	// back and closed, or early (leaving the pause in place) when ctx ends.
	Pause(ctx context.Context, database string) error
	// Resume ends a pause; it reports false when database was not paused.
	Resume(database string) bool
	// Kill disconnects database's clients and closes its servers; it stays paused.
	Kill(database string)
	// SetDisabled refuses (or, with false, admits again) new logins to database.
	SetDisabled(database string, disabled bool)
	// WaitClose returns once no server of database is waiting to be closed, or when ctx
	// ends.
	WaitClose(ctx context.Context, database string) error
	// Reconnect closes database's servers as they come back, and opens new ones.
	Reconnect(database string)
	// Reload reads the configuration again and applies it; fixed lists the settings
	// that need a restart and were left as they were.
	Reload() (fixed []string, err error)
	// Shutdown begins a shutdown of mode in the background.
	Shutdown(mode ShutdownMode)
	// KillClient closes the client connection id (SHOW CLIENTS' id) at once, with
	// FATAL 57P01; it reports false when there is no such client.
	KillClient(id uint64) bool
	// Set changes the setting key (PgBouncer's name) to value as a RELOAD would, or
	// returns why it cannot.
	Set(key, value string) *protocol.Error
}

// ShutdownMode is how SHUTDOWN lets clients go.
type ShutdownMode int

const (
	// ShutdownDrain (SHUTDOWN, SHUTDOWN WAIT_FOR_SERVERS) stops accepting, lets each
	// transaction in flight finish and closes each client at its next transaction
	// boundary, within shutdown_timeout.
	ShutdownDrain ShutdownMode = iota
	// ShutdownWaitForClients (SHUTDOWN WAIT_FOR_CLIENTS) stops accepting and waits, with
	// no time limit, until the last client has left on its own.
	ShutdownWaitForClients
)

// Console runs the commands of one console client.
type Console struct {
	Ctl Controller
	// Log hears of the commands that act.
	Log *slog.Logger
	// User is the client's user.
	User string
	// Version is what SHOW VERSION reports after "cmpool ".
	Version string
}

// Run runs one query string of console commands separated by semicolons and returns the
// replies, without the ReadyForQuery. It stops at the first error: reply then ends with
// its ErrorResponse, and failed is that error.
func (c *Console) Run(ctx context.Context, query string) (reply []byte, failed *protocol.Error) {
	ran := false
	for _, stmt := range splitStatements(query) {
		words := strings.Fields(stmt)
		if len(words) == 0 {
			continue
		}
		ran = true
		var out []byte
		var pe *protocol.Error
		if isSet(stmt) {
			out, pe = c.set(stmt)
		} else {
			out, pe = c.command(ctx, words)
		}
		if pe != nil {
			return protocol.AppendErrorResponse(reply, pe), pe
		}
		reply = append(reply, out...)
	}
	if !ran {
		reply, _ = (&pgproto3.EmptyQueryResponse{}).Encode(reply)
	}
	return reply, nil
}

// command runs one console command.
func (c *Console) command(ctx context.Context, words []string) ([]byte, *protocol.Error) {
	verb := strings.ToUpper(words[0])
	args := words[1:]
	if verb != "SHOW" && c.Ctl.Role(c.User) != RoleAdmin {
		return nil, protocol.NewError(protocol.CodeInsufficientPrivilege,
			fmt.Sprintf("%s is for admin_users; user %q may only run SHOW commands", verb, c.User))
	}
	arg := func() (string, *protocol.Error) {
		switch len(args) {
		case 0:
			return "", nil
		case 1:
			return strings.Trim(args[0], `"`), nil
		}
		return "", protocol.NewError(protocol.CodeSyntaxError, fmt.Sprintf("%s takes at most one database name", verb))
	}
	switch verb {
	case "SHOW":
		if len(args) != 1 {
			return nil, protocol.NewError(protocol.CodeSyntaxError, "SHOW takes one word, such as SHOW POOLS; see SHOW HELP")
		}
		return c.show(strings.ToUpper(args[0]))
	case "PAUSE":
		db, pe := arg()
		if pe != nil {
			return nil, pe
		}
		if err := c.Ctl.Pause(ctx, db); err != nil {
			return nil, protocol.NewError(protocol.CodeQueryCanceled, "PAUSE interrupted: "+err.Error())
		}
		c.Log.Info("paused by the admin console", "database", db, "user", c.User)
		return commandComplete("PAUSE"), nil
	case "RESUME":
		db, pe := arg()
		if pe != nil {
			return nil, pe
		}
		if !c.Ctl.Resume(db) {
			return nil, protocol.NewError(protocol.CodeObjectNotInState, "not paused")
		}
		c.Log.Info("resumed by the admin console", "database", db, "user", c.User)
		return commandComplete("RESUME"), nil
	case "KILL":
		db, pe := arg()
		if pe != nil {
			return nil, pe
		}
		if db == "" {
			pe := protocol.NewError(protocol.CodeSyntaxError, "KILL needs a database name: cmpool does not kill every database at once")
			pe.Hint = "KILL each database, KILL_CLIENT one client, or PAUSE to stop all traffic to servers"
			return nil, pe
		}
		c.Ctl.Kill(db)
		c.Log.Warn("database killed by the admin console: its clients were disconnected", "database", db, "user", c.User)
		return commandComplete("KILL"), nil
	case "DISABLE", "ENABLE":
		db, pe := arg()
		if pe != nil {
			return nil, pe
		}
		if db == "" {
			return nil, protocol.NewError(protocol.CodeSyntaxError, verb+" needs a database name")
		}
		c.Ctl.SetDisabled(db, verb == "DISABLE")
		c.Log.Info("database "+strings.ToLower(verb)+"d by the admin console", "database", db, "user", c.User)
		return commandComplete(verb), nil
	case "WAIT_CLOSE":
		db, pe := arg()
		if pe != nil {
			return nil, pe
		}
		if err := c.Ctl.WaitClose(ctx, db); err != nil {
			return nil, protocol.NewError(protocol.CodeQueryCanceled, "WAIT_CLOSE interrupted: "+err.Error())
		}
		return commandComplete("WAIT_CLOSE"), nil
	case "RECONNECT":
		db, pe := arg()
		if pe != nil {
			return nil, pe
		}
		c.Ctl.Reconnect(db)
		return commandComplete("RECONNECT"), nil
	case "RELOAD":
		if len(args) > 0 {
			return nil, protocol.NewError(protocol.CodeSyntaxError, "RELOAD takes no arguments")
		}
		fixed, err := c.Ctl.Reload()
		if err != nil {
			return nil, protocol.NewError(protocol.CodeInvalidParameterValue, "RELOAD failed, the configuration in force is unchanged: "+err.Error())
		}
		var out []byte
		if len(fixed) > 0 {
			out = appendNotice(out, "these settings need a restart to change and were left as they are: "+strings.Join(fixed, ", "))
		}
		return append(out, commandComplete("RELOAD")...), nil
	case "SHUTDOWN":
		mode := ShutdownDrain
		switch strings.ToUpper(strings.Join(args, " ")) {
		case "", "WAIT_FOR_SERVERS":
		case "WAIT_FOR_CLIENTS":
			mode = ShutdownWaitForClients
		default:
			return nil, protocol.NewError(protocol.CodeSyntaxError, "SHUTDOWN takes WAIT_FOR_SERVERS, WAIT_FOR_CLIENTS or nothing")
		}
		c.Log.Warn("shutdown requested from the admin console", "user", c.User, "mode", strings.Join(args, " "))
		c.Ctl.Shutdown(mode)
		return commandComplete("SHUTDOWN"), nil
	case "KILL_CLIENT":
		if len(args) != 1 {
			return nil, protocol.NewError(protocol.CodeSyntaxError, "KILL_CLIENT takes one client id, from SHOW CLIENTS")
		}
		id, ok := parseClientID(args[0])
		if !ok {
			return nil, protocol.NewError(protocol.CodeInvalidParameterValue,
				fmt.Sprintf("KILL_CLIENT: %q is not a client id: use the id column of SHOW CLIENTS (or its ptr)", args[0]))
		}
		if !c.Ctl.KillClient(id) {
			return nil, protocol.NewError(protocol.CodeObjectNotInState, fmt.Sprintf("KILL_CLIENT: client %d not found", id))
		}
		c.Log.Warn("client killed by the admin console", "client_id", id, "user", c.User)
		return commandComplete("KILL_CLIENT"), nil
	case "SUSPEND":
		pe := protocol.NewError(protocol.CodeFeatureNotSupported,
			"SUSPEND is not supported: it exists for PgBouncer's online restart, which passes sockets to a new process; cmpool does not")
		pe.Hint = "restart with no refused connection by running a second cmpool with so_reuseport and sending SHUTDOWN WAIT_FOR_CLIENTS (or SIGTERM) to the old one; PAUSE stops the traffic to servers"
		return nil, pe
	}
	return nil, protocol.NewError(protocol.CodeSyntaxError, fmt.Sprintf("invalid command %q for the admin console; see SHOW HELP", strings.Join(words, " ")))
}

// parseClientID parses a client id as SHOW CLIENTS shows it: the id column (decimal) or
// the ptr column ("c" and the id in hex).
func parseClientID(s string) (uint64, bool) {
	s = strings.Trim(s, `"'`)
	base := 10
	if rest, ok := strings.CutPrefix(s, "c"); ok {
		s, base = rest, 16
	}
	id, err := strconv.ParseUint(s, base, 64)
	return id, err == nil && id > 0
}
