package lease

import (
	"context"
	"fmt"

	"github.com/cmlite/cmpool/pool/internal/session"
	"github.com/cmlite/cmpool/protocol"
	"github.com/cmlite/cmpool/router"
)

// TempObjectOf returns the temporary object query q creates that could outlive its
// transaction (see router.TempObject), or "". Only a text that mentions "temp" is parsed.
func TempObjectOf[T string | []byte](q T) string {
	if !router.ContainsFold(q, "temp") {
		return ""
	}
	return router.TempObject(string(q))
}

// RefuseTempObject is the error for creating a temporary object in mode, when it is not
// session mode.
func (m Mode) RefuseTempObject(what string) *protocol.Error {
	pe := protocol.NewError(protocol.CodeFeatureNotSupported,
		fmt.Sprintf("cannot create %s in %s pooling mode: temporary objects do not outlive the transaction, and later statements naming it would reach another object", what, m))
	pe.Hint = "create temporary tables ON COMMIT DROP (or drop them in the same query string), or use pool_mode = session"
	return pe
}

// dropTempObjects runs before a server whose transaction mentioned temporary objects goes
// back to the pool: if the server holds any (created where the grammar could not see, as
// in a DO block), it is reset, so that they reach no other client. It reports whether the
// server is usable.
func (l *Lease) dropTempObjects() bool {
	c := l.c
	timeout := c.Host.Config().ServerConnectTimeout
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	res, err := l.sc.Exec(ctx, session.TempObjectsQuery)
	cancel()
	if err != nil || res.Err != nil || l.sc.TxStatus != 'I' || len(res.Row) != 1 {
		return false
	}
	if res.Row[0] != "t" {
		return true
	}
	c.Log.Warn("a transaction left temporary objects on a server; resetting it", "pool_mode", c.Mode)
	return resetServer(l.sc, timeout)
}
