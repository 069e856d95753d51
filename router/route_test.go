package router_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/router"
)

func TestDecide(t *testing.T) {
	read := &router.Verdict{Statements: 1}
	write := &router.Verdict{Write: true, Statements: 1}
	setting := &router.Verdict{Write: true, SessionOnly: true, Statements: 1}
	begin := &router.Verdict{Begin: true, Statements: 1}
	beginRO := &router.Verdict{Begin: true, ReadOnly: true, Statements: 1}
	setTxRO := &router.Verdict{ReadOnly: true, Statements: 1}
	commit := &router.Verdict{End: true, Statements: 1}
	funcs := &router.Verdict{Funcs: []string{"f"}, Statements: 1}
	hintReplica := &router.Verdict{Write: true, Hint: router.RouteReplica, Statements: 1}
	hintPrimary := &router.Verdict{Hint: router.RoutePrimary, Statements: 1}

	primary := router.Decision{Target: router.TargetPrimary, MayWrite: true}
	for _, tc := range []struct {
		name string
		in   router.RouteInput
		want router.Decision
	}{
		{"unknown statement", router.RouteInput{Session: router.RouteAuto}, primary},
		{"read", router.RouteInput{Verdict: read, Session: router.RouteAuto}, router.Decision{Target: router.TargetReplica}},
		{"write", router.RouteInput{Verdict: write, Session: router.RouteAuto}, primary},
		{"session setting is no write", router.RouteInput{Verdict: setting, Session: router.RouteAuto},
			router.Decision{Target: router.TargetPrimary}},
		{"begin", router.RouteInput{Verdict: begin, Session: router.RouteAuto}, primary},
		{"begin read only", router.RouteInput{Verdict: beginRO, Session: router.RouteAuto}, router.Decision{Target: router.TargetReplica}},
		{"set transaction read only", router.RouteInput{Verdict: setTxRO, Session: router.RouteAuto},
			router.Decision{Target: router.TargetPrimary}},
		{"commit", router.RouteInput{Verdict: commit, Session: router.RouteAuto}, primary},
		{"functions to check", router.RouteInput{Verdict: funcs, Session: router.RouteAuto},
			router.Decision{Target: router.TargetReplica, CheckFuncs: true}},
		{"unknown route value counts as auto", router.RouteInput{Verdict: read, Session: "bogus"}, router.Decision{Target: router.TargetReplica}},

		{"session primary", router.RouteInput{Verdict: read, Session: router.RoutePrimary},
			router.Decision{Target: router.TargetPrimary, Forced: true}},
		{"session primary, write", router.RouteInput{Verdict: write, Session: router.RoutePrimary},
			router.Decision{Target: router.TargetPrimary, Forced: true, MayWrite: true}},
		{"session primary, unknown", router.RouteInput{Session: router.RoutePrimary},
			router.Decision{Target: router.TargetPrimary, Forced: true, MayWrite: true}},
		{"session replica, write", router.RouteInput{Verdict: write, Session: router.RouteReplica},
			router.Decision{Target: router.TargetReplica, Forced: true}},
		{"session replica, unknown", router.RouteInput{Session: router.RouteReplica},
			router.Decision{Target: router.TargetReplica, Forced: true}},
		{"session replica, functions unchecked", router.RouteInput{Verdict: funcs, Session: router.RouteReplica},
			router.Decision{Target: router.TargetReplica, Forced: true}},

		{"local over session", router.RouteInput{Verdict: write, Session: router.RoutePrimary, Local: router.RouteReplica},
			router.Decision{Target: router.TargetReplica, Forced: true}},
		{"local auto over session", router.RouteInput{Verdict: read, Session: router.RoutePrimary, Local: router.RouteAuto},
			router.Decision{Target: router.TargetReplica}},
		{"hint over local", router.RouteInput{Verdict: hintReplica, Session: router.RouteAuto, Local: router.RoutePrimary},
			router.Decision{Target: router.TargetReplica, Forced: true}},
		{"primary hint", router.RouteInput{Verdict: hintPrimary, Session: router.RouteReplica},
			router.Decision{Target: router.TargetPrimary, Forced: true}},

		{"override primary", router.RouteInput{Verdict: hintReplica, Session: router.RouteAuto, Override: router.RoutePrimary},
			router.Decision{Target: router.TargetPrimary, Forced: true, MayWrite: true}},
		{"override replica", router.RouteInput{Verdict: write, Session: router.RoutePrimary, Override: router.RouteReplica},
			router.Decision{Target: router.TargetReplica, Forced: true}},
		{"override auto keeps the request", router.RouteInput{Verdict: read, Session: router.RoutePrimary, Override: router.RouteAuto},
			router.Decision{Target: router.TargetPrimary, Forced: true}},
		{"unknown override keeps the request", router.RouteInput{Verdict: read, Session: router.RouteReplica, Override: "elsewhere"},
			router.Decision{Target: router.TargetReplica, Forced: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, router.Decide(tc.in))
		})
	}
}

func TestRouteInputRequested(t *testing.T) {
	hint := &router.Verdict{Hint: router.RouteReplica}
	for _, tc := range []struct {
		in   router.RouteInput
		want string
	}{
		{router.RouteInput{Session: router.RouteAuto}, router.RouteAuto},
		{router.RouteInput{Verdict: &router.Verdict{}, Session: router.RoutePrimary}, router.RoutePrimary},
		{router.RouteInput{Session: router.RoutePrimary, Local: router.RouteAuto}, router.RouteAuto},
		{router.RouteInput{Verdict: hint, Session: router.RoutePrimary, Local: router.RoutePrimary}, router.RouteReplica},
		{router.RouteInput{Verdict: hint, Override: router.RoutePrimary}, router.RouteReplica}, // the hook's answer is no request
	} {
		require.Equal(t, tc.want, tc.in.Requested(), "%+v", tc.in)
	}
}

func TestVerdictPrimaryOnly(t *testing.T) {
	for _, tc := range []struct {
		v    *router.Verdict
		want bool
	}{
		{nil, true},
		{&router.Verdict{}, false},
		{&router.Verdict{Write: true}, true},
		{&router.Verdict{Write: true, SessionOnly: true}, true},
		{&router.Verdict{Begin: true}, true},
		{&router.Verdict{Begin: true, ReadOnly: true}, false},
		{&router.Verdict{ReadOnly: true}, false},
		{&router.Verdict{End: true}, true},
		{&router.Verdict{Funcs: []string{"f"}}, false},
	} {
		require.Equal(t, tc.want, tc.v.PrimaryOnly(), "%+v", tc.v)
	}
}

// TestDecideClassified routes real statements through the classifier.
func TestDecideClassified(t *testing.T) {
	cl := router.NewClassifier(0)
	for _, tc := range []struct {
		sql    string
		target router.Target
	}{
		{"SELECT 1", router.TargetReplica},
		{"INSERT INTO t VALUES (1)", router.TargetPrimary},
		{"BEGIN", router.TargetPrimary},
		{"BEGIN READ ONLY", router.TargetReplica},
		{"COMMIT", router.TargetPrimary},
		{"/* cmpool:replica */ UPDATE t SET a = 1", router.TargetReplica},
		{"/* cmpool:primary */ SELECT 1", router.TargetPrimary},
	} {
		d := router.Decide(router.RouteInput{Verdict: cl.Classify(tc.sql), Session: router.RouteAuto})
		require.Equal(t, tc.target, d.Target, tc.sql)
	}
}

func TestScopeKey(t *testing.T) {
	for _, tc := range []struct {
		name, mode string
		same, diff [2][3]string // two clients (addr, database, user) that share, and two that do not
	}{
		{"user", router.ConsistencyUser,
			[2][3]string{{"10.0.0.1", "app", "api"}, {"10.0.0.2", "app", "api"}},
			[2][3]string{{"10.0.0.1", "app", "api"}, {"10.0.0.1", "app", "batch"}}},
		{"origin", router.ConsistencyOrigin,
			[2][3]string{{"10.0.0.1", "app", "api"}, {"10.0.0.1", "app", "api"}},
			[2][3]string{{"10.0.0.1", "app", "api"}, {"10.0.0.2", "app", "api"}}},
		{"global", router.ConsistencyGlobal,
			[2][3]string{{"10.0.0.1", "app", "api"}, {"10.0.0.2", "other", "batch"}},
			[2][3]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := func(c [3]string) string { return router.ScopeKey(tc.mode, c[0], c[1], c[2]) }
			require.NotEmpty(t, key(tc.same[0]))
			require.Equal(t, key(tc.same[0]), key(tc.same[1]))
			if tc.diff[0][2] != "" {
				require.NotEqual(t, key(tc.diff[0]), key(tc.diff[1]))
			}
		})
	}
	// A separator that cannot appear in a name keeps ("ab", "c") and ("a", "bc") apart.
	require.NotEqual(t, router.ScopeKey(router.ConsistencyUser, "", "ab", "c"), router.ScopeKey(router.ConsistencyUser, "", "a", "bc"))
	for _, mode := range []string{router.ConsistencySession, router.ConsistencyEventual, "bogus"} {
		require.Empty(t, router.ScopeKey(mode, "10.0.0.1", "app", "api"), mode)
	}
}

func TestCanArrive(t *testing.T) {
	for _, tc := range []struct {
		name                      string
		target, flushed, received router.LSN
		want                      bool
	}{
		{"flushed on the primary", 100, 100, 0, true},
		{"flushed past it", 100, 200, 50, true},
		{"not flushed, not received: synchronous_commit = off", 100, 90, 90, false},
		{"not flushed when read, received since", 100, 90, 100, true},
		{"flush position not read yet", 100, 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, router.CanArrive(tc.target, tc.flushed, tc.received))
		})
	}
}
