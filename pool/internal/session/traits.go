package session

import "github.com/cmlite/cmpool/router"

// Traits is what cmpool needs to know about a statement's text to keep a session's
// state: the parameters it may change or reset, and whether it uses something that
// outlives its transaction on the server.
type Traits struct {
	Track        []string // parameters it may change ("*" for RESET ALL)
	SessionBound bool     // uses something that outlives the transaction on the server
	// MentionsTemp: the text mentions temporary objects without creating one cmpool can
	// see (ON COMMIT DROP, a DO block, …); the server is checked for them when released.
	MentionsTemp bool
	// Resets are the parameters it returns to their reset values (ResetAll for RESET ALL
	// and DISCARD ALL).
	Resets []string
	// Untracked: it may change settings it does not name (set_config, DO, …); Opaque:
	// custom ones whose names it does not give either; SettingNames are custom
	// parameters it names, SettingFuncs the user-defined functions it calls, which may
	// change settings too (shared, read only; see router.Verdict).
	Untracked, Opaque          bool
	SettingNames, SettingFuncs []string
	// Pins: it may take a session advisory lock or declare a WITH HOLD cursor
	// (router.PinsSession), session state that pins the client to its server outside
	// session mode (pool/internal/lease/pin.go).
	Pins bool
	// TempObject: it creates a temporary object that can outlive its transaction
	// (router.TempObject). MayRelease: it may release session state that pins
	// (router.MayReleaseSession). Both are set for prepared statements only
	// (lease.StatementJudge): the simple protocol judges the text as it is sent.
	TempObject, MayRelease bool
}

// TraitsOf inspects the first statement of a query.
func TraitsOf(q string) Traits {
	kind, name := router.CommandOf(q)
	return TraitsOfJudged(q, kind, name, router.GlanceAt(q))
}

// TraitsOfJudged is TraitsOf for a query whose first command (router.CommandOf) and
// glance (router.GlanceAt) are known.
func TraitsOfJudged(q string, kind router.Command, name string, g router.Glance) Traits {
	var t Traits
	t.Resets = ResetsOfQuery(q, kind, name)
	switch kind {
	case router.CommandSet, router.CommandReset:
		switch {
		case name == "characteristics":
			t.Track = router.CharacteristicsParams
		case name == "timezone" || name == "session_authorization":
			// Reported by the server: ParameterStatus covers it.
		default:
			if !IsReported(name) || name == "search_path" {
				t.Track = []string{name}
			}
		}
	case router.CommandResetAll:
		t.Track = []string{"*"}
	case router.CommandListen:
		// Answered by cmpool as a simple query; through the extended protocol it reaches
		// the server, so the server is reset before anyone else gets it. (SQL PREPARE is
		// mapped to cmpool's statement names, or refused through the extended protocol.)
		t.SessionBound = true
		return t
	}
	t.Pins = g.PinsSession()
	t.SessionBound = t.Pins
	t.MentionsTemp = g.Has(router.MentionsTemp)
	return t
}

// WithSettingEffects adds to t what the classifier says of how q may change settings
// without naming them. Statements that differ only in numbers share a verdict.
func WithSettingEffects(cl *router.Classifier, q string, t Traits) Traits {
	if cl == nil || !router.MayChangeSettings(q) {
		return t
	}
	v := cl.ClassifyWithoutNumbers(q)
	t.Untracked, t.Opaque = v.UntrackedSettings, v.OpaqueSettings
	t.SettingNames, t.SettingFuncs = v.SettingNames, v.SettingFuncs
	return t
}
