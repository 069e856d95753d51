package main

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/cmlite/cmpool/pool"
)

// These tests parse the deployment files in docs/deploy and check what cmpool relies on.
// .ci/run also builds the Dockerfile and runs the compose stack (docs/deploy/local); the
// Kubernetes manifests are only parsed.

const deployDir = "../../docs/deploy"

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, path)
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	require.NotEmpty(t, docs, path)
	return docs
}

// dig follows keys (string keys of maps, int indexes of lists) through decoded YAML.
func dig(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, k := range path {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			require.True(t, ok, "%v: not a map at %q", path, k)
			v, ok = m[k]
			require.True(t, ok, "%v: no key %q", path, k)
		case int:
			l, ok := v.([]any)
			require.True(t, ok, "%v: not a list at %d", path, k)
			require.Less(t, k, len(l))
			v = l[k]
		}
	}
	return v
}

// checkCmpoolTOML loads a configuration file as the binary does, with env, and builds the
// pool.Config from it. The deployment must not be a trust pooler: no trust anywhere, and
// credentials for clients to prove (New logs an error when there are none).
func checkCmpoolTOML(t *testing.T, toml string, env envMap) settings {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cmpool.toml")
	require.NoError(t, os.WriteFile(path, []byte(toml), 0o600))
	s, err := loadConfig([]string{"--config", path}, env.get)
	require.NoError(t, err)
	var logs strings.Builder
	cfg := s.poolConfig(slog.New(slog.NewTextHandler(&logs, nil)))
	_, err = pool.New(cfg)
	require.NoError(t, err)
	require.NotContains(t, logs.String(), "level=ERROR", "a deployment whose clients can all log in")
	require.Equal(t, pool.AuthSCRAM, cfg.AuthType, "deployments ask clients for passwords")
	for name, d := range cfg.Databases {
		require.NotEqual(t, pool.AuthTrust, d.AuthType, "database %s", name)
	}
	for name, u := range cfg.Users {
		require.NotEqual(t, pool.AuthTrust, u.AuthType, "user %s", name)
	}
	return s
}

func TestDeployCompose(t *testing.T) {
	compose := yamlDocs(t, filepath.Join(deployDir, "docker-compose.yml"))[0]
	for _, name := range []string{"primary", "replica", "lb", "prometheus"} {
		dig(t, compose, "services", name, "image")
	}
	toml, err := os.ReadFile(filepath.Join(deployDir, "cmpool.toml"))
	require.NoError(t, err)
	for i, name := range []string{"cmpool1", "cmpool2", "cmpool3"} {
		svc := dig(t, compose, "services", name)
		require.Equal(t, "docs/deploy/Dockerfile", dig(t, svc, "build", "dockerfile"))
		envs := dig(t, svc, "environment").(map[string]any)
		env := envMap{}
		for k, v := range envs {
			env[k] = v.(string)
		}
		s := checkCmpoolTOML(t, string(toml), env)
		require.Equal(t, count(i+1), s.PeerID)
		require.Len(t, s.Peers, 3)
		require.Equal(t, name+":6433", s.Peers[string(rune('1'+i))], "the peer address of %s", name)
		require.NotEmpty(t, s.Replicas)
	}
	prom := yamlDocs(t, filepath.Join(deployDir, "prometheus.yml"))[0]
	require.Len(t, dig(t, prom, "scrape_configs", 0, "static_configs", 0, "targets"), 3)
	for _, f := range []string{"Dockerfile", "haproxy.cfg", "initdb-replication.sh", "cmpool.service", "cmpool@.service"} {
		data, err := os.ReadFile(filepath.Join(deployDir, f))
		require.NoError(t, err)
		require.NotRegexp(t, `(?i)(auth[_-]type\W+trust|CMPOOL_AUTH_TYPE\W+trust)`, string(data), "%s sets trust", f)
	}
}

func TestDeployKubernetes(t *testing.T) {
	docs := yamlDocs(t, filepath.Join(deployDir, "kubernetes", "cmpool.yaml"))
	byKind := map[string]map[string]any{}
	for _, d := range docs {
		kind, _ := d["kind"].(string)
		require.NotEmpty(t, d["apiVersion"], kind)
		require.NotEmpty(t, dig(t, d, "metadata", "name"), kind)
		byKind[kind] = d
	}
	for _, kind := range []string{"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"} {
		require.Contains(t, byKind, kind)
	}

	// The ConfigMap's file is a valid cmpool configuration.
	toml := dig(t, byKind["ConfigMap"], "data", "cmpool.toml").(string)
	checkCmpoolTOML(t, toml, envMap{"DATABASE_URL": "postgres://app:PASSWORD@pg-primary/app", "REPLICA_URLS": "postgres://app:PASSWORD@pg-replica/app"})

	pod := dig(t, byKind["Deployment"], "spec", "template", "spec")
	container := dig(t, pod, "containers", 0)
	require.Equal(t, "/readyz", dig(t, container, "readinessProbe", "httpGet", "path"))
	require.Equal(t, "/healthz", dig(t, container, "livenessProbe", "httpGet", "path"))
	dig(t, container, "lifecycle", "preStop")
	// The grace period covers the preStop pause and the whole drain.
	grace := dig(t, pod, "terminationGracePeriodSeconds").(int)
	pause := dig(t, container, "lifecycle", "preStop", "sleep", "seconds").(int)
	require.Greater(t, grace, pause+int(pool.DefaultShutdownTimeout.Seconds()))
	require.Equal(t, "ClientIP", dig(t, byKind["Service"], "spec", "sessionAffinity"))
	require.Equal(t, "cpu", dig(t, byKind["HorizontalPodAutoscaler"], "spec", "metrics", 0, "resource", "name"))
}

func TestDeploySystemdUnits(t *testing.T) {
	for _, f := range []string{"cmpool.service", "cmpool@.service"} {
		data, err := os.ReadFile(filepath.Join(deployDir, f))
		require.NoError(t, err)
		unit := string(data)
		for _, want := range []string{"[Unit]", "[Service]", "[Install]", "ExecStart=/usr/local/bin/cmpool serve", "KillSignal=SIGTERM"} {
			require.Contains(t, unit, want, f)
		}
		// systemd must wait longer than the drain before it kills.
		require.True(t, strings.Contains(unit, "TimeoutStopSec=40"), f)
	}
}
