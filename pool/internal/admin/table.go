package admin

import (
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Type OIDs of the console's columns, as PgBouncer uses them.
const (
	oidText    = 25
	oidInt4    = 23
	oidInt8    = 20
	oidNumeric = 1700
)

// commandComplete returns a CommandComplete message with tag.
func commandComplete(tag string) []byte {
	b, _ := (&pgproto3.CommandComplete{CommandTag: []byte(tag)}).Encode(nil)
	return b
}

// appendNotice appends a NoticeResponse with msg to dst.
func appendNotice(dst []byte, msg string) []byte {
	b, _ := (&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000", Message: msg}).Encode(nil)
	return append(dst, b...)
}

// column is one column of a console result.
type column struct {
	name string
	oid  uint32
}

// table is a console result being built: rows of text values, nil for NULL.
type table struct {
	cols []column
	rows [][]*string
}

func newTable(cols ...column) *table { return &table{cols: cols} }

// row adds a row; each value is a string, an integer, a time.Time or nil.
func (t *table) row(vals ...any) {
	if len(vals) != len(t.cols) {
		panic(fmt.Sprintf("pool: console row has %d values for %d columns", len(vals), len(t.cols)))
	}
	r := make([]*string, len(vals))
	for i, v := range vals {
		var s string
		switch v := v.(type) {
		case nil:
			continue
		case string:
			s = v
		case int:
			s = strconv.Itoa(v)
		case int64:
			s = strconv.FormatInt(v, 10)
		case uint32:
			s = strconv.FormatUint(uint64(v), 10)
		case uint64:
			s = strconv.FormatUint(v, 10)
		case time.Time:
			s = v.UTC().Format("2006-01-02 15:04:05 MST")
		default:
			s = fmt.Sprint(v)
		}
		r[i] = &s
	}
	t.rows = append(t.rows, r)
}

// encode returns RowDescription, the DataRows and CommandComplete with tag.
func (t *table) encode(tag string) []byte {
	fields := make([]pgproto3.FieldDescription, len(t.cols))
	for i, col := range t.cols {
		size := int16(-1)
		switch col.oid {
		case oidInt4:
			size = 4
		case oidInt8:
			size = 8
		}
		fields[i] = pgproto3.FieldDescription{Name: []byte(col.name), DataTypeOID: col.oid, DataTypeSize: size, TypeModifier: -1}
	}
	out, _ := (&pgproto3.RowDescription{Fields: fields}).Encode(nil)
	for _, r := range t.rows {
		vals := make([][]byte, len(r))
		for i, v := range r {
			if v != nil {
				vals[i] = []byte(*v)
			}
		}
		out, _ = (&pgproto3.DataRow{Values: vals}).Encode(out)
	}
	return append(out, commandComplete(tag)...)
}
