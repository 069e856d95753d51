package protocol_test

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/protocol"
)

func TestParseScramSecret(t *testing.T) {
	good := protocol.NewScramSecret("pencil", []byte("0123456789abcdef"), 4096).String()
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"derived", good, true},
		{"no prefix", strings.TrimPrefix(good, "SCRAM-SHA-256$"), false},
		{"md5", "md5" + strings.Repeat("a", 32), false},
		{"zero iterations", strings.Replace(good, "$4096:", "$0:", 1), false},
		{"bad iterations", strings.Replace(good, "$4096:", "$x:", 1), false},
		{"no keys", good[:strings.LastIndex(good, "$")], false},
		{"short key", good[:strings.LastIndex(good, ":")] + ":AAAA", false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := protocol.ParseScramSecret(tc.in)
			if !tc.ok {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.in, s.String())
			require.True(t, s.VerifyPassword("pencil"))
			require.False(t, s.VerifyPassword("pencil2"))
		})
	}
}

// TestScramExchange runs cmpool's pass-through client against cmpool's server side: the
// server recovers the ClientKey, and a client holding only the keys logs in.
func TestScramExchange(t *testing.T) {
	secret := protocol.NewScramSecret("s3cret", nil, 4096)
	clientKey, serverKey := protocol.ScramKeys("s3cret", secret.Salt, secret.Iterations)
	wrongKey, _ := protocol.ScramKeys("wrong", secret.Salt, secret.Iterations)
	for _, tc := range []struct {
		name      string
		secret    *protocol.ScramSecret
		clientKey []byte
		wantErr   error
	}{
		{"right keys", secret, clientKey, nil},
		{"wrong password", secret, wrongKey, protocol.ErrScramProof},
		{"unknown user (mock)", nil, clientKey, protocol.ErrScramProof},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := protocol.NewScramServer(tc.secret, []byte("mock-salt"))
			cl := &protocol.ScramClient{ClientKey: tc.clientKey, ServerKey: serverKey}
			first, err := srv.ClientFirst(protocol.ScramMechanism, cl.First())
			require.NoError(t, err)
			final, err := cl.Final(first)
			require.NoError(t, err)
			sfinal, err := srv.ClientFinal(final)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				require.Nil(t, srv.ClientKey())
				return
			}
			require.NoError(t, err)
			require.NoError(t, cl.Verify(sfinal))
			require.Equal(t, clientKey, srv.ClientKey())
			stored := sha256.Sum256(srv.ClientKey())
			require.Equal(t, secret.StoredKey, stored[:])
		})
	}
}

func TestScramServerRefusesMalformed(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString
	for _, tc := range []struct {
		name        string
		first       string
		final       func(serverFirst string) string
		errContains string
	}{
		{"channel binding requested", "p=tls-server-end-point,,n=,r=abc", nil, "channel binding"},
		{"bad flag", "x,,n=,r=abc", nil, "flag"},
		{"authzid", "n,a=bob,n=,r=abc", nil, "authorization"},
		{"no nonce", "n,,n=", nil, "want n="},
		{"mandatory extension", "n,,m=ext,n=,r=abc", nil, "mandatory"},
		{"empty", "", nil, "GS2"},
		{"wrong binding", "n,,n=,r=abc", func(sf string) string {
			return "c=" + b64([]byte("y,,")) + "," + strings.Split(sf, ",")[0] + ",p=" + b64(make([]byte, 32))
		}, "channel binding check failed"},
		{"wrong nonce", "n,,n=,r=abc", func(string) string {
			return "c=biws,r=abcdef,p=" + b64(make([]byte, 32))
		}, "nonce"},
		{"no proof", "n,,n=,r=abc", func(sf string) string { return "c=biws," + strings.Split(sf, ",")[0] }, "proof"},
		{"short proof", "n,,n=,r=abc", func(sf string) string {
			return "c=biws," + strings.Split(sf, ",")[0] + ",p=AAAA"
		}, "proof"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := protocol.NewScramServer(protocol.NewScramSecret("x", nil, 4096), nil)
			sf, err := srv.ClientFirst(protocol.ScramMechanism, []byte(tc.first))
			if tc.final == nil {
				require.ErrorContains(t, err, tc.errContains)
				return
			}
			require.NoError(t, err)
			_, err = srv.ClientFinal([]byte(tc.final(string(sf))))
			require.ErrorIs(t, err, protocol.ErrScram)
			require.ErrorContains(t, err, tc.errContains)
		})
	}
}

func TestMD5(t *testing.T) {
	secret := protocol.MD5Secret("alice", "pw")
	require.True(t, protocol.IsMD5Secret(secret))
	require.False(t, protocol.IsMD5Secret("md5xyz"))
	salt := [4]byte{1, 2, 3, 4}
	// What a client sends: "md5" + md5(md5(password+user) + salt).
	resp := protocol.MD5Secret(string(salt[:]), secret[3:])
	require.True(t, protocol.VerifyMD5Response(secret, salt, resp))
	require.False(t, protocol.VerifyMD5Response(secret, [4]byte{4, 3, 2, 1}, resp))
}

// FuzzScramServer feeds arbitrary client messages to the server side: it must never
// panic, and must never accept a proof for a secret whose password nobody knows.
func FuzzScramServer(f *testing.F) {
	f.Add([]byte("n,,n=,r=rOprNGfwEbeRWgbNEkqO"), []byte("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="))
	f.Add([]byte("y,,n=user,r=abc,ext=1"), []byte("c=eSws,r=abc,p=AAAA"))
	f.Add([]byte("p=tls-server-end-point,,n=,r=x"), []byte(""))
	f.Add([]byte("n,,m=x"), []byte(",p="))
	secret := protocol.NewScramSecret("unguessable-"+base64.StdEncoding.EncodeToString([]byte{7, 7, 7}), nil, 16)
	f.Fuzz(func(t *testing.T, first, final []byte) {
		srv := protocol.NewScramServer(secret, nil)
		sf, err := srv.ClientFirst(protocol.ScramMechanism, first)
		if err != nil {
			return
		}
		// Splice the server nonce in so the fuzzer reaches the proof check.
		nonce := strings.Split(string(sf), ",")[0]
		msg := strings.ReplaceAll(string(final), "r=NONCE", nonce)
		if _, err := srv.ClientFinal([]byte(msg)); err == nil {
			t.Fatalf("accepted a proof without the password: %q", msg)
		}
		require.Nil(t, srv.ClientKey())
	})
}

// FuzzParseScramSecret: secrets come from auth_query results and files; parsing must not
// panic, and whatever parses must print back the same.
func FuzzParseScramSecret(f *testing.F) {
	f.Add(protocol.NewScramSecret("pw", []byte("salt"), 4096).String())
	f.Add("SCRAM-SHA-256$4096:$:")
	f.Fuzz(func(t *testing.T, s string) {
		sec, err := protocol.ParseScramSecret(s)
		if err != nil {
			return
		}
		again, err := protocol.ParseScramSecret(sec.String())
		require.NoError(t, err)
		require.Equal(t, sec, again)
	})
}

func TestScramChannelBinding(t *testing.T) {
	secret := protocol.NewScramSecret("s3cret", nil, 4096)
	clientKey, serverKey := protocol.ScramKeys("s3cret", secret.Salt, secret.Iterations)
	binding := []byte("0123456789abcdef0123456789abcdef")
	for _, tc := range []struct {
		name          string
		serverBinding []byte
		clientBinding []byte
		mechanism     string // overrides the client's choice
		first         string // overrides the client-first-message
		wantErr       string
	}{
		{name: "PLUS with the right binding", serverBinding: binding, clientBinding: binding},
		{name: "no TLS, no binding", serverBinding: nil, clientBinding: nil},
		{name: "TLS, client without binding support", serverBinding: binding, clientBinding: nil},
		{name: "PLUS with another certificate", serverBinding: binding, clientBinding: []byte("another certificate hash........"), wantErr: "channel binding check failed"},
		{name: "PLUS without TLS", serverBinding: nil, clientBinding: binding, wantErr: "invalid SASL authentication mechanism"},
		{name: "downgrade: y over TLS", serverBinding: binding, first: "y,,n=,r=abc", wantErr: "downgrade"},
		{name: "y without TLS", serverBinding: nil, first: "y,,n=,r=abc"},
		{name: "PLUS with flag n", serverBinding: binding, mechanism: protocol.ScramPlusMechanism, first: "n,,n=,r=abc", wantErr: "tls-server-end-point"},
		{name: "PLUS with tls-unique", serverBinding: binding, mechanism: protocol.ScramPlusMechanism, first: "p=tls-unique,,n=,r=abc", wantErr: "tls-server-end-point"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := protocol.NewScramServer(secret, nil)
			srv.ChannelBinding = tc.serverBinding
			cl := &protocol.ScramClient{ClientKey: clientKey, ServerKey: serverKey, ChannelBinding: tc.clientBinding}
			mech, first := cl.Mechanism(), cl.First()
			if tc.mechanism != "" {
				mech = tc.mechanism
			}
			if tc.first != "" {
				first = []byte(tc.first)
			}
			sf, err := srv.ClientFirst(mech, first)
			if err == nil && tc.first == "" {
				var final []byte
				final, err = cl.Final(sf)
				require.NoError(t, err)
				var sfinal []byte
				sfinal, err = srv.ClientFinal(final)
				if err == nil {
					require.NoError(t, cl.Verify(sfinal))
				}
			}
			if tc.wantErr != "" {
				require.ErrorIs(t, err, protocol.ErrScram)
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
		})
	}
	require.Equal(t, []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}, protocol.ScramMechanisms(binding))
	require.Equal(t, []string{"SCRAM-SHA-256"}, protocol.ScramMechanisms(nil))
}
