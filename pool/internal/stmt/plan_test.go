package stmt_test

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	settings "github.com/cmlite/cmpool/pool/internal/session"
	"github.com/cmlite/cmpool/pool/internal/stmt"
	"github.com/cmlite/cmpool/protocol"
)

// noTypes is a Parse's parameter-type section with no types, and bindRest the rest of a
// Bind after the statement name with no formats and no values.
var (
	noTypes  = []byte{0, 0}
	bindRest = []byte{0, 0, 0, 0, 0, 0}
)

func parse(name, query string) []byte { return protocol.AppendParse(nil, name, query, noTypes) }
func bind(name string) []byte         { return protocol.AppendBind(nil, nil, name, bindRest) }

// session is one client with its names, planning on the server it holds.
type session struct {
	t        *testing.T
	names    *stmt.Names
	reg      *stmt.Registry
	counters *stmt.Counters
	plan     stmt.Plan
	server   *stmt.Prepared
	seg      uint64
}

func newSession(t *testing.T, reg *stmt.Registry, server *stmt.Prepared) *session {
	return &session{t: t, names: new(stmt.Names), reg: reg, counters: new(stmt.Counters), server: server}
}

func (s *session) scope() stmt.Scope {
	return stmt.Scope{Names: s.names, Server: s.server, Registry: s.reg, Counters: s.counters, Segment: s.seg}
}

// send plans msg and returns what the server gets, one line per message.
func (s *session) send(msg []byte) []string {
	s.t.Helper()
	out, _, err := s.plan.Message(nil, msg, s.scope())
	require.NoError(s.t, err)
	return describe(s.t, out)
}

// describe names each message of b: its type and the statement name it carries.
func describe(t *testing.T, b []byte) []string {
	t.Helper()
	var got []string
	for len(b) > 0 {
		require.GreaterOrEqual(t, len(b), protocol.HeaderLen)
		n := 1 + int(binary.BigEndian.Uint32(b[1:5]))
		typ, body := b[0], b[protocol.HeaderLen:n]
		switch typ {
		case 'P':
			name, query, _, ok := protocol.ParseParse(body)
			require.True(t, ok)
			got = append(got, "Parse "+string(name)+" "+string(query))
		case 'B':
			_, rest, _ := protocol.CString(body)
			name, _, _ := protocol.CString(rest)
			got = append(got, "Bind "+string(name))
		case 'D', 'C':
			name, _, _ := protocol.CString(body[1:])
			kind := map[byte]string{'D': "Describe ", 'C': "Close "}[typ]
			got = append(got, kind+string(body[0])+" "+string(name))
		default:
			got = append(got, string(typ))
		}
		b = b[n:]
	}
	return got
}

// errorResponse is a server's ErrorResponse.
func errorResponse(code, msg string) []byte {
	return protocol.AppendErrorResponse(nil, protocol.NewError(code, msg))
}

func errorOf(t *testing.T, msg []byte) *pgproto3.ErrorResponse {
	t.Helper()
	var er pgproto3.ErrorResponse
	require.Equal(t, byte('E'), msg[0])
	require.NoError(t, er.Decode(msg[protocol.HeaderLen:]))
	return &er
}

var parseComplete = []byte{'1', 0, 0, 0, 4}
var closeComplete = []byte{'3', 0, 0, 0, 4}

func TestPlanMapsNamesToSharedStatements(t *testing.T) {
	reg := stmt.NewRegistry()
	a := newSession(t, reg, stmt.NewPrepared(0))
	require.Equal(t, []string{"Parse cmpool_1 SELECT 1"}, a.send(parse("s1", "SELECT 1")))
	require.True(t, a.plan.ParseComplete(), "the client's own Parse is answered")
	require.Equal(t, []string{"Bind cmpool_1"}, a.send(bind("s1")))
	require.Equal(t, []string{"Describe S cmpool_1"}, a.send(protocol.AppendDescribe(nil, 'S', "s1")))
	require.Equal(t, []string{"Describe P "}, a.send(protocol.AppendDescribe(nil, 'P', "")), "a portal is not mapped")
	require.Equal(t, 1, a.names.Len())

	// Another client preparing the same text under its own name shares the statement:
	// on this server it is there already, so a no-op Close stands in for the Parse.
	b := newSession(t, reg, a.server)
	require.Equal(t, []string{"Close S cmpool_noop"}, b.send(parse("other", "SELECT 1")))
	require.Equal(t, parseComplete, b.plan.CloseComplete(closeComplete), "the stand-in's reply is a ParseComplete")
	require.Equal(t, []string{"Bind cmpool_1"}, b.send(bind("other")))
	require.EqualValues(t, 2, a.counters.ClientParses.Load()+b.counters.ClientParses.Load())
	require.EqualValues(t, 1, a.counters.ServerParses.Load()+b.counters.ServerParses.Load())

	// A name the client never prepared goes unchanged (the server reports 26000), except
	// in cmpool's namespace, which never reaches another client's statement.
	require.Equal(t, []string{"Bind nope"}, b.send(bind("nope")))
	require.Equal(t, []string{"Bind cmpool_noop"}, b.send(bind("cmpool_1")))
}

func TestPlanReplaysOnANewServer(t *testing.T) {
	reg := stmt.NewRegistry()
	a := newSession(t, reg, stmt.NewPrepared(0))
	a.send(parse("s1", "SELECT 1"))
	a.send(parse("", "SELECT 2"))
	a.plan.ParseComplete()
	a.plan.ParseComplete()

	// The next lease is on a server that has neither statement.
	a.plan, a.server = stmt.Plan{}, stmt.NewPrepared(0)
	require.Equal(t, []string{"Parse cmpool_1 SELECT 1", "Bind cmpool_1"}, a.send(bind("s1")))
	require.False(t, a.plan.ParseComplete(), "the replayed Parse's reply is hidden")
	require.Equal(t, []string{"Bind cmpool_1"}, a.send(bind("s1")), "prepared once per server")

	require.Equal(t, []string{"Parse  SELECT 2", "Bind "}, a.send(bind("")))
	require.False(t, a.plan.ParseComplete())
	require.Equal(t, []string{"Describe S "}, a.send(protocol.AppendDescribe(nil, 'S', "")))

	// Another client's unnamed Parse replaces the server's unnamed statement: the first
	// client's is replayed before its next Bind.
	b := newSession(t, reg, a.server)
	require.Equal(t, []string{"Parse  SELECT 3"}, b.send(parse("", "SELECT 3")))
	require.True(t, b.plan.ParseComplete())
	require.Equal(t, []string{"Parse  SELECT 2", "Bind "}, a.send(bind("")))

	// A simple query replaces it too.
	a.server.ForgetUnnamed()
	require.Equal(t, []string{"Parse  SELECT 2", "Bind "}, a.send(bind("")))
}

func TestPlanClosesOnlyTheClientsName(t *testing.T) {
	reg := stmt.NewRegistry()
	a := newSession(t, reg, stmt.NewPrepared(0))
	a.send(parse("s1", "SELECT 1"))
	a.plan.ParseComplete()
	require.Equal(t, []string{"Close S cmpool_noop"}, a.send(protocol.AppendClose(nil, 'S', "s1")))
	require.Equal(t, closeComplete, a.plan.CloseComplete(closeComplete))
	require.Equal(t, 0, a.names.Len())
	require.Equal(t, 1, a.server.Len(), "the server's copy may serve others")
	require.Equal(t, []string{"Bind s1"}, a.send(bind("s1")), "the name is gone")
	require.Equal(t, []string{"Close P p"}, a.send(protocol.AppendClose(nil, 'P', "p")), "a portal's Close goes as is")
}

func TestPlanRewritesTheDuplicateNameError(t *testing.T) {
	reg := stmt.NewRegistry()
	a := newSession(t, reg, stmt.NewPrepared(0))
	a.send(parse("s1", "SELECT 1"))
	a.plan.ParseComplete()
	require.Equal(t, []string{"Parse cmpool_1 SELECT 1"}, a.send(parse("s1", "SELECT 2")))
	got := a.plan.Error(errorResponse("42P05", `prepared statement "cmpool_1" already exists`), a.scope())
	er := errorOf(t, got)
	require.Equal(t, "42P05", er.Code)
	require.Equal(t, `prepared statement "s1" already exists`, er.Message)
	require.Equal(t, []string{"Bind cmpool_1"}, a.send(bind("s1")), "the first statement stands")
	require.Equal(t, 1, a.server.Len())
}

func TestPlanEvictsAndHidesTheClose(t *testing.T) {
	reg := stmt.NewRegistry()
	a := newSession(t, reg, stmt.NewPrepared(1))
	a.send(parse("s1", "SELECT 1"))
	a.plan.ParseComplete()
	require.Equal(t, []string{"Close S cmpool_1", "Parse cmpool_2 SELECT 2"}, a.send(parse("s2", "SELECT 2")))
	require.Nil(t, a.plan.CloseComplete(closeComplete), "the eviction's reply is hidden")
	require.True(t, a.plan.ParseComplete())
	require.Equal(t, 1, a.server.Len())
	// The evicted statement is still the client's: its next use prepares it again.
	require.Equal(t, []string{"Close S cmpool_2", "Parse cmpool_1 SELECT 1", "Bind cmpool_1"}, a.send(bind("s1")))
}

func TestPlanErrorForgetsWhatTheSegmentWouldHaveDone(t *testing.T) {
	reg := stmt.NewRegistry()
	a := newSession(t, reg, stmt.NewPrepared(1))
	a.send(parse("s1", "SELECT 1"))
	a.plan.ParseComplete()
	a.seg++ // a Sync: the next messages are another segment

	// The eviction of cmpool_1 and the Parse of s2 are skipped by the server.
	a.send(parse("s2", "SELEC 2"))
	msg := errorResponse("42601", `syntax error at or near "SELEC"`)
	require.Equal(t, msg, a.plan.Error(msg, a.scope()))
	require.Equal(t, 1, a.names.Len(), "s2 was not prepared")
	require.Equal(t, []string{"Bind s2"}, a.send(bind("s2")))
	require.Equal(t, []string{"Bind cmpool_1"}, a.send(bind("s1")), "the eviction did not happen")
}

func TestPlanRefusal(t *testing.T) {
	reg := stmt.NewRegistry()
	a := newSession(t, reg, stmt.NewPrepared(0))
	refusal := protocol.NewError(protocol.CodeFeatureNotSupported, "cannot create a temporary table here")
	out := a.plan.Refuse(nil, []byte("t"), refusal, a.scope())
	require.Equal(t, []string{"Parse cmpool_refused cmpool_refused"}, describe(t, out))
	got := a.plan.Error(errorResponse("42601", `syntax error at or near "cmpool_refused"`), a.scope())
	er := errorOf(t, got)
	require.Equal(t, protocol.CodeFeatureNotSupported, er.Code)
	require.Equal(t, refusal.Message, er.Message)
	require.Equal(t, 0, a.names.Len())
	require.EqualValues(t, 1, a.counters.ClientParses.Load())
}

func TestPlanRenewsAStalePlan(t *testing.T) {
	reg := stmt.NewRegistry()
	a := newSession(t, reg, stmt.NewPrepared(0))
	a.send(parse("s1", "SELECT * FROM t"))
	a.plan.ParseComplete()
	a.seg++
	a.send(bind("s1"))
	a.plan.Error(errorResponse("0A000", "cached plan must not change result type"), a.scope())
	require.Equal(t, []string{"Parse cmpool_2 SELECT * FROM t", "Bind cmpool_2"}, a.send(bind("s1")),
		"a fresh server-side name is prepared anew")

	// Once the segment is answered, its bound statements are forgotten: a later error
	// renews nothing.
	a.plan.ParseComplete()
	a.seg++
	a.plan.Answered(a.seg)
	a.plan.Error(errorResponse("0A000", "cached plan must not change result type"), a.scope())
	require.Equal(t, []string{"Bind cmpool_2"}, a.send(bind("s1")))
}

func TestPlanMalformed(t *testing.T) {
	a := newSession(t, stmt.NewRegistry(), stmt.NewPrepared(0))
	for _, msg := range [][]byte{
		{'P', 0, 0, 0, 6, 's', 0},
		{'B', 0, 0, 0, 5, 'p'},
		{'D', 0, 0, 0, 5, 'S'},
		{'C', 0, 0, 0, 6, 'S', 'x'},
	} {
		_, _, err := a.plan.Message(nil, msg, a.scope())
		require.ErrorIs(t, err, stmt.ErrMalformed, "%q", msg)
	}
}

func TestNamesDeferredParses(t *testing.T) {
	reg := stmt.NewRegistry()
	var n stmt.Names
	require.False(t, stmt.Deferrable(parse("", "SELECT 1")), "the unnamed statement is not held")
	require.True(t, stmt.Deferrable(parse("s1", "SELECT 1")))
	n.Defer(parse("s1", "SELECT 1"))
	shared, raw, ok := n.Query([]byte("s1"))
	require.True(t, ok)
	require.Equal(t, "", shared)
	require.Equal(t, "SELECT 1", string(raw))

	n.Defer(parse("s2", "CREATE TEMP TABLE x ()"))
	n.Defer(parse("s3", "SELECT 3"))
	counters := new(stmt.Counters)
	refuse := func(_, q []byte) *protocol.Error {
		if strings.Contains(string(q), "TEMP") {
			return protocol.NewError(protocol.CodeFeatureNotSupported, "no")
		}
		return nil
	}
	out, failed := n.AnswerDeferred(nil, reg, counters, refuse)
	require.True(t, failed)
	require.False(t, n.HasDeferred())
	require.Equal(t, parseComplete, out[:5])
	require.Equal(t, "0A000", errorOf(t, out[5:]).Code)
	require.Equal(t, 1, n.Len(), "the Parses after the failure are skipped")
	require.EqualValues(t, 1, counters.ClientParses.Load())

	shared, raw, ok = n.Query([]byte("s1"))
	require.True(t, ok)
	require.Equal(t, "SELECT 1", shared)
	require.Nil(t, raw)

	n.Defer(parse("s1", "SELECT 4"))
	out, failed = n.AnswerDeferred(nil, reg, counters, refuse)
	require.True(t, failed)
	require.Equal(t, `prepared statement "s1" already exists`, errorOf(t, out).Message)

	require.True(t, n.Forget("s1"))
	require.False(t, n.Forget("s1"))
	_, _, ok = n.Query([]byte("s1"))
	require.False(t, ok)
}

func TestRegistry(t *testing.T) {
	reg := stmt.NewRegistry()
	reg.Judge = func(q string) *settings.Traits { return &settings.Traits{SettingNames: []string{"judged " + q}} }
	s1 := reg.Get("SELECT 1", noTypes)
	require.Same(t, s1, reg.Get("SELECT 1", noTypes))
	require.NotSame(t, s1, reg.Get("SELECT 1", []byte{0, 1, 0, 0, 0, 23}), "parameter types are part of the key")
	require.Equal(t, []string{"judged SELECT 1"}, s1.Traits.SettingNames)
	require.Equal(t, "SELECT 1", s1.Query)

	reg.NoteCommandTag([]byte("SELECT 1"))
	require.Same(t, s1, reg.Get("SELECT 1", noTypes), "not DDL")
	reg.NoteCommandTag([]byte("ALTER TABLE"))
	require.EqualValues(t, 1, reg.SchemaGen())
	s2 := reg.Get("SELECT 1", noTypes)
	require.NotEqual(t, s1.Name, s2.Name, "a statement named before DDL is named anew")

	s3 := reg.Renew(s2)
	require.NotEqual(t, s2.Name, s3.Name)
	require.Equal(t, s2.Traits, s3.Traits)
	require.Same(t, s3, reg.Renew(s2), "renewed once")
	require.Same(t, s3, reg.Get("SELECT 1", noTypes))
}

// FuzzPlanMessage plans arbitrary client messages on two servers in turn: it must never
// panic, and what it sends must be whole messages.
func FuzzPlanMessage(f *testing.F) {
	f.Add(byte('P'), parse("s1", "SELECT 1")[protocol.HeaderLen:])
	f.Add(byte('P'), parse("", "SELECT 1")[protocol.HeaderLen:])
	f.Add(byte('B'), bind("s1")[protocol.HeaderLen:])
	f.Add(byte('B'), bind("cmpool_1")[protocol.HeaderLen:])
	f.Add(byte('D'), protocol.AppendDescribe(nil, 'S', "s1")[protocol.HeaderLen:])
	f.Add(byte('C'), protocol.AppendClose(nil, 'S', "s1")[protocol.HeaderLen:])
	f.Add(byte('E'), []byte{0, 0, 0, 0, 0})
	reg := stmt.NewRegistry()
	servers := []*stmt.Prepared{stmt.NewPrepared(2), stmt.NewPrepared(2)}
	f.Fuzz(func(t *testing.T, typ byte, body []byte) {
		msg := append([]byte{typ, 0, 0, 0, 0}, body...)
		binary.BigEndian.PutUint32(msg[1:], uint32(len(msg)-1))
		a := newSession(t, reg, servers[0])
		a.send(parse("s1", "SELECT 1"))
		for _, server := range servers {
			a.server = server
			out, _, err := a.plan.Message(nil, msg, a.scope())
			if err != nil {
				require.ErrorIs(t, err, stmt.ErrMalformed)
				continue
			}
			describe(t, out)
			a.plan.Error(errorResponse("42P05", "cmpool_1"), a.scope())
		}
	})
}
