package pool

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFuncVolatilityCachesAnswers(t *testing.T) {
	var fv funcVolatility
	asked := map[string]int{}
	volatile := map[string]bool{"db\x00now_ish": true}
	failing := true
	lookup := func(db string) func(context.Context, string) (bool, error) {
		return func(_ context.Context, f string) (bool, error) {
			asked[db+"."+f]++
			if f == "flaky" && failing {
				return true, errors.New("no primary")
			}
			return volatile[db+"\x00"+f], nil
		}
	}
	ctx, log := context.Background(), slog.New(slog.DiscardHandler)

	require.False(t, fv.any(ctx, log, "db", []string{"stable_a", "stable_b"}, lookup("db")))
	require.False(t, fv.any(ctx, log, "db", []string{"stable_a", "stable_b"}, lookup("db")))
	require.Equal(t, 1, asked["db.stable_a"], "answers are cached")
	require.Equal(t, 1, asked["db.stable_b"])

	require.True(t, fv.any(ctx, log, "db", []string{"stable_a", "now_ish", "later"}, lookup("db")))
	require.Zero(t, asked["db.later"], "the first volatile function decides")
	require.True(t, fv.any(ctx, log, "db", []string{"now_ish"}, lookup("db")))
	require.Equal(t, 1, asked["db.now_ish"])

	require.False(t, fv.any(ctx, log, "other", []string{"now_ish"}, lookup("other")), "per database")

	require.True(t, fv.any(ctx, log, "db", []string{"flaky"}, lookup("db")), "a failed lookup counts as volatile")
	failing = false
	require.False(t, fv.any(ctx, log, "db", []string{"flaky"}, lookup("db")), "and is not cached")
	require.Equal(t, 2, asked["db.flaky"])

	fv.clear()
	require.False(t, fv.any(ctx, log, "db", []string{"stable_a"}, lookup("db")))
	require.Equal(t, 2, asked["db.stable_a"], "clear forgets")
}
