package lease

// Mode is when a client's server goes back to its pool (pool_mode).
type Mode uint8

const (
	// Session: when the client leaves.
	Session Mode = iota
	// Transaction: at the end of each transaction.
	Transaction
	// Statement: after each statement; transaction blocks are refused.
	Statement
)

var modeNames = [...]string{Session: "session", Transaction: "transaction", Statement: "statement"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return "invalid"
}
