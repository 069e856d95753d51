package pool_test

import (
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"
)

// TestIdleClientsHoldNoBuffers: clients that have logged in and run a query, and are now
// idle, hold no read or write buffer in cmpool. With both 8 KiB buffers held, the heap grew
// by about 19 KiB per client; without them it grows by about 3 KiB.
func TestIdleClientsHoldNoBuffers(t *testing.T) {
	addr := relayProxy(t)
	startup, err := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "bench", "database": "bench"}}).Encode(nil)
	require.NoError(t, err)
	query, err := (&pgproto3.Query{String: "select 1"}).Encode(nil)
	require.NoError(t, err)
	scratch := make([]byte, 64<<10)
	// untilReady reads conn's messages up to ReadyForQuery, into scratch, so that the
	// clients themselves keep no buffer.
	untilReady := func(conn net.Conn) {
		for {
			hdr := scratch[:5]
			_, err := io.ReadFull(conn, hdr)
			require.NoError(t, err)
			typ, n := hdr[0], int(binary.BigEndian.Uint32(hdr[1:]))-4
			require.NotEqual(t, byte('E'), typ, "ErrorResponse")
			_, err = io.ReadFull(conn, scratch[:n])
			require.NoError(t, err)
			if typ == 'Z' {
				return
			}
		}
	}
	open := func() net.Conn {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		_, err = conn.Write(startup)
		require.NoError(t, err)
		untilReady(conn)
		_, err = conn.Write(query)
		require.NoError(t, err)
		untilReady(conn)
		return conn
	}
	heap := func() uint64 {
		time.Sleep(100 * time.Millisecond) // the last replies' writers are flushed and the reads waiting
		runtime.GC()
		runtime.GC() // free buffers leave their pools after two collections
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	open() // the server connection and the first client's one-time allocations
	before := heap()
	const n = 400
	for range n {
		open()
	}
	after := heap()
	perClient := float64(int64(after)-int64(before)) / n
	t.Logf("heap per idle client: %.0f bytes", perClient)
	require.Less(t, perClient, 8.0*1024, "an idle client holds a buffer")
}
