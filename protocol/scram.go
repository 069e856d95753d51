package protocol

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// SCRAM-SHA-256 as PostgreSQL speaks it (RFC 5802, RFC 7677). cmpool is the server side
// towards clients and, for pass-through, the client side towards servers with only the
// keys the client's exchange proved.

// SASL mechanism names: SCRAM-SHA-256, and SCRAM-SHA-256-PLUS with tls-server-end-point
// channel binding (RFC 5929), offered on TLS connections.
const (
	ScramMechanism     = "SCRAM-SHA-256"
	ScramPlusMechanism = "SCRAM-SHA-256-PLUS"
)

// TLSServerEndPoint returns the tls-server-end-point channel binding data of a server
// certificate (RFC 5929 §4.1): its hash with the certificate's signature hash, or
// SHA-256 for MD5 and SHA-1.
func TLSServerEndPoint(cert *x509.Certificate) ([]byte, error) {
	var h hash.Hash
	switch cert.SignatureAlgorithm {
	case x509.MD5WithRSA, x509.SHA1WithRSA, x509.ECDSAWithSHA1,
		x509.SHA256WithRSA, x509.SHA256WithRSAPSS, x509.ECDSAWithSHA256:
		h = sha256.New()
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		h = sha512.New384()
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		h = sha512.New()
	default:
		return nil, fmt.Errorf("protocol: tls-server-end-point is undefined for signature algorithm %v", cert.SignatureAlgorithm)
	}
	h.Write(cert.Raw)
	return h.Sum(nil), nil
}

// ScramMechanisms returns the mechanisms to offer: with channel binding data (a TLS
// connection), SCRAM-SHA-256-PLUS first.
func ScramMechanisms(channelBinding []byte) []string {
	if channelBinding != nil {
		return []string{ScramPlusMechanism, ScramMechanism}
	}
	return []string{ScramMechanism}
}

// DefaultScramIterations is the iteration count for secrets cmpool derives from plain
// passwords, PostgreSQL's default.
const DefaultScramIterations = 4096

// ErrScram is wrapped by every error of a malformed SCRAM message.
var ErrScram = errors.New("protocol: malformed SCRAM message")

// ErrScramProof means the client's proof did not match the secret: a wrong password.
var ErrScramProof = errors.New("protocol: SCRAM proof does not match")

// maxScramMessage bounds every SCRAM message cmpool parses.
const maxScramMessage = 4096

// ScramSecret is a stored SCRAM-SHA-256 verifier, as in pg_authid.rolpassword:
// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>.
type ScramSecret struct {
	Iterations int
	Salt       []byte
	StoredKey  []byte
	ServerKey  []byte
}

// ParseScramSecret parses a stored SCRAM-SHA-256 secret.
func ParseScramSecret(s string) (*ScramSecret, error) {
	bad := func(what string) error { return fmt.Errorf("protocol: invalid SCRAM secret: %s", what) }
	rest, ok := strings.CutPrefix(s, "SCRAM-SHA-256$")
	if !ok {
		return nil, bad("no SCRAM-SHA-256$ prefix")
	}
	params, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return nil, bad("want <iterations>:<salt>$<StoredKey>:<ServerKey>")
	}
	iterStr, saltStr, ok := strings.Cut(params, ":")
	if !ok {
		return nil, bad("want <iterations>:<salt>")
	}
	iter, err := strconv.Atoi(iterStr)
	if err != nil || iter < 1 || iter > 1<<24 {
		return nil, bad("iteration count")
	}
	salt, err := base64.StdEncoding.DecodeString(saltStr)
	if err != nil || len(salt) == 0 {
		return nil, bad("salt")
	}
	storedStr, serverStr, ok := strings.Cut(keys, ":")
	if !ok {
		return nil, bad("want <StoredKey>:<ServerKey>")
	}
	stored, err := base64.StdEncoding.DecodeString(storedStr)
	if err != nil || len(stored) != sha256.Size {
		return nil, bad("StoredKey")
	}
	server, err := base64.StdEncoding.DecodeString(serverStr)
	if err != nil || len(server) != sha256.Size {
		return nil, bad("ServerKey")
	}
	return &ScramSecret{Iterations: iter, Salt: salt, StoredKey: stored, ServerKey: server}, nil
}

// String encodes the secret in the form ParseScramSecret reads.
func (s *ScramSecret) String() string {
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", s.Iterations, b64(s.Salt), b64(s.StoredKey), b64(s.ServerKey))
}

// NewScramSecret derives a secret from a plain password, with a random salt when salt is
// nil. The password is used as given (PostgreSQL applies SASLprep, which leaves ASCII
// passwords unchanged).
func NewScramSecret(password string, salt []byte, iterations int) *ScramSecret {
	if salt == nil {
		salt = make([]byte, 16)
		_, _ = rand.Read(salt)
	}
	if iterations <= 0 {
		iterations = DefaultScramIterations
	}
	clientKey, serverKey := ScramKeys(password, salt, iterations)
	stored := sha256.Sum256(clientKey)
	return &ScramSecret{Iterations: iterations, Salt: salt, StoredKey: stored[:], ServerKey: serverKey}
}

// ScramKeys returns the ClientKey and ServerKey of a password.
func ScramKeys(password string, salt []byte, iterations int) (clientKey, serverKey []byte) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		panic(err) // only for invalid parameters, which callers never pass
	}
	return hmacSHA256(salted, "Client Key"), hmacSHA256(salted, "Server Key")
}

// VerifyPassword reports whether password matches the secret.
func (s *ScramSecret) VerifyPassword(password string) bool {
	clientKey, serverKey := ScramKeys(password, s.Salt, s.Iterations)
	stored := sha256.Sum256(clientKey)
	return subtle.ConstantTimeCompare(stored[:], s.StoredKey) == 1 &&
		subtle.ConstantTimeCompare(serverKey, s.ServerKey) == 1
}

func hmacSHA256(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

// ScramServer is the server side of one SCRAM-SHA-256 exchange. Call ClientFirst with the
// SASLInitialResponse data and send the result in AuthenticationSASLContinue, then
// ClientFinal with the SASLResponse data and send the result in AuthenticationSASLFinal.
type ScramServer struct {
	// ChannelBinding is the connection's tls-server-end-point data, or nil without TLS.
	// Set it before ClientFirst; with it, SCRAM-SHA-256-PLUS is accepted and a client
	// that says it could bind but thinks the server cannot ("y") is refused.
	ChannelBinding []byte

	secret *ScramSecret
	// mock: the user is unknown or has no usable secret. The exchange runs to its end and
	// then fails, as PostgreSQL does, so that a client cannot tell.
	mock bool

	gs2Header       string
	clientFirstBare string
	serverFirst     string
	nonce           string
	clientKey       []byte
	step            int
	plus            bool
}

// NewScramServer starts an exchange against secret. A nil secret runs a mock exchange
// with mockSalt (derive it from the user name, so that it is stable) that always fails
// with ErrScramProof.
func NewScramServer(secret *ScramSecret, mockSalt []byte) *ScramServer {
	if secret == nil {
		random := make([]byte, sha256.Size)
		_, _ = rand.Read(random)
		return &ScramServer{mock: true, secret: &ScramSecret{Iterations: DefaultScramIterations, Salt: mockSalt, StoredKey: random, ServerKey: random}}
	}
	return &ScramServer{secret: secret}
}

// ClientFirst parses the client-first-message sent with the chosen mechanism and returns
// the server-first-message.
func (s *ScramServer) ClientFirst(mechanism string, msg []byte) ([]byte, error) {
	if s.step != 0 {
		return nil, fmt.Errorf("%w: unexpected client-first-message", ErrScram)
	}
	s.step = 1
	if len(msg) > maxScramMessage {
		return nil, fmt.Errorf("%w: client-first-message too long", ErrScram)
	}
	plus := mechanism == ScramPlusMechanism
	switch {
	case mechanism == ScramMechanism:
	case plus && s.ChannelBinding != nil:
	default:
		return nil, fmt.Errorf("%w: client selected an invalid SASL authentication mechanism %q", ErrScram, mechanism)
	}
	m := string(msg)
	// gs2-header: cbind-flag "," [authzid] ","
	flag, rest, ok := strings.Cut(m, ",")
	if !ok {
		return nil, fmt.Errorf("%w: no GS2 header", ErrScram)
	}
	switch {
	case plus && flag != "p=tls-server-end-point":
		return nil, fmt.Errorf("%w: %s needs channel binding type tls-server-end-point, got %q", ErrScram, ScramPlusMechanism, flag)
	case plus:
	case flag == "n":
	case flag == "y":
		// The client could bind but believes the server cannot: over TLS the server
		// offered SCRAM-SHA-256-PLUS, so something removed it (RFC 5802 §6).
		if s.ChannelBinding != nil {
			return nil, fmt.Errorf("%w: SCRAM channel binding negotiation error (possible downgrade)", ErrScram)
		}
	case strings.HasPrefix(flag, "p="):
		return nil, fmt.Errorf("%w: channel binding requested (%s) without %s", ErrScram, flag, ScramPlusMechanism)
	default:
		return nil, fmt.Errorf("%w: unexpected channel binding flag %q", ErrScram, flag)
	}
	authzid, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return nil, fmt.Errorf("%w: GS2 header not terminated", ErrScram)
	}
	if authzid != "" {
		return nil, fmt.Errorf("%w: authorization identities are not supported", ErrScram)
	}
	s.gs2Header = flag + ",,"
	s.plus = plus
	if strings.HasPrefix(bare, "m=") {
		return nil, fmt.Errorf("%w: mandatory extensions are not supported", ErrScram)
	}
	attrs := strings.Split(bare, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "n=") || !strings.HasPrefix(attrs[1], "r=") {
		return nil, fmt.Errorf("%w: want n=<user>,r=<nonce>", ErrScram)
	}
	clientNonce := attrs[1][2:]
	if clientNonce == "" || !printable(clientNonce) {
		return nil, fmt.Errorf("%w: invalid client nonce", ErrScram)
	}
	var raw [18]byte
	_, _ = rand.Read(raw[:])
	s.nonce = clientNonce + base64.StdEncoding.EncodeToString(raw[:])
	s.clientFirstBare = bare
	s.serverFirst = "r=" + s.nonce + ",s=" + base64.StdEncoding.EncodeToString(s.secret.Salt) + ",i=" + strconv.Itoa(s.secret.Iterations)
	return []byte(s.serverFirst), nil
}

// ClientFinal checks the client-final-message and returns the server-final-message. It
// returns ErrScramProof when the proof is wrong (or the exchange is a mock one), and an
// error wrapping ErrScram when the message is malformed.
func (s *ScramServer) ClientFinal(msg []byte) ([]byte, error) {
	if s.step != 1 {
		return nil, fmt.Errorf("%w: unexpected client-final-message", ErrScram)
	}
	s.step = 2
	if len(msg) > maxScramMessage {
		return nil, fmt.Errorf("%w: client-final-message too long", ErrScram)
	}
	m := string(msg)
	i := strings.LastIndex(m, ",p=")
	if i < 0 {
		return nil, fmt.Errorf("%w: no proof", ErrScram)
	}
	withoutProof, proofB64 := m[:i], m[i+3:]
	attrs := strings.Split(withoutProof, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "c=") || !strings.HasPrefix(attrs[1], "r=") {
		return nil, fmt.Errorf("%w: want c=<binding>,r=<nonce>,...,p=<proof>", ErrScram)
	}
	want := []byte(s.gs2Header)
	if s.plus {
		want = append(want, s.ChannelBinding...)
	}
	cbind, err := base64.StdEncoding.DecodeString(attrs[0][2:])
	if err != nil || !hmac.Equal(cbind, want) {
		return nil, fmt.Errorf("%w: SCRAM channel binding check failed", ErrScram)
	}
	if attrs[1][2:] != s.nonce {
		return nil, fmt.Errorf("%w: nonce does not match", ErrScram)
	}
	proof, err := base64.StdEncoding.DecodeString(proofB64)
	if err != nil || len(proof) != sha256.Size {
		return nil, fmt.Errorf("%w: invalid proof", ErrScram)
	}
	authMessage := s.clientFirstBare + "," + s.serverFirst + "," + withoutProof
	clientSig := hmacSHA256(s.secret.StoredKey, authMessage)
	clientKey := make([]byte, sha256.Size)
	for j := range clientKey {
		clientKey[j] = proof[j] ^ clientSig[j]
	}
	stored := sha256.Sum256(clientKey)
	if subtle.ConstantTimeCompare(stored[:], s.secret.StoredKey) != 1 || s.mock {
		return nil, ErrScramProof
	}
	s.clientKey = clientKey
	serverSig := hmacSHA256(s.secret.ServerKey, authMessage)
	return []byte("v=" + base64.StdEncoding.EncodeToString(serverSig)), nil
}

// ClientKey returns the ClientKey recovered from a successful exchange, or nil. With the
// secret's ServerKey it is enough to log in to a server that stores the same secret.
func (s *ScramServer) ClientKey() []byte { return s.clientKey }

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == ',' {
			return false
		}
	}
	return true
}

// ScramClient is the client side of a SCRAM-SHA-256 exchange that logs in with a
// ClientKey and ServerKey instead of a password (SCRAM pass-through).
type ScramClient struct {
	ClientKey, ServerKey []byte
	// Salt and Iterations, when set, must match what the server offers: the keys belong
	// to that salt.
	Salt       []byte
	Iterations int
	// ChannelBinding, when set, is the server's tls-server-end-point data: the client then
	// uses SCRAM-SHA-256-PLUS (see Mechanism).
	ChannelBinding []byte

	clientFirstBare string
	clientNonce     string
	authMessage     string
}

// Mechanism returns the SASL mechanism the client uses.
func (c *ScramClient) Mechanism() string {
	if c.ChannelBinding != nil {
		return ScramPlusMechanism
	}
	return ScramMechanism
}

func (c *ScramClient) gs2Header() string {
	if c.ChannelBinding != nil {
		return "p=tls-server-end-point,,"
	}
	return "n,,"
}

// First returns the client-first-message.
func (c *ScramClient) First() []byte {
	var raw [18]byte
	_, _ = rand.Read(raw[:])
	c.clientNonce = base64.StdEncoding.EncodeToString(raw[:])
	c.clientFirstBare = "n=,r=" + c.clientNonce
	return []byte(c.gs2Header() + c.clientFirstBare)
}

// Final parses the server-first-message and returns the client-final-message.
func (c *ScramClient) Final(serverFirst []byte) ([]byte, error) {
	if len(serverFirst) > maxScramMessage {
		return nil, fmt.Errorf("%w: server-first-message too long", ErrScram)
	}
	attrs := strings.Split(string(serverFirst), ",")
	if len(attrs) < 3 || !strings.HasPrefix(attrs[0], "r=") || !strings.HasPrefix(attrs[1], "s=") || !strings.HasPrefix(attrs[2], "i=") {
		return nil, fmt.Errorf("%w: want r=<nonce>,s=<salt>,i=<iterations>", ErrScram)
	}
	nonce := attrs[0][2:]
	if !strings.HasPrefix(nonce, c.clientNonce) || len(nonce) == len(c.clientNonce) {
		return nil, fmt.Errorf("%w: server nonce does not extend the client's", ErrScram)
	}
	salt, err := base64.StdEncoding.DecodeString(attrs[1][2:])
	if err != nil {
		return nil, fmt.Errorf("%w: invalid salt", ErrScram)
	}
	iter, err := strconv.Atoi(attrs[2][2:])
	if err != nil {
		return nil, fmt.Errorf("%w: invalid iteration count", ErrScram)
	}
	if c.Salt != nil && (!hmac.Equal(salt, c.Salt) || iter != c.Iterations) {
		return nil, errors.New("protocol: the server's SCRAM secret differs from the one the client proved (salt or iterations)")
	}
	cbind := base64.StdEncoding.EncodeToString(append([]byte(c.gs2Header()), c.ChannelBinding...))
	withoutProof := "c=" + cbind + ",r=" + nonce
	c.authMessage = c.clientFirstBare + "," + string(serverFirst) + "," + withoutProof
	stored := sha256.Sum256(c.ClientKey)
	sig := hmacSHA256(stored[:], c.authMessage)
	proof := make([]byte, len(sig))
	for i := range sig {
		proof[i] = c.ClientKey[i] ^ sig[i]
	}
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// Verify checks the server-final-message's signature.
func (c *ScramClient) Verify(serverFinal []byte) error {
	v, ok := strings.CutPrefix(string(serverFinal), "v=")
	if !ok {
		return fmt.Errorf("%w: want v=<signature>", ErrScram)
	}
	sig, err := base64.StdEncoding.DecodeString(v)
	if err != nil || !hmac.Equal(sig, hmacSHA256(c.ServerKey, c.authMessage)) {
		return errors.New("protocol: invalid SCRAM server signature")
	}
	return nil
}

// MD5Secret returns PostgreSQL's md5 secret of a password: "md5" + md5(password + user).
func MD5Secret(user, password string) string {
	sum := md5.Sum([]byte(password + user))
	return "md5" + hex.EncodeToString(sum[:])
}

// IsMD5Secret reports whether s has the form of an md5 secret.
func IsMD5Secret(s string) bool {
	if len(s) != 35 || !strings.HasPrefix(s, "md5") {
		return false
	}
	_, err := hex.DecodeString(s[3:])
	return err == nil
}

// VerifyMD5Response checks a client's PasswordMessage answer to AuthenticationMD5Password
// with salt against a stored md5 secret: the answer is "md5" + md5(secret[3:] + salt).
func VerifyMD5Response(secret string, salt [4]byte, response string) bool {
	sum := md5.Sum(append([]byte(secret[3:]), salt[:]...))
	want := "md5" + hex.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(want), []byte(response)) == 1
}
