package main

import (
	"bufio"
	"errors"
	"io"
	"maps"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgproto3"
)

// fakePostgres is a PostgreSQL server that does no work: it logs everyone in without a
// password and answers every statement at once, with one row of one column for a query and
// the usual command tag for anything else. It knows what it must to carry pgbench's
// workloads, in the simple, extended and prepared query modes, and the statements the
// proxies send of their own (settings, DISCARD ALL): the transaction status follows BEGIN,
// COMMIT and ROLLBACK, and prepared statements and portals are remembered by name. With it
// the benchmark measures the proxies alone, without PostgreSQL's own CPU: -backend fake.
type fakePostgres struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// startFakePostgres listens on a loopback port and serves until stop.
func startFakePostgres() (*fakePostgres, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &fakePostgres{ln: ln, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

// port is the port the fake server listens on.
func (f *fakePostgres) port() int { return f.ln.Addr().(*net.TCPAddr).Port }

// stop closes the listener and every connection, and waits for their goroutines.
func (f *fakePostgres) stop() {
	_ = f.ln.Close()
	f.mu.Lock()
	for c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *fakePostgres) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns[c] = struct{}{}
		f.mu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			_ = serveFakeConn(c)
			_ = c.Close()
			f.mu.Lock()
			delete(f.conns, c)
			f.mu.Unlock()
		}()
	}
}

// fakeSession is one connection's state.
type fakeSession struct {
	be      *pgproto3.Backend
	conn    net.Conn
	tx      byte              // transaction status: 'I', 'T' or 'E'
	stmts   map[string]string // prepared statement name -> query text
	portals map[string]fakePortal
	failed  bool              // an extended-protocol message failed: skip to Sync
	params  map[string]string // the reported parameters (ParameterStatus) and their values
	initial map[string]string // their values at login, what RESET ALL returns to
}

// serveFakeConn serves one connection until the client leaves.
func serveFakeConn(c net.Conn) error {
	s := &fakeSession{be: pgproto3.NewBackend(bufio.NewReaderSize(c, 16<<10), c), conn: c, tx: 'I',
		stmts: map[string]string{}, portals: map[string]fakePortal{}}
	if err := s.startup(); err != nil {
		return err
	}
	for {
		msg, err := s.be.Receive()
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.Query:
			s.query(m.String)
			s.send(&pgproto3.ReadyForQuery{TxStatus: s.tx})
			if err := s.be.Flush(); err != nil {
				return err
			}
		case *pgproto3.Parse:
			if !s.failed {
				s.stmts[m.Name] = m.Query
				s.send(&pgproto3.ParseComplete{})
			}
		case *pgproto3.Bind:
			if !s.failed {
				q, ok := s.stmts[m.PreparedStatement]
				if !ok {
					s.fail("26000", "prepared statement \""+m.PreparedStatement+"\" does not exist")
					continue
				}
				binary := len(m.ResultFormatCodes) > 0 && m.ResultFormatCodes[0] == 1
				s.portals[m.DestinationPortal] = fakePortal{query: q, binary: binary}
				s.send(&pgproto3.BindComplete{})
			}
		case *pgproto3.Describe:
			if !s.failed {
				s.describe(m)
			}
		case *pgproto3.Execute:
			if !s.failed {
				p, ok := s.portals[m.Portal]
				if !ok {
					s.fail("34000", "portal \""+m.Portal+"\" does not exist")
					continue
				}
				s.execute(p.query, false, p.binary)
			}
		case *pgproto3.Close:
			if !s.failed {
				if m.ObjectType == 'S' {
					delete(s.stmts, m.Name)
				} else {
					delete(s.portals, m.Name)
				}
				s.send(&pgproto3.CloseComplete{})
			}
		case *pgproto3.Sync:
			s.failed = false
			delete(s.portals, "")
			s.send(&pgproto3.ReadyForQuery{TxStatus: s.tx})
			if err := s.be.Flush(); err != nil {
				return err
			}
		case *pgproto3.Flush:
			if err := s.be.Flush(); err != nil {
				return err
			}
		case *pgproto3.Terminate:
			return nil
		default:
			s.send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "0A000", Message: "the fake server does not support this message"})
			_ = s.be.Flush()
			return errors.New("unsupported message")
		}
	}
}

// startup answers SSL and GSS requests with N, ignores a cancel request, and logs the
// client in at its StartupMessage.
func (s *fakeSession) startup() error {
	for {
		msg, err := s.be.ReceiveStartupMessage()
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			if _, err := s.conn.Write([]byte{'N'}); err != nil {
				return err
			}
		case *pgproto3.CancelRequest:
			return io.EOF
		case *pgproto3.StartupMessage:
			s.send(&pgproto3.AuthenticationOk{})
			params := map[string]string{
				"server_version": "15.0 (fake)", "server_encoding": "UTF8", "client_encoding": "UTF8",
				"DateStyle": "ISO, MDY", "TimeZone": "UTC", "IntervalStyle": "postgres", "integer_datetimes": "on",
				"standard_conforming_strings": "on", "is_superuser": "on", "session_authorization": m.Parameters["user"],
				"application_name": m.Parameters["application_name"],
			}
			for k, v := range params {
				s.send(&pgproto3.ParameterStatus{Name: k, Value: v})
			}
			s.params, s.initial = params, maps.Clone(params)
			s.send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}})
			s.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			return s.be.Flush()
		default:
			return errors.New("unexpected startup message")
		}
	}
}

// send buffers a message; nothing can fail before the flush.
func (s *fakeSession) send(m pgproto3.BackendMessage) { s.be.Send(m) }

// fail answers an extended-protocol message with an error, and skips to the next Sync.
func (s *fakeSession) fail(code, message string) {
	s.send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: code, Message: message})
	s.failed = true
	if s.tx == 'T' {
		s.tx = 'E'
	}
}

// query answers a simple query: each statement of it in turn.
func (s *fakeSession) query(q string) {
	sent := false
	for _, stmt := range strings.Split(q, ";") {
		if strings.TrimSpace(stmt) != "" {
			s.execute(stmt, true, false)
			sent = true
		}
	}
	if !sent {
		s.send(&pgproto3.EmptyQueryResponse{})
	}
}

// describe answers a Describe of a statement or a portal.
func (s *fakeSession) describe(m *pgproto3.Describe) {
	var p fakePortal
	var ok bool
	if m.ObjectType == 'S' {
		p.query, ok = s.stmts[m.Name]
		if ok {
			s.send(&pgproto3.ParameterDescription{ParameterOIDs: make([]uint32, strings.Count(p.query, "$"))})
		}
	} else {
		p, ok = s.portals[m.Name]
	}
	if !ok {
		s.fail("26000", "no such statement or portal \""+m.Name+"\"")
		return
	}
	switch {
	case !returnsRows(p.query):
		s.send(&pgproto3.NoData{})
	case p.binary:
		s.send(fakeRowDescriptionBinary)
	default:
		s.send(fakeRowDescription)
	}
}

// fakePortal is a bound statement: its query text, and whether its rows are asked for in
// binary.
type fakePortal struct {
	query  string
	binary bool
}

// fakeRowDescription describes the one int4 column every query returns, in text, and
// fakeRowDescriptionBinary in binary.
var (
	fakeRowDescription = &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		{Name: []byte("abalance"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1},
	}}
	fakeRowDescriptionBinary = &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		{Name: []byte("abalance"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1, Format: 1},
	}}
)

// fakePartitionsDescription describes the answer to pgbench's question about partitions.
var fakePartitionsDescription = &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
	{Name: []byte("n"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1},
	{Name: []byte("partstrat"), DataTypeOID: 18, DataTypeSize: 1, TypeModifier: -1},
	{Name: []byte("count"), DataTypeOID: 20, DataTypeSize: 8, TypeModifier: -1},
}}

// The one value every query returns, 1, in text and in binary.
var fakeValueText, fakeValueBinary = []byte("1"), []byte{0, 0, 0, 1}

// execute runs one statement: simple is true in a simple query, where rows come with their
// description; binary asks for the value in binary.
func (s *fakeSession) execute(q string, simple, binary bool) {
	word := strings.ToUpper(firstWord(q))
	if s.tx == 'E' && word != "ROLLBACK" && word != "ABORT" && word != "COMMIT" && word != "END" {
		s.send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: "25P02", Message: "current transaction is aborted"})
		return
	}
	s.reportSettings(q, word)
	if returnsRows(q) {
		if simple {
			s.send(fakeRowDescription)
		}
		if strings.Contains(q, "partstrat") {
			// pgbench asks, at its start, whether pgbench_accounts is partitioned: it is
			// not (a NULL method, no partitions).
			if simple {
				s.send(fakePartitionsDescription)
			}
			s.send(&pgproto3.DataRow{Values: [][]byte{[]byte("1"), nil, []byte("0")}})
			s.send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
			return
		}
		v := fakeValueText
		if binary {
			v = fakeValueBinary
		}
		s.send(&pgproto3.DataRow{Values: [][]byte{v}})
		s.send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
		return
	}
	tag := word
	switch word {
	case "BEGIN", "START":
		tag, s.tx = "BEGIN", 'T'
	case "COMMIT", "END":
		tag = "COMMIT"
		if s.tx == 'E' {
			tag = "ROLLBACK"
		}
		s.tx = 'I'
	case "ROLLBACK", "ABORT":
		tag, s.tx = "ROLLBACK", 'I'
	case "UPDATE", "DELETE":
		tag += " 1"
	case "INSERT":
		tag = "INSERT 0 1"
	case "DISCARD":
		tag = "DISCARD ALL"
	}
	s.send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
}

// setConfig matches a set_config call with a literal name and value (or NULL), as the
// proxies apply a client's settings.
var setConfig = regexp.MustCompile(`(?i)set_config\(\s*'((?:[^']|'')*)'\s*,\s*(NULL|'((?:[^']|'')*)')\s*,\s*false\s*\)`)

// reportSettings reports, as PostgreSQL does, the reported parameters statement q changes
// (word is its first word, upper case): SET, set_config calls, RESET ALL and DISCARD
// ALL. A proxy learns from them that the server now holds the client's values.
func (s *fakeSession) reportSettings(q, word string) {
	if (word == "RESET" || word == "DISCARD") && strings.EqualFold(strings.Join(strings.Fields(q), " "), word+" ALL") {
		for k, v := range s.initial {
			if s.params[k] != v {
				s.params[k] = v
				s.send(&pgproto3.ParameterStatus{Name: k, Value: v})
			}
		}
		return
	}
	if word == "SET" {
		if m := setStatement.FindStringSubmatch(q); m != nil {
			v := strings.Trim(m[2], "'")
			if strings.HasPrefix(m[2], "'") {
				v = strings.ReplaceAll(v, "''", "'")
			}
			s.setReported(strings.Trim(m[1], `"`), v, !strings.HasPrefix(m[2], "'") && strings.EqualFold(v, "DEFAULT"))
		}
		return
	}
	if word != "SELECT" || !strings.Contains(q, "set_config") && !strings.Contains(q, "SET_CONFIG") {
		return // no regular expression for every query: the fake server must stay cheap
	}
	for _, m := range setConfig.FindAllStringSubmatch(q, -1) {
		s.setReported(strings.ReplaceAll(m[1], "''", "'"), strings.ReplaceAll(m[3], "''", "'"), strings.EqualFold(m[2], "NULL"))
	}
}

// setStatement matches SET [SESSION] name {=|TO} value.
var setStatement = regexp.MustCompile(`(?is)^\s*SET\s+(?:SESSION\s+)?("?[\w.]+"?)\s*(?:=|\bTO\b)\s*('(?:[^']|'')*'|\S+)\s*$`)

// setReported gives reported parameter name (any case) value, or its login value when
// reset, and reports it; other parameters are not reported.
func (s *fakeSession) setReported(name, value string, reset bool) {
	for k := range s.params {
		if !strings.EqualFold(k, name) {
			continue
		}
		if reset {
			value = s.initial[k]
		}
		s.params[k] = value
		s.send(&pgproto3.ParameterStatus{Name: k, Value: value})
	}
}

// returnsRows reports whether statement q returns rows: a SELECT, SHOW, VALUES, WITH or a
// statement with RETURNING.
func returnsRows(q string) bool {
	switch strings.ToUpper(firstWord(q)) {
	case "SELECT", "SHOW", "VALUES", "WITH", "TABLE":
		return true
	}
	return strings.Contains(strings.ToUpper(q), "RETURNING")
}

// firstWord is the first word of q, past spaces and parentheses.
func firstWord(q string) string {
	q = strings.TrimLeft(q, " \t\r\n(")
	end := strings.IndexAny(q, " \t\r\n(;")
	if end < 0 {
		return q
	}
	return q[:end]
}

// fakeVersion stands for the server version in the report of a -backend fake run.
const fakeVersion = "fake"

// fakeURL is the URL of database db on the fake server on port.
func fakeURL(port int, db string) string {
	return "postgres://postgres@127.0.0.1:" + strconv.Itoa(port) + "/" + db + "?sslmode=disable"
}
