package pgmock

import (
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
)

// describe renders a message for failure messages: its type and its fields as JSON.
func describe(m any) string {
	if m == nil {
		return "nothing"
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Sprintf("%T %+v", m, m)
	}
	return fmt.Sprintf("%T %s", m, b)
}

// Expect expects want exactly: the same type, encoding to the same bytes.
func Expect(want pgproto3.FrontendMessage) Step {
	wantBytes, err := want.Encode(nil)
	if err != nil {
		panic("pgmock: Expect of a message that does not encode: " + err.Error())
	}
	return func(c *Conn) error {
		got, err := c.Receive()
		if err != nil {
			return fmt.Errorf("expected %s, got error: %w", describe(want), err)
		}
		gotBytes, err := got.Encode(nil)
		if err != nil || string(gotBytes) != string(wantBytes) {
			return fmt.Errorf("expected %s, got %s", describe(want), describe(got))
		}
		return nil
	}
}

// ExpectType expects a message of the same type as proto, whatever its content.
func ExpectType(proto pgproto3.FrontendMessage) Step {
	return func(c *Conn) error {
		got, err := c.Receive()
		if err != nil {
			return fmt.Errorf("expected a %T, got error: %w", proto, err)
		}
		if fmt.Sprintf("%T", got) != fmt.Sprintf("%T", proto) {
			return fmt.Errorf("expected a %T, got %s", proto, describe(got))
		}
		return nil
	}
}

// ExpectMatch expects a message that check accepts; what describes the message wanted, and
// check's error says why one is not.
func ExpectMatch(what string, check func(pgproto3.FrontendMessage) error) Step {
	return func(c *Conn) error {
		got, err := c.Receive()
		if err != nil {
			return fmt.Errorf("expected %s, got error: %w", what, err)
		}
		if err := check(got); err != nil {
			return fmt.Errorf("expected %s, got %s: %v", what, describe(got), err)
		}
		return nil
	}
}

// ExpectQuery expects a simple Query of exactly sql.
func ExpectQuery(sql string) Step { return Expect(&pgproto3.Query{String: sql}) }

// Send sends msgs.
func Send(msgs ...pgproto3.BackendMessage) Step {
	return func(c *Conn) error { return c.Send(msgs...) }
}

// Do runs f on the connection, for what the other steps do not say (waiting, checking
// state outside the connection).
func Do(f func(*Conn) error) Step { return f }

// CloseConn closes the connection.
func CloseConn() Step { return func(c *Conn) error { return c.Close() } }

// Reply returns the messages of a simple query's whole answer: RowDescription (text
// columns), DataRows, CommandComplete and ReadyForQuery with status.
func Reply(columns []string, rows [][]string, tag string, status byte) []pgproto3.BackendMessage {
	var out []pgproto3.BackendMessage
	if columns != nil {
		out = append(out, RowDescription(columns...))
	}
	for _, r := range rows {
		out = append(out, DataRow(r...))
	}
	return append(out, &pgproto3.CommandComplete{CommandTag: []byte(tag)}, &pgproto3.ReadyForQuery{TxStatus: status})
}

// RowDescription describes text columns.
func RowDescription(columns ...string) *pgproto3.RowDescription {
	rd := &pgproto3.RowDescription{}
	for _, col := range columns {
		rd.Fields = append(rd.Fields, pgproto3.FieldDescription{Name: []byte(col), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1})
	}
	return rd
}

// DataRow is a row of text values.
func DataRow(values ...string) *pgproto3.DataRow {
	dr := &pgproto3.DataRow{}
	for _, v := range values {
		dr.Values = append(dr.Values, []byte(v))
	}
	return dr
}

// Error is an ErrorResponse of severity ERROR.
func Error(code, message string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: message}
}
