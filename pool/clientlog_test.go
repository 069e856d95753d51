package pool

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/lease"
)

func TestClientLogAddsWhoTheClientIs(t *testing.T) {
	var buf bytes.Buffer
	log := newClientLog(slog.NewTextHandler(&buf, nil), "127.0.0.1:5000")
	log.Info("before startup", "k", 1)
	require.Contains(t, buf.String(), `msg="before startup" k=1 client=127.0.0.1:5000`)
	require.NotContains(t, buf.String(), "user=")

	buf.Reset()
	derived := log.With("extra", "x")
	setClientIdent(log, &lease.Client{User: "app", Database: "appdb"})
	derived.Warn("after startup")
	require.Contains(t, buf.String(), `msg="after startup" extra=x client=127.0.0.1:5000 user=app database=appdb`)

	buf.Reset()
	quiet := newClientLog(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}), "a")
	quiet.Info("dropped")
	require.Empty(t, buf.String())
}
