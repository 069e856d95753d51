package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pgbench15Output is what pgbench 15 prints for a select-only run.
const pgbench15Output = `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 10
query mode: simple
number of clients: 50
number of threads: 2
maximum number of tries: 1
duration: 10 s
number of transactions actually processed: 241234
number of failed transactions: 3 (0.001%)
latency average = 2.070 ms
initial connection time = 61.212 ms
tps = 24150.318062 (without initial connection time)
`

func TestParseSummary(t *testing.T) {
	for _, tc := range []struct {
		name    string
		output  string
		want    pgbenchSummary
		wantErr string
	}{
		{"pgbench 15", pgbench15Output, pgbenchSummary{TPS: 24150.318062, Processed: 241234, Failed: 3, AvgMs: 2.070, ConnMs: 61.212}, ""},
		{"no failed line", "number of transactions actually processed: 10\ntps = 5.5 (without initial connection time)\n",
			pgbenchSummary{TPS: 5.5, Processed: 10}, ""},
		{"aborted run", "pgbench: error: client 3 aborted in command 1 (SQL) of script 0; server closed the connection unexpectedly\n",
			pgbenchSummary{}, "no \"tps = N"},
		{"no processed line", "tps = 5.5 (without initial connection time)\n", pgbenchSummary{}, "actually processed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSummary(tc.output)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestPercentile(t *testing.T) {
	hundred := make([]int64, 100)
	for i := range hundred {
		hundred[i] = int64(i + 1)
	}
	for _, tc := range []struct {
		name   string
		sorted []int64
		p      float64
		want   int64
	}{
		{"empty", nil, 50, 0},
		{"single", []int64{7}, 99, 7},
		{"median of odd count", []int64{1, 2, 3}, 50, 2},
		{"median of even count is the lower middle", []int64{1, 2, 3, 4}, 50, 2},
		{"p50 of 1..100", hundred, 50, 50},
		{"p95 of 1..100", hundred, 95, 95},
		{"p99 of 1..100", hundred, 99, 99},
		{"p100 is the maximum", hundred, 100, 100},
		{"tiny p is the minimum", hundred, 0.001, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, percentile(tc.sorted, tc.p))
		})
	}
}

func TestReadLatencies(t *testing.T) {
	dir := t.TempDir()
	// client_id transaction_no time script_no time_epoch time_us, one file per pgbench thread.
	logs := map[string]string{
		"tx.123":   "0 0 1000 0 1700000000 1\n0 1 3000 0 1700000000 2\n1 0 failed 0 1700000000 3\n",
		"tx.123.1": "2 0 2000 0 1700000000 4\n2 1 4000 0 1700000000 5\n",
	}
	for name, content := range logs {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	got, err := readLatencies(dir)
	require.NoError(t, err)
	require.Equal(t, latencyStats{P50: 2, P95: 4, P99: 4, Count: 4, Failed: 1}, got)

	_, err = readLatencies(t.TempDir())
	require.ErrorContains(t, err, "no log files")
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tpgbouncer\nVmPeak:\t   30000 kB\nVmRSS:\t   15772 kB\nRssAnon:\t    4000 kB\n"
	got, err := parseVmRSS(status)
	require.NoError(t, err)
	require.Equal(t, int64(15772*1024), got)

	_, err = parseVmRSS("Name:\tx\n")
	require.ErrorContains(t, err, "no VmRSS")
	_, err = parseVmRSS("VmRSS:\t 12 MB\n")
	require.ErrorContains(t, err, "malformed")
}

func TestConnectAllowance(t *testing.T) {
	require.Equal(t, 10*time.Second, connectAllowance(targetDirect, 1000))
	require.Equal(t, time.Second, connectAllowance(targetCmpool, 1000))
	require.Equal(t, 20*time.Millisecond, connectAllowance(targetPgbouncer, 20))
}

func TestParseStatCPU(t *testing.T) {
	stat := "4242 (pg bouncer) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 25 0 0 20 0 1 0 100 0 0\n"
	got, err := parseStatCPU(stat)
	require.NoError(t, err)
	require.Equal(t, int64(175), got)

	_, err = parseStatCPU("4242 (x) S 1")
	require.Error(t, err)
}
