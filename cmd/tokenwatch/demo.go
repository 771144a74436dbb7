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

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/tokenwatch/tokenwatch/configs"
	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

// demoSchedule is short so the demo shows movement within seconds.
const demoSchedule = "@every 15s"

// demoOptions are the demo's own flags.
type demoOptions struct {
	// webhookURL and alertmanagerURL, when set, receive the demo's alerts.
	webhookURL, alertmanagerURL string
	// flipInterval paces the flaky org: its introspection permission is off
	// for one interval in every three.
	flipInterval time.Duration
	// schedule is every org's check schedule.
	schedule string
	// externalURL is --web.external-url (set by realMain).
	externalURL string
}

// addDemoFlags registers the demo's flags on its command.
func addDemoFlags(cmd *kingpin.CmdClause) *demoOptions {
	o := &demoOptions{}
	cmd.Flag("demo.webhook-url", "Send the demo's alerts to this webhook (Alertmanager's webhook payload), e.g. http://127.0.0.1:8080/.").
		Default("").StringVar(&o.webhookURL)
	cmd.Flag("demo.alertmanager-url", "Send the demo's alerts to this Alertmanager, e.g. http://127.0.0.1:9093.").
		Default("").StringVar(&o.alertmanagerURL)
	cmd.Flag("demo.flip-interval", "How long the flaky org keeps or loses its introspection permission: it is off one interval in three.").
		Default("1m").Hidden().DurationVar(&o.flipInterval)
	cmd.Flag("demo.schedule", "Check schedule of the demo's orgs.").Default(demoSchedule).Hidden().StringVar(&o.schedule)
	return o
}

// demoWorld is the set of simulated orgs the demo runs against.
type demoWorld struct {
	orgs   []*orgsim.Org
	dir    string
	config []byte
	// stop ends the ticker that flips the flaky org's permission.
	stop chan struct{}
}

// newDemoWorld starts the simulated orgs and writes the key file the JWT org needs.
func newDemoWorld(opts demoOptions) (*demoWorld, error) {
	if opts.flipInterval <= 0 {
		opts.flipInterval = time.Minute
	}
	if opts.schedule == "" {
		opts.schedule = demoSchedule
	}
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
	acme.AddApp(orgsim.App{ClientID: "acme-jwt-app", ClientSecret: "acme-jwt-secret", CertificateKey: &key.PublicKey, PreApproved: []string{"jwt@acme.example"}, Scope: "api refresh_token"})
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

	w.config = fmt.Appendf(nil, demoConfig, opts.schedule,
		acme.URL(), acme.URL(), acme.URL(), acme.URL(), seed.URL(), flaky.URL(), slow.URL())
	w.config = append(w.config, demoAlerting(opts)...)
	go w.flip(flaky, "flaky-app", opts.flipInterval)
	return w, nil
}

// demoAlerting is the alerting section: thresholds always, so the status
// of alerts shows; destinations when the flags name some.
func demoAlerting(opts demoOptions) []byte {
	b := []byte("alerting:\n  failure_threshold: 2\n  success_threshold: 1\n  resend_interval: 1m\n")
	if opts.alertmanagerURL != "" {
		b = fmt.Appendf(b, "  alertmanagers:\n    - url: %q\n", opts.alertmanagerURL)
	}
	if opts.webhookURL != "" {
		b = fmt.Appendf(b, "  webhooks:\n    - url: %q\n", opts.webhookURL)
	}
	return b
}

// flip switches "Introspect All Tokens" off for one interval in three
// (by default a minute every three minutes).
func (w *demoWorld) flip(o *orgsim.Org, clientID string, every time.Duration) {
	t := time.NewTicker(every)
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
    introspection: {client: {id: acme-jwt-app, secret: acme-jwt-secret}}   # Salesforce's introspection needs the secret
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
func runDemo(logger *slog.Logger, webFlags *web.FlagConfig, opts demoOptions, storage string, stdout io.Writer) int {
	if storage == "" {
		dir, err := os.MkdirTemp("", "tokenwatch-demo-")
		if err != nil {
			logger.Error("cannot make the demo's state directory", "err", err)
			return exitUnhealthy
		}
		defer os.RemoveAll(dir)
		storage = dir
	}
	w, err := newDemoWorld(opts)
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
		storage:     storage,
		logger:      logger,
		web:         webFlags,
		load:        w.load,
		externalURL: opts.externalURL,
		started: func() {
			alerts := "Its alerts go nowhere unless you add --demo.webhook-url=URL or --demo.alertmanager-url=URL.\n"
			if opts.webhookURL != "" || opts.alertmanagerURL != "" {
				alerts = "Alerts (TokenIntrospectionInactive for the seed and flaky orgs) go to the given destinations.\n"
			}
			fmt.Fprintf(stdout, `tokenwatch demo: %[1]d connections to %[2]d simulated orgs, checked %[4]s.
  status page   http://%[3]s/
  metrics       http://%[3]s/metrics
  org state     http://%[3]s/api/v1/orgs
  probe one org http://%[3]s/probe?org=seed-password-grant
The org "seed-password-grant" is the permission-gap case: a working password-grant token that its own
connected app may not introspect (introspection_not_permitted). "flaky-introspection" loses its
introspection permission for %[5]s in every %[6]s. %[7]sStop with Ctrl-C.
`, strings.Count(string(w.config), "\n  - name: "), len(w.orgs), addr, strings.TrimPrefix(opts.schedule, "@"),
				opts.flipInterval, 3*opts.flipInterval, alerts)
		},
	})
}
