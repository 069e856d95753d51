package auth

// Passthrough is what a client's SCRAM exchange proved: enough to log in to a server
// that stores the same SCRAM secret, without the password.
type Passthrough struct {
	ClientKey, ServerKey []byte
	Salt                 []byte
	Iterations           int
	// MD5 is the user's stored md5 secret, after a client proved it: enough to answer a
	// server's md5 challenge.
	MD5 string
	// Password is the cleartext password a client logged in with (method password), for
	// a user whose stored secret is a hash.
	Password string
}

// setPassthrough records what a client of user proved; update changes a copy of the
// previous record.
func (a *Authenticator) setPassthrough(user string, update func(k *Passthrough)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var k Passthrough
	if old := a.passthrough[user]; old != nil {
		k = *old
	}
	update(&k)
	a.passthrough[user] = &k
}

// PassthroughFor returns the keys a client of user proved, or nil.
func (a *Authenticator) PassthroughFor(user string) *Passthrough {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.passthrough[user]
}
