package pool

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cmlite/cmpool/protocol"
)

// serverConn is one server connection taken over from pgconn after login. Only the
// goroutine that holds it (through the pool) touches it, except for the relay goroutine,
// which owns the reader while a lease is active.
type serverConn struct {
	conn      net.Conn
	r         *bufio.Reader
	fr        *protocol.FrameReader
	w         *bufio.Writer
	pid       uint32
	secretKey []byte
	// defaults are the parameter values the server reported at login.
	defaults map[string]string
	// set holds the parameters changed since login, with their current values.
	set map[string]string
	// configuredFor and configuredVersion record the client session (by id) whose
	// parameters were last applied, so a client that gets the same server back skips the
	// comparison; 0 is none.
	configuredFor     uint64
	configuredVersion uint64
	txStatus          byte
	createdAt         time.Time
	// prepared is what this server has prepared of cmpool's shared statements.
	prepared *stmtLRU
	// unnamedOwner is the client (by id) whose unnamed statement (of generation
	// unnamedGen) the server holds, or 0.
	unnamedOwner uint64
	unnamedGen   uint64
	// linked is the id of the client holding this server now, or 0 (for SHOW SERVERS).
	linked atomic.Uint64
	// cancels counts cancel requests in flight to this server's backend: while one is,
	// the server is not lent again (cancel.go).
	cancels cancelCount
	// unnamedSettings: code run by configuredFor may have set custom placeholders cmpool
	// could not name; RESET ALL clears them before another client's settings are applied.
	unnamedSettings bool
}

const serverBufSize = 32 * 1024

// connectServer opens a server connection with pgconn (so TLS and server auth come from
// pgx) and takes the socket over. This is the only file that uses Hijack.
func connectServer(ctx context.Context, cfg *pgconn.Config) (*serverConn, error) {
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
	_ = hc.Conn.SetDeadline(time.Time{})
	fio := fastIO(hc.Conn)
	r := bufio.NewReaderSize(fio, serverBufSize)
	sc := &serverConn{
		conn:      hc.Conn,
		r:         r,
		fr:        protocol.NewFrameReader(r, 0),
		w:         bufio.NewWriterSize(fio, serverBufSize),
		pid:       hc.PID,
		secretKey: hc.SecretKey,
		defaults:  hc.ParameterStatuses,
		set:       make(map[string]string),
		txStatus:  hc.TxStatus,
		createdAt: time.Now(),
	}
	return sc, nil
}

func (sc *serverConn) close() error { return sc.conn.Close() }

// param returns the server's current value of a parameter as far as cmpool knows.
func (sc *serverConn) param(name string) (string, bool) {
	if v, ok := sc.set[name]; ok {
		return v, true
	}
	v, ok := sc.defaults[name]
	return v, ok
}

// noteParameterStatus records a ParameterStatus the server sent.
func (sc *serverConn) noteParameterStatus(name, value string) {
	if serverOnlyParams[name] {
		sc.defaults[name] = value // a fact about the server, not a setting to reset
		return
	}
	if d, ok := sc.defaults[name]; ok && d == value {
		delete(sc.set, name)
		return
	}
	sc.set[name] = value
}

// alive reports whether an idle server connection still looks usable: nothing is waiting
// to be read and the peer has not closed it. It never blocks.
func (sc *serverConn) alive() bool {
	if sc.r.Buffered() > 0 {
		return false
	}
	_ = sc.conn.SetReadDeadline(time.Now().Add(-time.Second))
	_, err := sc.r.Peek(1)
	_ = sc.conn.SetReadDeadline(time.Time{})
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// execResult is what a proxy-issued simple query returned.
type execResult struct {
	// reported are ParameterStatus messages seen, in order.
	reported [][2]string
	// err is the first ErrorResponse, if any.
	err *pgconn.PgError
	// row is the first data row, if any.
	row []string
}

// exec runs a simple query that cmpool itself issues and reads until ReadyForQuery. Row
// data is discarded. A returned error means the connection is unusable. A simple query
// destroys the server's unnamed statement, so no client owns it afterwards.
func (sc *serverConn) exec(ctx context.Context, sql string) (execResult, error) {
	var res execResult
	sc.unnamedOwner = 0
	if d, ok := ctx.Deadline(); ok {
		_ = sc.conn.SetDeadline(d)
		defer sc.conn.SetDeadline(time.Time{})
	}
	q := pgproto3.Query{String: sql}
	buf, err := q.Encode(nil)
	if err != nil {
		return res, err
	}
	if _, err := sc.w.Write(buf); err != nil {
		return res, err
	}
	if err := sc.w.Flush(); err != nil {
		return res, err
	}
	for {
		fr, err := sc.fr.Next()
		if err != nil {
			return res, err
		}
		switch fr.Type {
		case 'Z':
			body, err := sc.fr.Body()
			if err != nil {
				return res, err
			}
			if len(body) != 1 {
				return res, errors.New("pool: malformed ReadyForQuery from server")
			}
			sc.txStatus = body[0]
			return res, nil
		case 'S':
			body, err := sc.fr.Body()
			if err != nil {
				return res, err
			}
			name, value, ok := protocol.ParseParameterStatus(body)
			if !ok {
				return res, errors.New("pool: malformed ParameterStatus from server")
			}
			sc.noteParameterStatus(name, value)
			res.reported = append(res.reported, [2]string{name, value})
		case 'E':
			body, err := sc.fr.Body()
			if err != nil {
				return res, err
			}
			if res.err == nil {
				var er pgproto3.ErrorResponse
				if err := er.Decode(body); err != nil {
					return res, err
				}
				res.err = pgconn.ErrorResponseToPgError(&er)
			}
		case 'D':
			body, err := sc.fr.Body()
			if err != nil {
				return res, err
			}
			if res.row == nil {
				if res.row, err = protocol.DecodeDataRow(body); err != nil {
					return res, err
				}
			}
		case 'G', 'W':
			// A COPY FROM STDIN cmpool never asked for: refuse it.
			if err := sc.fr.Skip(); err != nil {
				return res, err
			}
			fail := pgproto3.CopyFail{Message: "cmpool: unexpected COPY"}
			b, _ := fail.Encode(nil)
			if _, err := sc.w.Write(b); err != nil {
				return res, err
			}
			if err := sc.w.Flush(); err != nil {
				return res, err
			}
		default:
			if err := sc.fr.Skip(); err != nil {
				return res, err
			}
		}
	}
}
