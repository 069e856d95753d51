package pool

import "context"

// Router decides where a transaction goes, overriding or extending cmpool's
// classification (Config.Router). It is consulted only when replicas are configured,
// in transaction and statement modes.
type Router interface {
	Route(RouteRequest) Route
}

// RouterFunc adapts a function to Router.
type RouterFunc func(RouteRequest) Route

// Route calls f(r).
func (f RouterFunc) Route(r RouteRequest) Route { return f(r) }

// Route is a routing decision.
type Route string

const (
	// RouteDefault keeps cmpool's decision.
	RouteDefault Route = ""
	// RoutePrimary sends the transaction to the primary.
	RoutePrimary Route = "primary"
	// RouteReplica sends it to a usable replica, as a /* cmpool:replica */ hint does: a
	// write there fails with 25006 instead of moving to the primary. With no usable
	// replica it goes to the primary.
	RouteReplica Route = "replica"
)

// RouteRequest describes a transaction about to be routed.
type RouteRequest struct {
	Database, User string
	// Query is the text of the transaction's first statement; empty when cmpool could
	// not see it (a message too large to hold).
	Query string
	// Write is cmpool's verdict: the statement must run on the primary. Reason says why.
	Write  bool
	Reason string
	// Hinted is what hints and settings chose ("primary", "replica"), or "" for
	// automatic routing.
	Hinted Route
}

// Authenticator looks up the secrets clients log in with, from anywhere: a secrets
// manager, a service's own user table (Config.Authenticator). cmpool asks it for users
// found neither in Config.Users nor in the auth file, before auth_query. The login method
// (scram-sha-256, md5, password) is still chosen by AuthType and the rules.
type Authenticator interface {
	// Lookup returns user's secret: a cleartext password, an md5 secret ("md5" and 32
	// hex digits) or a SCRAM secret ("SCRAM-SHA-256$...") as pg_authid stores them.
	// found is false for an unknown user, who then fails to log in like a wrong
	// password. An error fails the login with 08006 and is logged; it is not cached.
	Lookup(ctx context.Context, user string) (secret string, found bool, err error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context, user string) (string, bool, error)

// Lookup calls f(ctx, user).
func (f AuthenticatorFunc) Lookup(ctx context.Context, user string) (string, bool, error) {
	return f(ctx, user)
}
