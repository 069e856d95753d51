package lease

import "github.com/cmlite/cmpool/router"

// Judged is what the checks of one simple query share, so that none scans its text
// again: a glance for the words they look for, its first command, and, once asked, the
// temporary object it creates. The client goroutine judges a simple query in several
// places (cmpool's own commands, session state, SQL PREPARE, then send); the last query
// judged is kept (Client.Judge).
type Judged struct {
	Q    string
	G    router.Glance
	Kind router.Command
	Name string

	temp      string // TempObjectOf(Q), once tempKnown
	tempKnown bool
}

// Judge returns what the checks of simple query q share: the last query's when q is the
// same text, else made now. The client goroutine's only. There is one Judged per client:
// a call for another text overwrites what an earlier call returned.
func (c *Client) Judge(q string) *Judged {
	j := c.judged
	if j == nil {
		j = new(Judged)
		c.judged = j
	}
	if j.G != 0 && j.Q == q {
		return j
	}
	*j = Judged{Q: q, G: router.GlanceAt(q)}
	j.Kind, j.Name = router.CommandOf(q)
	return j
}

// TempObject is TempObjectOf(j.Q), worked out once.
func (j *Judged) TempObject() string {
	if !j.tempKnown {
		j.tempKnown = true
		if j.G.Has(router.MentionsTemp) {
			j.temp = router.TempObject(j.Q)
		}
	}
	return j.temp
}
