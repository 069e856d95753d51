package pool

import (
	"slices"
	"strings"
	"sync"

	"github.com/cmlite/cmpool/pool/internal/session"
)

// Clients of one application usually log in with the same startup parameters (its
// application_name, client_encoding, DateStyle…). Each client's settings would hold a map
// of them, about 330 bytes even for one parameter, for the whole life of an idle
// connection. So the clients that logged in with the same parameters share one map, which
// their settings never write: a client copies it at its first change
// (session.NewSharedSettings).

// maxSharedParams bounds the distinct parameter sets shared; past it, a new set is the
// client's own, as when applications put a unique value in a parameter.
const maxSharedParams = 1024

// sharedParams holds the startup parameter maps shared by clients, by their contents.
// The zero value is empty and ready.
type sharedParams struct {
	mu   sync.Mutex
	sets map[string]map[string]string // guarded by mu; never written once stored
}

// settings returns session settings holding params, shared with the clients that logged in
// with the same parameters.
func (p *sharedParams) settings(params map[string]string) session.Settings {
	names := make([]string, 0, len(params))
	for n := range params {
		names = append(names, n)
	}
	slices.Sort(names)
	var key strings.Builder
	for _, n := range names {
		key.WriteString(n)
		key.WriteByte(0)
		key.WriteString(params[n])
		key.WriteByte(0)
	}
	k := key.String()
	p.mu.Lock()
	defer p.mu.Unlock()
	if shared, ok := p.sets[k]; ok {
		return session.NewSharedSettings(shared)
	}
	if len(p.sets) >= maxSharedParams {
		return session.NewSettings(params)
	}
	if p.sets == nil {
		p.sets = make(map[string]map[string]string)
	}
	p.sets[k] = params
	return session.NewSharedSettings(params)
}
