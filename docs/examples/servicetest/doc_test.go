package servicetest_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTestingDocShowsThisTest keeps docs/testing.md's copy of the example in step with
// orders_test.go.
func TestTestingDocShowsThisTest(t *testing.T) {
	doc, err := os.ReadFile("../../testing.md")
	require.NoError(t, err)
	src, err := os.ReadFile("orders_test.go")
	require.NoError(t, err)
	i := strings.Index(string(src), "// startPostgres runs")
	require.Positive(t, i)
	require.Contains(t, string(doc), "```go\n"+string(src[i:])+"```\n", "docs/testing.md shows orders_test.go from startPostgres on")
}
