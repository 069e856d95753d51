package router

import "math/bits"

// Glance is what one pass over a query's text found of the words cmpool's checks look
// for (GlanceAt): each bit tells that the text contains a word, in any case. A simple
// query is judged by several checks (cmpool's own commands, session state, temporary
// objects, SQL PREPARE), each of which looked for its words with ContainsFold, scanning
// the text again each time; with a Glance the text is scanned once.
type Glance uint16

// The words a Glance looks for, as ContainsFold would.
const (
	MentionsCmpool       Glance = 1 << iota // "cmpool.": one of cmpool's parameters
	MentionsWithHold                        // "with hold"
	MentionsDeclare                         // "declare"
	MentionsAdvisoryLock                    // "advisory_lock"
	MentionsTemp                            // "temp"
	MentionsPrepare                         // "prepare"
	MentionsExecute                         // "execute"
	MentionsDeallocate                      // "deallocate"
	MentionsUnlock                          // "unlock"

	glanced // a Glance was made: the zero Glance is none
)

// glanceWords are the words of the Glance bits, in bit order.
var glanceWords = [...]string{"cmpool.", "with hold", "declare", "advisory_lock", "temp", "prepare", "execute", "deallocate", "unlock"}

// glanceFirst[b] holds the bits of the words whose first byte is b, in either case.
var glanceFirst = func() (t [256]Glance) {
	for i, w := range glanceWords {
		c := w[0]
		t[c] |= 1 << i
		if 'a' <= c && c <= 'z' {
			t[c-('a'-'A')] |= 1 << i
		}
	}
	return t
}()

// GlanceAt scans q once for every word of a Glance. A byte that starts a word not found
// yet has the next byte compared first, and only then the rest of the word: in SQL most
// letters that start a word are followed by another.
func GlanceAt(q string) Glance {
	g := glanced
	for i := 0; i+1 < len(q); i++ {
		m := glanceFirst[q[i]] &^ g
		if m == 0 {
			continue
		}
		next := q[i+1]
		if 'A' <= next && next <= 'Z' {
			next += 'a' - 'A'
		}
		for ; m != 0; m &= m - 1 {
			k := bits.TrailingZeros16(uint16(m))
			if w := glanceWords[k]; w[1] == next && hasLowerPrefix(q[i+2:], w[2:]) {
				g |= 1 << k
			}
		}
	}
	return g
}

// Has reports whether the text mentions every word of m.
func (g Glance) Has(m Glance) bool { return g&m == m }

// MayUsePreparedSQL reports whether the text g was made of may be PREPARE, EXECUTE or
// DEALLOCATE, or hold one (PreparedSQLOf): false when it mentions none of them.
func (g Glance) MayUsePreparedSQL() bool {
	return g&(MentionsPrepare|MentionsExecute|MentionsDeallocate) != 0
}

// PinsSession is PinsSession of the text g was made of.
func (g Glance) PinsSession() bool {
	return g.Has(MentionsWithHold|MentionsDeclare) || g.Has(MentionsAdvisoryLock)
}
