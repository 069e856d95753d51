// Package backend is cmpool's side of a PostgreSQL server: one server connection (Conn),
// its login (Connect, and the pass-through login with what a client proved), the cancel
// requests sent to it, and the pools of connections to one server (Pool).
package backend

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/pool/internal/fastio"
	"github.com/cmlite/cmpool/pool/internal/reactor"
	"github.com/cmlite/cmpool/pool/internal/session"
	"github.com/cmlite/cmpool/pool/internal/stmt"
	"github.com/cmlite/cmpool/protocol"
)

// Conn is one server connection taken over from pgconn after login. Only the goroutine
// that holds it (through the pool) touches it, except for the relay goroutine, which owns
// the reader while a lease is active, and Linked, Cancels and Prepared.Len, which any
// goroutine may read.
type Conn struct {
	// NetConn is the socket (TLS included), for deadlines, addresses and Close.
	NetConn net.Conn
	r       *bufio.Reader
	// Frames reads the server's messages; Writer buffers what is sent to it. The
	// relay owns Frames while a lease is active; the holder serializes writes to Writer.
	Frames *protocol.FrameReader
	Writer *bufio.Writer
	fio    io.ReadWriter // what r and Writer do their I/O through
	// PID and secretKey are the server's BackendKeyData, for cancel requests.
	PID       uint32
	secretKey []byte
	// Defaults are the parameter values the server reported at login.
	Defaults map[string]string
	// Set holds the parameters changed since login, with their current values.
	Set map[string]string
	// ConfiguredFor and ConfiguredVersion record the client session (by id) whose
	// parameters were last applied, so a client that gets the same server back skips the
	// comparison; 0 is none.
	ConfiguredFor     uint64
	ConfiguredVersion uint64
	// TxStatus is the status of the server's last ReadyForQuery.
	TxStatus byte
	// CreatedAt is when the connection logged in.
	CreatedAt time.Time
	// Prepared is what this server has prepared of cmpool's shared statements, and whose
	// unnamed statement it holds (by client id).
	Prepared *stmt.Prepared
	// Linked is the id of the client holding this server now, or 0 (for SHOW SERVERS).
	Linked atomic.Uint64
	// Cancels counts cancel requests in flight to this server's backend: while one is,
	// the server is not lent again (cancel.go).
	Cancels CancelCount
	// UnnamedSettings: code run by ConfiguredFor may have set custom placeholders cmpool
	// could not name; RESET ALL clears them before another client's settings are applied.
	UnnamedSettings bool

	// EP is the socket in the event loops (pool/internal/reactor), once a lease waited
	// there for the server's reply; fd is its descriptor, -1 when it cannot be (TLS).
	EP reactor.Endpoint
	fd int
	// blockHook, when set, is called before a read or write of the socket waits: the
	// holder's client may be running on an event loop, which must not wait.
	blockHook atomic.Pointer[func()]
}

// takeOver makes conn, logged in, the connection's socket: its reader, writer and, for a
// plain TCP or Unix socket, its raw I/O watched for the event loops.
func (sc *Conn) takeOver(conn net.Conn) {
	_ = conn.SetDeadline(time.Time{})
	fio := fastio.New(conn)
	sc.fd = -1
	if fastio.Watch(fio, sc) {
		sc.fd = fastio.FD(conn)
	}
	sc.fio = fio
	r := bufio.NewReaderSize(fio, serverBufSize)
	sc.NetConn, sc.r = &wakeNet{Conn: conn, sc: sc}, r
	sc.Frames = protocol.NewFrameReader(r, 0)
	sc.Writer = bufio.NewWriterSize(fio, serverBufSize)
}

// FlushAwaitingReply flushes Writer, a request whose reply the caller reads next on this
// goroutine, and waits until the reply can be read, so that the read finds it; held, which
// the caller holds over Writer, is unlocked once Writer is flushed. See
// fastio.FlushAwaitingReply for where it must not be used.
func (sc *Conn) FlushAwaitingReply(held *sync.Mutex) error {
	return fastio.FlushAwaitingReply(sc.Writer, sc.fio, held)
}

// FD is the socket's descriptor for the event loops, or -1.
func (sc *Conn) FD() int { return sc.fd }

// SetBlockHook makes h (nil for none) what a read or write that is about to wait calls.
func (sc *Conn) SetBlockHook(h *func()) { sc.blockHook.Store(h) }

// ReadStart, ReadDone and WillBlock watch the socket's raw I/O (fastio.Watcher).
func (sc *Conn) ReadStart()            { sc.EP.ReadStart() }
func (sc *Conn) ReadDone(drained bool) { sc.EP.ReadDone(drained) }
func (sc *Conn) WillBlock() {
	if h := sc.blockHook.Load(); h != nil {
		(*h)()
	}
}

// wakeNet is the server socket as cmpool uses it: a deadline set on it, or its close,
// first wakes a lease suspended in an event loop waiting for the server, so that its relay
// runs and sees the deadline or the close.
type wakeNet struct {
	net.Conn
	sc *Conn
}

func (w *wakeNet) SetReadDeadline(t time.Time) error {
	err := w.Conn.SetReadDeadline(t)
	w.sc.EP.Wake()
	return err
}

func (w *wakeNet) SetDeadline(t time.Time) error {
	err := w.Conn.SetDeadline(t)
	w.sc.EP.Wake()
	return err
}

// unwrapNet is the socket under a wakeNet.
func unwrapNet(c net.Conn) net.Conn {
	if w, ok := c.(*wakeNet); ok {
		return w.Conn
	}
	return c
}

func (w *wakeNet) Close() error {
	w.sc.EP.Remove() // while the descriptor is valid; it wakes a waiter
	return w.Conn.Close()
}

const serverBufSize = 32 * 1024

// Connect opens a server connection with pgconn (so TLS and server auth come from pgx)
// and takes the socket over. This is the only file that uses Hijack.
func Connect(ctx context.Context, cfg *pgconn.Config) (*Conn, error) {
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pc.SyncConn(ctx); err != nil {
		pc.Close(ctx)
		return nil, err
	}
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return nil, err
	}
	sc := &Conn{
		PID:       hc.PID,
		secretKey: hc.SecretKey,
		Defaults:  hc.ParameterStatuses,
		Set:       make(map[string]string),
		TxStatus:  hc.TxStatus,
		CreatedAt: time.Now(),
	}
	sc.takeOver(hc.Conn)
	return sc, nil
}

// Close closes the socket.
func (sc *Conn) Close() error { return sc.NetConn.Close() }

// Param returns the server's current value of a parameter as far as cmpool knows.
func (sc *Conn) Param(name string) (string, bool) {
	if v, ok := sc.Set[name]; ok {
		return v, true
	}
	v, ok := sc.Defaults[name]
	return v, ok
}

// NoteParameterStatus records a ParameterStatus the server sent.
func (sc *Conn) NoteParameterStatus(name, value string) {
	if session.IsServerOnly(name) {
		sc.Defaults[name] = value // a fact about the server, not a setting to reset
		return
	}
	if d, ok := sc.Defaults[name]; ok && d == value {
		delete(sc.Set, name)
		return
	}
	sc.Set[name] = value
}

// Alive reports whether an idle server connection still looks usable: nothing is waiting
// to be read and the peer has not closed it. It never blocks. An idle server sends nothing
// unprompted, so any byte waiting (a FATAL at shutdown, a TLS alert) or an end of stream
// means the connection is done. The socket is peeked without consuming anything (see
// peekSocket); where that is not possible, a read with a past deadline is the fallback,
// which sees only what reached the buffers before the deadline check.
func (sc *Conn) Alive() bool {
	if sc.r.Buffered() > 0 {
		return false
	}
	if alive, ok := peekSocket(unwrapNet(sc.NetConn)); ok {
		return alive
	}
	_ = sc.NetConn.SetReadDeadline(time.Now().Add(-time.Second))
	_, err := sc.r.Peek(1)
	_ = sc.NetConn.SetReadDeadline(time.Time{})
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// ExecResult is what a proxy-issued simple query returned.
type ExecResult struct {
	// Reported are ParameterStatus messages seen, in order.
	Reported [][2]string
	// Err is the first ErrorResponse, if any.
	Err *pgconn.PgError
	// Row is the first data Row, if any.
	Row []string
}

// Exec runs a simple query that cmpool itself issues and reads until ReadyForQuery. Row
// data is discarded. A returned error means the connection is unusable. A simple query
// destroys the server's unnamed statement, so no client owns it afterwards.
func (sc *Conn) Exec(ctx context.Context, sql string) (ExecResult, error) {
	var res ExecResult
	sc.Prepared.ForgetUnnamed()
	if d, ok := ctx.Deadline(); ok {
		_ = sc.NetConn.SetDeadline(d)
		defer sc.NetConn.SetDeadline(time.Time{})
	}
	q := pgproto3.Query{String: sql}
	buf, err := q.Encode(nil)
	if err != nil {
		return res, err
	}
	if _, err := sc.Writer.Write(buf); err != nil {
		return res, err
	}
	if err := sc.Writer.Flush(); err != nil {
		return res, err
	}
	for {
		fr, err := sc.Frames.Next()
		if err != nil {
			return res, err
		}
		switch fr.Type {
		case 'Z':
			body, err := sc.Frames.Body()
			if err != nil {
				return res, err
			}
			if len(body) != 1 {
				return res, errors.New("pool: malformed ReadyForQuery from server")
			}
			sc.TxStatus = body[0]
			return res, nil
		case 'S':
			body, err := sc.Frames.Body()
			if err != nil {
				return res, err
			}
			name, value, ok := protocol.ParseParameterStatus(body)
			if !ok {
				return res, errors.New("pool: malformed ParameterStatus from server")
			}
			sc.NoteParameterStatus(name, value)
			res.Reported = append(res.Reported, [2]string{name, value})
		case 'E':
			body, err := sc.Frames.Body()
			if err != nil {
				return res, err
			}
			if res.Err == nil {
				var er pgproto3.ErrorResponse
				if err := er.Decode(body); err != nil {
					return res, err
				}
				res.Err = pgconn.ErrorResponseToPgError(&er)
			}
		case 'D':
			body, err := sc.Frames.Body()
			if err != nil {
				return res, err
			}
			if res.Row == nil {
				if res.Row, err = protocol.DecodeDataRow(body); err != nil {
					return res, err
				}
			}
		case 'G', 'W':
			// A COPY FROM STDIN cmpool never asked for: refuse it.
			if err := sc.Frames.Skip(); err != nil {
				return res, err
			}
			fail := pgproto3.CopyFail{Message: "cmpool: unexpected COPY"}
			b, _ := fail.Encode(nil)
			if _, err := sc.Writer.Write(b); err != nil {
				return res, err
			}
			if err := sc.Writer.Flush(); err != nil {
				return res, err
			}
		default:
			if err := sc.Frames.Skip(); err != nil {
				return res, err
			}
		}
	}
}
