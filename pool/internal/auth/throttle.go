package auth

import "time"

// failureWindow is the window Options.FailureLimit counts failed logins in.
const failureWindow = time.Minute

// failWindow counts the failed logins of one address since start.
type failWindow struct {
	start time.Time
	n     int
}

// throttled reports whether addr has had too many failed logins in the current window.
func (a *Authenticator) throttled(host string) bool {
	if a.cfg.FailureLimit < 0 {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.fails[host]
	return w != nil && time.Since(w.start) < failureWindow && w.n >= a.cfg.FailureLimit
}

// failed counts a failed login from host.
func (a *Authenticator) failed(host string) {
	if a.cfg.FailureLimit < 0 {
		return
	}
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.fails[host]
	if w == nil || now.Sub(w.start) >= failureWindow {
		if len(a.fails) > 10_000 {
			for h, old := range a.fails {
				if now.Sub(old.start) >= failureWindow {
					delete(a.fails, h)
				}
			}
		}
		w = &failWindow{start: now}
		a.fails[host] = w
	}
	w.n++
}
