package pool

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/router"
)

// TestRoutingSetShow: SET and SHOW of cmpool.route and cmpool.min_lsn go through a
// client's routing state, and SET LOCAL lasts until the transaction ends.
func TestRoutingSetShow(t *testing.T) {
	r := &routing{srv: &Server{started: time.Now()}, route: router.RouteAuto}

	require.Nil(t, r.set(&router.Setting{Name: router.ParamRoute, Value: " Replica "}))
	v, perr := r.show(router.ParamRoute)
	require.Nil(t, perr)
	require.Equal(t, router.RouteReplica, v)

	require.Nil(t, r.set(&router.Setting{Name: router.ParamRoute, Value: "primary", Local: true}))
	session, local := r.requested()
	require.Equal(t, router.RouteReplica, session)
	require.Equal(t, router.RoutePrimary, local)

	r.endTransaction(false)
	session, local = r.requested()
	require.Equal(t, router.RouteReplica, session, "the session's route outlives the transaction")
	require.Empty(t, local, "SET LOCAL ends with the transaction")
	require.True(t, r.wroteAt.IsZero(), "no write noted")

	require.Nil(t, r.set(&router.Setting{Name: router.ParamMinLSN, Value: "16/B374D848"}))
	v, perr = r.show(router.ParamMinLSN)
	require.Nil(t, perr)
	require.Equal(t, "16/B374D848", v)

	require.NotNil(t, r.set(&router.Setting{Name: router.ParamRoute, Value: "nowhere"}))
	_, perr = r.show("cmpool.nothing")
	require.NotNil(t, perr)
	require.Equal(t, "42704", perr.Code)
}

// TestRoutingEndTransactionNotesWrite: a transaction that may have written leaves a write
// to resolve, for the client and for the server (consistency = global).
func TestRoutingEndTransactionNotesWrite(t *testing.T) {
	srv := &Server{started: time.Now().Add(-time.Second)}
	r := &routing{srv: srv}
	r.endTransaction(true)
	require.False(t, r.wroteAt.IsZero())
	require.False(t, srv.lastWrite().IsZero(), "the server heard of the write")
}
