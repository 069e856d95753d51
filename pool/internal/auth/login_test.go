package auth_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool/internal/auth"
	"github.com/cmlite/cmpool/protocol"
)

// fakeClient is a scripted client at the other end of an auth.Exchange: it decodes what
// Login sends and answers each request as a client with password would. The zero
// password answers wrong.
type fakeClient struct {
	t        *testing.T
	user     string
	password string
	// answer, when set, replaces the scripted answer to a request.
	answer func(req pgproto3.BackendMessage) (byte, []byte, error)

	queued bytes.Buffer
	got    []string // the type of every message Login sent, in order
	salts  []string // the salt of every SCRAM server-first-message
	scram  *protocol.ScramClient
	final  []byte // the server-final-message
}

var _ auth.Exchange = (*fakeClient)(nil)

func newFakeClient(t *testing.T, user, password string) *fakeClient {
	f := &fakeClient{t: t, user: user, password: password}
	return f
}

func (f *fakeClient) Send(msg []byte) error {
	f.queued.Write(msg)
	return nil
}

// drain decodes what Login queued since the last Receive and returns the last message.
func (f *fakeClient) drain() pgproto3.BackendMessage {
	var last pgproto3.BackendMessage
	for f.queued.Len() > 0 {
		b := f.queued.Next(5)
		require.Len(f.t, b, 5)
		require.Equal(f.t, byte('R'), b[0], "only Authentication messages")
		body := f.queued.Next(int(binary.BigEndian.Uint32(b[1:])) - 4)
		var m pgproto3.BackendMessage
		switch binary.BigEndian.Uint32(body) {
		case 0:
			m = &pgproto3.AuthenticationOk{}
		case 3:
			m = &pgproto3.AuthenticationCleartextPassword{}
		case 5:
			m = &pgproto3.AuthenticationMD5Password{}
		case 10:
			m = &pgproto3.AuthenticationSASL{}
		case 11:
			m = &pgproto3.AuthenticationSASLContinue{}
		case 12:
			m = &pgproto3.AuthenticationSASLFinal{}
		default:
			f.t.Fatalf("unexpected Authentication message %d", binary.BigEndian.Uint32(body))
		}
		require.NoError(f.t, m.Decode(body))
		f.got = append(f.got, strings.TrimPrefix(fmt.Sprintf("%T", m), "*pgproto3."))
		if fin, ok := m.(*pgproto3.AuthenticationSASLFinal); ok {
			f.final = append([]byte(nil), fin.Data...)
		}
		last = m
	}
	return last
}

func (f *fakeClient) Receive() (byte, []byte, error) {
	req := f.drain()
	require.NotNil(f.t, req, "Receive without a request")
	if f.answer != nil {
		return f.answer(req)
	}
	var reply pgproto3.FrontendMessage
	switch m := req.(type) {
	case *pgproto3.AuthenticationCleartextPassword:
		reply = &pgproto3.PasswordMessage{Password: f.password}
	case *pgproto3.AuthenticationMD5Password:
		secret := protocol.MD5Secret(f.user, f.password)
		reply = &pgproto3.PasswordMessage{Password: protocol.MD5Secret(string(m.Salt[:]), secret[3:])}
	case *pgproto3.AuthenticationSASL:
		require.Contains(f.t, m.AuthMechanisms, protocol.ScramMechanism)
		f.scram = &protocol.ScramClient{}
		reply = &pgproto3.SASLInitialResponse{AuthMechanism: protocol.ScramMechanism, Data: f.scram.First()}
	case *pgproto3.AuthenticationSASLContinue:
		salt, iterations := parseServerFirst(f.t, m.Data)
		f.salts = append(f.salts, base64.StdEncoding.EncodeToString(salt))
		f.scram.ClientKey, f.scram.ServerKey = protocol.ScramKeys(f.password, salt, iterations)
		final, err := f.scram.Final(m.Data)
		require.NoError(f.t, err)
		reply = &pgproto3.SASLResponse{Data: final}
	default:
		f.t.Fatalf("unexpected request %T", req)
	}
	b, err := reply.Encode(nil)
	require.NoError(f.t, err)
	return b[0], b[5:], nil
}

func parseServerFirst(t *testing.T, msg []byte) ([]byte, int) {
	attrs := strings.Split(string(msg), ",")
	require.GreaterOrEqual(t, len(attrs), 3, string(msg))
	salt, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(attrs[1], "s="))
	require.NoError(t, err)
	iterations, err := strconv.Atoi(strings.TrimPrefix(attrs[2], "i="))
	require.NoError(t, err)
	return salt, iterations
}

// login runs Login for f from addr and returns its error and the messages Login sent.
func (f *fakeClient) login(a *auth.Authenticator, database string, addr net.Addr) error {
	err := a.Login(context.Background(), f, auth.Client{Database: database, User: f.user, Addr: addr})
	f.drain()
	return err
}

var (
	hostA = &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 5000}
	hostB = &net.TCPAddr{IP: net.ParseIP("192.0.2.2"), Port: 5000}
)

const primaryURL = "postgres://owner:owner-pw@127.0.0.1:5432/app"

// newAuthenticator makes an Authenticator over opts, with the primary URL as every
// database's target unless opts says otherwise.
func newAuthenticator(t *testing.T, opts auth.Options) *auth.Authenticator {
	t.Helper()
	if opts.Method == "" {
		opts.Method = auth.MethodSCRAM
	}
	if opts.Primary == "" {
		opts.Primary = primaryURL
	}
	if opts.Target == nil {
		pc, err := pgconn.ParseConfig(opts.Primary)
		require.NoError(t, err)
		opts.Target = func(string) (*pgconn.Config, error) { return pc, nil }
	}
	a, err := auth.New(opts)
	require.NoError(t, err)
	return a
}

func requireCode(t *testing.T, err error, code, message string) {
	t.Helper()
	var pe *protocol.Error
	require.ErrorAs(t, err, &pe)
	require.Equal(t, code, pe.Code, pe.Message)
	if message != "" {
		require.Equal(t, message, pe.Message)
	}
}

var (
	scramOK   = []string{"AuthenticationSASL", "AuthenticationSASLContinue", "AuthenticationSASLFinal", "AuthenticationOk"}
	scramFail = []string{"AuthenticationSASL", "AuthenticationSASLContinue"}
)

func TestLoginSCRAM(t *testing.T) {
	stored := protocol.NewScramSecret("alice-pw", []byte("0123456789abcdef"), 4096).String()
	a := newAuthenticator(t, auth.Options{FailureLimit: -1, Users: map[string]auth.User{
		"alice": {Password: stored},
		"bob":   {Password: "bob-pw"},
	}})
	for _, tc := range []struct {
		name, user, password string
		passthrough          bool
	}{
		{"stored SCRAM secret", "alice", "alice-pw", true},
		{"plain password", "bob", "bob-pw", false},
		{"password cmpool holds for the primary URL's user", "owner", "owner-pw", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeClient(t, tc.user, tc.password)
			require.NoError(t, f.login(a, "app", hostA))
			require.Equal(t, scramOK, f.got)
			require.NoError(t, f.scram.Verify(f.final), "the server signature")
			keys := a.PassthroughFor(tc.user)
			if tc.passthrough {
				require.NotNil(t, keys)
				require.Equal(t, f.scram.ClientKey, keys.ClientKey)
				require.Equal(t, 4096, keys.Iterations)
			} else {
				require.Nil(t, keys)
			}
		})
	}
	require.Zero(t, a.Failures())
}

func TestLoginSCRAMWrongPasswordAndUnknownUser(t *testing.T) {
	a := newAuthenticator(t, auth.Options{FailureLimit: -1, Users: map[string]auth.User{"alice": {Password: "alice-pw"}}})
	var salts []string
	for _, tc := range []struct{ user, password string }{
		{"alice", "wrong"},
		{"alice", ""},
		{"mallory", "alice-pw"},
		{"mallory", "other"},
		{"owner", "wrong"},
	} {
		f := newFakeClient(t, tc.user, tc.password)
		err := f.login(a, "app", hostA)
		requireCode(t, err, protocol.CodeInvalidPassword, fmt.Sprintf("password authentication failed for user %q", tc.user))
		// An unknown user gets the same exchange as a known one.
		require.Equal(t, scramFail, f.got, "%s/%q", tc.user, tc.password)
		if tc.user == "mallory" {
			salts = append(salts, f.salts...)
		}
	}
	require.Len(t, salts, 2)
	require.Equal(t, salts[0], salts[1], "an unknown user's salt is stable")
	require.EqualValues(t, 5, a.Failures())
	require.Zero(t, a.Refusals())
}

func TestLoginMD5(t *testing.T) {
	a := newAuthenticator(t, auth.Options{Method: auth.MethodMD5, FailureLimit: -1, Users: map[string]auth.User{
		"alice": {Password: "alice-pw"},
		"carol": {Password: protocol.MD5Secret("carol", "carol-pw")},
		"dave":  {Password: protocol.NewScramSecret("dave-pw", []byte("0123456789abcdef"), 4096).String()},
	}})
	for _, tc := range []struct {
		user, password string
		want           []string
		err            bool
	}{
		{"alice", "alice-pw", []string{"AuthenticationMD5Password", "AuthenticationOk"}, false},
		{"carol", "carol-pw", []string{"AuthenticationMD5Password", "AuthenticationOk"}, false},
		{"alice", "wrong", []string{"AuthenticationMD5Password"}, true},
		{"mallory", "x", []string{"AuthenticationMD5Password"}, true},
		// A SCRAM secret cannot check md5: the rule runs SCRAM, as PostgreSQL's does.
		{"dave", "dave-pw", scramOK, false},
	} {
		f := newFakeClient(t, tc.user, tc.password)
		err := f.login(a, "app", hostA)
		require.Equal(t, tc.want, f.got, "%s/%q", tc.user, tc.password)
		if tc.err {
			requireCode(t, err, protocol.CodeInvalidPassword, "")
		} else {
			require.NoError(t, err, "%s/%q", tc.user, tc.password)
		}
	}
	require.Equal(t, protocol.MD5Secret("carol", "carol-pw"), a.PassthroughFor("carol").MD5)
	require.Nil(t, a.PassthroughFor("alice"), "a plain password needs no pass-through")
}

func TestLoginPassword(t *testing.T) {
	users := map[string]auth.User{
		"alice": {Password: "alice-pw"},
		"carol": {Password: protocol.MD5Secret("carol", "carol-pw")},
	}
	noTLS := newAuthenticator(t, auth.Options{Method: auth.MethodPassword, FailureLimit: -1, Users: users})
	f := newFakeClient(t, "alice", "alice-pw")
	requireCode(t, f.login(noTLS, "app", hostA), protocol.CodeInvalidAuthorization,
		"password authentication needs a TLS connection (or auth_plain_without_tls)")
	require.Empty(t, f.got, "no password is asked for in the clear")

	a := newAuthenticator(t, auth.Options{Method: auth.MethodPassword, FailureLimit: -1, PlainWithoutTLS: true, Users: users})
	for _, tc := range []struct {
		user, password string
		ok             bool
	}{
		{"alice", "alice-pw", true},
		{"carol", "carol-pw", true},
		{"alice", "wrong", false},
		{"carol", "wrong", false},
		{"mallory", "alice-pw", false},
	} {
		f := newFakeClient(t, tc.user, tc.password)
		err := f.login(a, "app", hostA)
		if tc.ok {
			require.NoError(t, err)
			require.Equal(t, []string{"AuthenticationCleartextPassword", "AuthenticationOk"}, f.got)
		} else {
			requireCode(t, err, protocol.CodeInvalidPassword, "")
			require.Equal(t, []string{"AuthenticationCleartextPassword"}, f.got)
		}
	}
	require.Equal(t, "carol-pw", a.PassthroughFor("carol").Password, "the password proves a hashed secret")
}

func TestLoginTrust(t *testing.T) {
	t.Run("without a list of users, anyone", func(t *testing.T) {
		a := newAuthenticator(t, auth.Options{Method: auth.MethodTrust})
		f := newFakeClient(t, "anyone", "")
		require.NoError(t, f.login(a, "app", hostA))
		require.Equal(t, []string{"AuthenticationOk"}, f.got)
	})
	t.Run("with a list, only listed users", func(t *testing.T) {
		a := newAuthenticator(t, auth.Options{Method: auth.MethodTrust, FailureLimit: -1,
			Users:       map[string]auth.User{"alice": {}},
			AuthFile:    "userlist.txt",
			FileSecrets: map[string]string{"bob": "bob-pw"},
		})
		for _, user := range []string{"alice", "bob"} {
			f := newFakeClient(t, user, "")
			require.NoError(t, f.login(a, "app", hostA), user)
			require.Equal(t, []string{"AuthenticationOk"}, f.got)
		}
		for _, user := range []string{"mallory", "owner"} {
			f := newFakeClient(t, user, "")
			requireCode(t, f.login(a, "app", hostA), protocol.CodeInvalidPassword, fmt.Sprintf("password authentication failed for user %q", user))
			require.Empty(t, f.got)
		}
	})
	t.Run("a user's method overrides the database's and the global one", func(t *testing.T) {
		a := newAuthenticator(t, auth.Options{Method: auth.MethodReject, FailureLimit: -1,
			Users:     map[string]auth.User{"alice": {Method: auth.MethodTrust}, "bob": {}},
			Databases: map[string]auth.Database{"open": {Method: auth.MethodTrust}},
		})
		require.NoError(t, newFakeClient(t, "alice", "").login(a, "app", hostA))
		require.NoError(t, newFakeClient(t, "bob", "").login(a, "open", hostA))
		requireCode(t, newFakeClient(t, "bob", "").login(a, "app", hostA), protocol.CodeInvalidAuthorization, `login rejected for user "bob"`)
	})
}

func TestLoginThrottle(t *testing.T) {
	a := newAuthenticator(t, auth.Options{FailureLimit: 2, Users: map[string]auth.User{
		"alice":   {Password: "alice-pw"},
		"trusted": {Method: auth.MethodTrust},
	}})
	for range 2 {
		requireCode(t, newFakeClient(t, "alice", "wrong").login(a, "app", hostA), protocol.CodeInvalidPassword, "")
	}
	// The right password no longer helps from that address, and no exchange starts.
	f := newFakeClient(t, "alice", "alice-pw")
	requireCode(t, f.login(a, "app", hostA), protocol.CodeInvalidAuthorization, "too many failed logins from this address; try again later")
	require.Empty(t, f.got)
	require.NoError(t, newFakeClient(t, "alice", "alice-pw").login(a, "app", hostB), "another address")
	require.NoError(t, newFakeClient(t, "trusted", "").login(a, "app", hostA), "trust is not throttled")
	require.EqualValues(t, 2, a.Failures())
	require.EqualValues(t, 1, a.Refusals())

	// A reload's Authenticator carries the window and the counters over.
	b := newAuthenticator(t, auth.Options{FailureLimit: 2, Users: map[string]auth.User{"alice": {Password: "alice-pw"}}})
	b.CarryOver(a)
	requireCode(t, newFakeClient(t, "alice", "alice-pw").login(b, "app", hostA), protocol.CodeInvalidAuthorization, "")
	require.EqualValues(t, 2, b.Failures())
	require.EqualValues(t, 2, b.Refusals())
}

func TestLoginTLSRequired(t *testing.T) {
	a := newAuthenticator(t, auth.Options{Method: auth.MethodTrust, TLSMode: auth.TLSRequire})
	f := newFakeClient(t, "alice", "")
	requireCode(t, f.login(a, "app", hostA), protocol.CodeInvalidAuthorization,
		"SSL required: client_tls_sslmode is require; connect with sslmode=require or stronger")
	require.Empty(t, f.got)
	err := a.Login(context.Background(), newFakeClient(t, "alice", ""), auth.Client{User: "alice", Addr: hostA, TLS: &tls.ConnectionState{}})
	require.NoError(t, err)

	full := newAuthenticator(t, auth.Options{Method: auth.MethodTrust, TLSMode: auth.TLSVerifyFull})
	err = full.Login(context.Background(), newFakeClient(t, "alice", ""), auth.Client{User: "alice", Addr: hostA, TLS: &tls.ConnectionState{}})
	requireCode(t, err, protocol.CodeInvalidAuthorization, `certificate authentication failed for user "alice": common name does not match`)
}

func TestLoginHBA(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hba.conf")
	require.NoError(t, os.WriteFile(path, []byte(`
local     all  all                 trust
hostnossl all  all  192.0.2.1/32   reject
host      app  all  192.0.2.0/24   md5
`), 0o600))
	a := newAuthenticator(t, auth.Options{Method: auth.MethodHBA, HBAFile: path, FailureLimit: -1,
		Users: map[string]auth.User{"alice": {Password: "alice-pw"}}})
	f := newFakeClient(t, "alice", "alice-pw")
	requireCode(t, f.login(a, "app", hostA), protocol.CodeInvalidAuthorization, "")
	f = newFakeClient(t, "alice", "alice-pw")
	require.NoError(t, f.login(a, "app", hostB))
	require.Equal(t, []string{"AuthenticationMD5Password", "AuthenticationOk"}, f.got)
	requireCode(t, newFakeClient(t, "alice", "alice-pw").login(a, "other", hostB), protocol.CodeInvalidAuthorization,
		`no allowing auth_hba_file entry for host "192.0.2.2", user "alice", database "other", no encryption`)
	f = newFakeClient(t, "alice", "")
	require.NoError(t, f.login(a, "app", &net.UnixAddr{Name: "in-process"}), "an in-process client matches local")
	require.Equal(t, []string{"AuthenticationOk"}, f.got)
}

func TestLoginBadAnswers(t *testing.T) {
	a := newAuthenticator(t, auth.Options{FailureLimit: -1, Users: map[string]auth.User{"alice": {Password: "alice-pw"}}})
	refused := errors.New("connection reset")
	for _, tc := range []struct {
		name   string
		answer func(pgproto3.BackendMessage) (byte, []byte, error)
		check  func(t *testing.T, err error)
	}{
		{"terminate", func(pgproto3.BackendMessage) (byte, []byte, error) { return 'X', nil, nil },
			func(t *testing.T, err error) { require.ErrorIs(t, err, io.EOF) }},
		{"a query instead of a password", func(pgproto3.BackendMessage) (byte, []byte, error) { return 'Q', nil, nil },
			func(t *testing.T, err error) {
				requireCode(t, err, protocol.CodeProtocolViolation, `expected password response, got message type 'Q'`)
			}},
		{"too long, unread", func(pgproto3.BackendMessage) (byte, []byte, error) { return 'p', nil, auth.ErrMessageTooLong },
			func(t *testing.T, err error) {
				requireCode(t, err, protocol.CodeProtocolViolation, "authentication message too long")
			}},
		{"too long, read", func(pgproto3.BackendMessage) (byte, []byte, error) { return 'p', make([]byte, auth.MaxMessage+1), nil },
			func(t *testing.T, err error) {
				requireCode(t, err, protocol.CodeProtocolViolation, "authentication message too long")
			}},
		{"garbage SASLInitialResponse", func(pgproto3.BackendMessage) (byte, []byte, error) { return 'p', []byte("x"), nil },
			func(t *testing.T, err error) {
				requireCode(t, err, protocol.CodeProtocolViolation, "invalid SASLInitialResponse")
			}},
		{"an error of the connection", func(pgproto3.BackendMessage) (byte, []byte, error) { return 0, nil, refused },
			func(t *testing.T, err error) { require.ErrorIs(t, err, refused) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeClient(t, "alice", "alice-pw")
			f.answer = tc.answer
			tc.check(t, f.login(a, "app", hostA))
			require.Equal(t, []string{"AuthenticationSASL"}, f.got)
		})
	}
	require.Zero(t, a.Failures(), "a broken exchange is no failed password")
}
