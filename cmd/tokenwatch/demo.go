package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/exporter-toolkit/web"

	"github.com/tokenwatch/tokenwatch/configs"
	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

// demoSchedule is short so the demo shows movement within seconds.
const demoSchedule = "@every 15s"

// demoWorld is the set of simulated orgs the demo runs against.
type demoWorld struct {
	orgs   []*orgsim.Org
	dir    string
	config []byte
	// stop ends the ticker that flips the flaky org's permission.
	stop chan struct{}
}

// newDemoWorld starts the simulated orgs and writes the key file the JWT org needs.
func newDemoWorld() (*demoWorld, error) {
	dir, err := os.MkdirTemp("", "tokenwatch-demo-")
	if err != nil {
		return nil, fmt.Errorf("demo: temporary folder: %w", err)
	}
	w := &demoWorld{dir: dir, stop: make(chan struct{})}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("demo: key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("demo: key: %w", err)
	}
	keyFile := filepath.Join(dir, "jwt-key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("demo: key: %w", err)
	}

	// One production-like org holds the healthy connections of every grant.
	acme := orgsim.New(orgsim.Options{OrgID: "00D5e000000ACMEEAA"})
	acme.AddUser(orgsim.User{Username: "integration@acme.example", Password: "demo-password", SecurityToken: "DEMOTOKEN"})
	acme.AddUser(orgsim.User{Username: "jwt@acme.example", Password: "unused-password"})
	acme.AddApp(orgsim.App{ClientID: "acme-cc-app", ClientSecret: "acme-cc-secret", RunAsUser: "integration@acme.example", Scope: "api"})
	acme.AddApp(orgsim.App{ClientID: "acme-jwt-app", CertificateKey: &key.PublicKey, PreApproved: []string{"jwt@acme.example"}, Scope: "api refresh_token"})
	acme.AddApp(orgsim.App{ClientID: "acme-password-app", ClientSecret: "acme-password-secret", IntrospectAll: true})
	acme.AddApp(orgsim.App{ClientID: "acme-refresh-app", ClientSecret: "acme-refresh-secret", RefreshTokenRotation: true, Scope: "api refresh_token"})

	// The seed's case: a password-grant connection whose app may not introspect session ids.
	seed := orgsim.New(orgsim.Options{OrgID: "00D5e000000SEEDEAA"})
	seed.AddUser(orgsim.User{Username: "engineer@seed.example", Password: "demo-password", SecurityToken: "DEMOTOKEN"})
	seed.AddApp(orgsim.App{ClientID: "seed-app", ClientSecret: "seed-secret"})

	// An org whose introspection permission is switched off and on again now and then.
	flaky := orgsim.New(orgsim.Options{OrgID: "00D5e000000FLAKEAA"})
	flaky.AddUser(orgsim.User{Username: "ops@flaky.example", Password: "demo-password", SecurityToken: "DEMOTOKEN"})
	flaky.AddApp(orgsim.App{ClientID: "flaky-app", ClientSecret: "flaky-secret", IntrospectAll: true})

	// A slow org, so latency panels have something to show.
	slow := orgsim.New(orgsim.Options{OrgID: "00D5e000000SLOWEAA"})
	slow.AddUser(orgsim.User{Username: "batch@slow.example", Password: "demo-password"})
	slow.AddApp(orgsim.App{ClientID: "slow-app", ClientSecret: "slow-secret", RunAsUser: "batch@slow.example"})
	slow.SetFault(orgsim.EndpointToken, orgsim.Fault{Latency: 250 * time.Millisecond})

	w.orgs = []*orgsim.Org{acme, seed, flaky, slow}
	for _, o := range w.orgs {
		if err := o.Start(); err != nil {
			w.Close()
			return nil, fmt.Errorf("demo: start simulated org: %w", err)
		}
	}
	refresh, err := acme.IssueRefreshToken("acme-refresh-app", "integration@acme.example")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("demo: refresh token: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "refresh-token"), []byte(refresh+"\n"), 0o600); err != nil {
		w.Close()
		return nil, fmt.Errorf("demo: refresh token: %w", err)
	}

	w.config = fmt.Appendf(nil, demoConfig, demoSchedule,
		acme.URL(), acme.URL(), acme.URL(), acme.URL(), seed.URL(), flaky.URL(), slow.URL())
	go w.flip(flaky, "flaky-app")
	return w, nil
}

// flip switches "Introspect All Tokens" off for a minute every three minutes.
func (w *demoWorld) flip(o *orgsim.Org, clientID string) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-w.stop:
			return
		case <-t.C:
			o.SetIntrospectAll(clientID, n%3 != 2)
		}
	}
}

// Close stops the simulated orgs and removes the temporary files.
func (w *demoWorld) Close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	for _, o := range w.orgs {
		o.Close()
	}
	os.RemoveAll(w.dir)
}

// load parses the demo's configuration, as a file would be.
func (w *demoWorld) load() (*configs.Config, error) {
	return configs.Parse(w.config, w.dir, os.Environ())
}

const demoConfig = `# The demo's configuration: simulated orgs on loopback.
global:
  schedule: %q
  timeout: 5s
orgs:
  - name: acme-client-credentials
    provider: salesforce
    url: %s
    client: {id: acme-cc-app, secret: acme-cc-secret}
    grant: {type: client_credentials}
    labels: {team: crm, env: demo}
    expect: {scope_includes: [api]}
  - name: acme-jwt-bearer
    provider: salesforce
    url: %s
    client: {id: acme-jwt-app, auth_method: none}   # the signed assertion is the credential
    grant: {type: jwt_bearer, username: jwt@acme.example, private_key_file: jwt-key.pem}
    labels: {team: crm, env: demo}
  - name: acme-password-introspect-all
    provider: salesforce
    url: %s
    client: {id: acme-password-app, secret: acme-password-secret}
    grant: {type: password, username: integration@acme.example, password: demo-passwordDEMOTOKEN}
    labels: {team: crm, env: demo}
  - name: acme-refresh-token
    provider: salesforce
    url: %s
    client: {id: acme-refresh-app, secret: acme-refresh-secret}
    grant: {type: refresh_token, refresh_token_file: refresh-token}
    labels: {team: crm, env: demo}
  - name: seed-password-grant
    provider: salesforce
    url: %s
    client: {id: seed-app, secret: seed-secret}
    grant: {type: password, username: engineer@seed.example, password: demo-passwordDEMOTOKEN}
    labels: {team: integrations, env: demo}
  - name: flaky-introspection
    provider: salesforce
    url: %s
    client: {id: flaky-app, secret: flaky-secret}
    grant: {type: password, username: ops@flaky.example, password: demo-passwordDEMOTOKEN}
    labels: {team: ops, env: demo}
  - name: slow-token-endpoint
    provider: salesforce
    url: %s
    client: {id: slow-app, secret: slow-secret}
    grant: {type: client_credentials}
    labels: {team: batch, env: demo}
`

// runDemo is `tokenwatch demo`.
func runDemo(logger *slog.Logger, webFlags *web.FlagConfig, stdout io.Writer) int {
	w, err := newDemoWorld()
	if err != nil {
		logger.Error("demo failed to start", "err", err)
		return exitUnhealthy
	}
	defer w.Close()
	addr := "localhost" + defaultListen
	if webFlags.WebListenAddresses != nil && len(*webFlags.WebListenAddresses) > 0 {
		addr = (*webFlags.WebListenAddresses)[0]
		if strings.HasPrefix(addr, ":") {
			addr = "localhost" + addr
		}
	}
	return runDaemon(daemonOptions{
		logger: logger,
		web:    webFlags,
		load:   w.load,
		started: func() {
			fmt.Fprintf(stdout, `tokenwatch demo: %d connections to %d simulated orgs, checked every 15s.
  status page   http://%[3]s/
  metrics       http://%[3]s/metrics
  org state     http://%[3]s/api/v1/orgs
  probe one org http://%[3]s/probe?org=seed-password-grant
The org "seed-password-grant" is the permission-gap case: a working password-grant token that its own
connected app may not introspect (introspection_not_permitted). "flaky-introspection" loses its
introspection permission for a minute every three minutes. Stop with Ctrl-C.
`, strings.Count(string(w.config), "\n  - name: "), len(w.orgs), addr)
		},
	})
}
