package router

// Exported for the tests of router_test.
var (
	PlainExecute         = plainExecute
	PreparedSQLByGrammar = preparedSQLByGrammar
	ReservedWords        = reservedWords
)
