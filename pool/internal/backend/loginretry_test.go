package backend

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLoginRetry(t *testing.T) {
	bp := &Pool{loginRetry: 100 * time.Millisecond}
	require.NoError(t, bp.recentLoginFailure())
	bp.noteLoginFailure(context.Canceled)
	require.NoError(t, bp.recentLoginFailure(), "a login given up as the pool closes is no failure")
	refused := errors.New("connection refused")
	bp.noteLoginFailure(refused)
	require.ErrorIs(t, bp.recentLoginFailure(), refused)
	require.Eventually(t, func() bool { return bp.recentLoginFailure() == nil }, 5*time.Second, 10*time.Millisecond)

	off := &Pool{}
	off.noteLoginFailure(refused)
	require.NoError(t, off.recentLoginFailure(), "without server_login_retry every login tries")
}
