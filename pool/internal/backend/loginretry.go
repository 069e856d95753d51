package backend

import (
	"context"
	"errors"
	"time"
)

// loginFailure is the last failed login of a pool (server_login_retry).
type loginFailure struct {
	err error
	at  time.Time
}

// noteLoginFailure records a failed login, unless it failed only because the pool is
// closing.
func (bp *Pool) noteLoginFailure(err error) {
	if bp.loginRetry <= 0 || errors.Is(err, context.Canceled) {
		return
	}
	bp.loginFailure.Store(&loginFailure{err: err, at: time.Now()})
}

// recentLoginFailure returns the error of a login that failed less than loginRetry ago:
// until then, logins fail at once with it, without trying the server again.
func (bp *Pool) recentLoginFailure() error {
	f := bp.loginFailure.Load()
	if f == nil {
		return nil
	}
	if time.Since(f.at) >= bp.loginRetry {
		bp.loginFailure.CompareAndSwap(f, nil)
		return nil
	}
	return f.err
}
