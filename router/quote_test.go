package router_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/router"
)

func TestQuote(t *testing.T) {
	require.Equal(t, `"work_mem"`, router.QuoteIdent("work_mem"))
	require.Equal(t, `"a""b"`, router.QuoteIdent(`a"b`))
	require.Equal(t, `'UTC'`, router.QuoteLiteral("UTC"))
	require.Equal(t, `'it''s'`, router.QuoteLiteral("it's"))
	require.Equal(t, `E'c:\\dir''s'`, router.QuoteLiteral(`c:\dir's`))
}
