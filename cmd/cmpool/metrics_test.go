package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v2"

	"github.com/cmlite/cmpool/pool"
)

// TestOpsFilesUseRealMetrics checks that every cmpool metric the alert rules and the
// Grafana dashboard query is one the binary exports, and that the rules file parses.
func TestOpsFilesUseRealMetrics(t *testing.T) {
	m := newMetrics()
	exported := map[string]bool{}
	descs := make(chan *prometheus.Desc, 256)
	go func() {
		m.registry.Describe(descs)
		close(descs)
	}()
	name := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	for d := range descs {
		if sm := name.FindStringSubmatch(d.String()); sm != nil {
			exported[sm[1]] = true
		}
	}
	require.True(t, exported["cmpool_query_duration_seconds"])

	rules, err := os.ReadFile("../../docs/ops/alerts.yml")
	require.NoError(t, err)
	var parsed struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(rules, &parsed))
	require.NotEmpty(t, parsed.Groups)
	alerts := map[string]bool{}
	for _, r := range parsed.Groups[0].Rules {
		alerts[r.Alert] = true
		require.NotEmpty(t, r.Expr, r.Alert)
	}
	for _, a := range []string{"CmpoolHighQueryLatencyP95", "CmpoolClientsWaiting", "CmpoolPoolExhausted"} {
		require.True(t, alerts[a], "the deployment guide's alert %s", a)
	}
	dashboard, err := os.ReadFile("../../docs/ops/grafana-dashboard.json")
	require.NoError(t, err)

	used := regexp.MustCompile(`cmpool_[a-z_]+`)
	for _, file := range [][]byte{rules, dashboard} {
		for _, n := range used.FindAllString(string(file), -1) {
			base := n
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				base = strings.TrimSuffix(base, suffix)
			}
			require.True(t, exported[base] || exported[n], "%s is not a metric cmpool exports", n)
		}
	}
	// And docs/operations.md lists every metric the binary exports.
	ops, err := os.ReadFile("../../docs/operations.md")
	require.NoError(t, err)
	for n := range exported {
		if !strings.HasPrefix(n, "cmpool_") {
			continue // the Go and process collectors' own
		}
		require.Contains(t, string(ops), "`"+n+"`", "docs/operations.md does not list %s", n)
	}
}

// BenchmarkObserve is what the metrics cost each request: a query and a transaction
// observed, as for an autocommit statement.
func BenchmarkObserve(b *testing.B) {
	m := newMetrics()
	q := pool.Event{Kind: pool.EventQuery, Database: "app", User: "app", Backend: "primary", Duration: time.Millisecond}
	x := q
	x.Kind = pool.EventTransaction
	b.ReportAllocs()
	for b.Loop() {
		m.Observe(q)
		m.Observe(x)
	}
}
