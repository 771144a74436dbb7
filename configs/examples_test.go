package configs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

type exampleCase struct {
	file   string
	env    []string
	files  map[string][]byte // path relative to the example -> content
	grants []string          // grant type of each org, in order
	// check, when set, asserts more of the loaded configuration.
	check func(t *testing.T, cfg *Config)
}

func exampleCases(t *testing.T) []exampleCase {
	rsaKey := mustRead(t, filepath.Join("testdata", "rsa-pkcs8.key"))
	clientCert := mustRead(t, filepath.Join("testdata", "client.crt"))
	return []exampleCase{
		{
			file: "salesforce-password.yml",
			files: map[string][]byte{
				"secrets/acme-client-secret": []byte("consumer-secret\n"),
				"secrets/acme-password":      []byte("mypasswordXXXXXXXXXX\n"),
			},
			grants: []string{"password"},
		},
		{
			file:   "salesforce-jwt.yml",
			env:    []string{"ACME_CLIENT_SECRET=consumer-secret"},
			files:  map[string][]byte{"keys/acme-jwt.key": rsaKey},
			grants: []string{"jwt_bearer"},
		},
		{
			file:   "salesforce-client-credentials.yml",
			env:    []string{"ACME_CLIENT_SECRET=consumer-secret"},
			grants: []string{"client_credentials"},
		},
		{
			file: "salesforce-refresh-token.yml",
			files: map[string][]byte{
				"secrets/acme-client-secret": []byte("consumer-secret\n"),
				"secrets/acme-refresh-token": []byte("5Aep861refresh\n"),
			},
			grants: []string{"refresh_token"},
		},
		{
			file:   "alerting-alertmanager.yml",
			env:    []string{"ACME_CLIENT_SECRET=consumer-secret"},
			files:  map[string][]byte{"secrets/alertmanager-password": []byte("am-password\n"), "certs/monitoring-ca.pem": clientCert},
			grants: []string{"client_credentials"},
			check: func(t *testing.T, cfg *Config) {
				a := cfg.Alerting
				if len(a.Alertmanagers) != 3 || !strings.HasSuffix(a.Alertmanagers[0].HTTPClient.BasicAuth.PasswordFile, "secrets/alertmanager-password") ||
					a.Alertmanagers[2].Timeout.Seconds() != 5 || a.FailureThreshold != 2 || a.ResendInterval.Minutes() != 1 {
					t.Errorf("alerting = %v", a)
				}
			},
		},
		{
			file:   "alerting-webhook.yml",
			env:    []string{"WEBHOOK_HMAC_KEY=hmac-key"},
			files:  map[string][]byte{"secrets/idp-client-secret": []byte("client-secret\n")},
			grants: []string{"client_credentials"},
			check: func(t *testing.T, cfg *Config) {
				w := cfg.Alerting.Webhooks
				if len(w) != 2 || w[0].Secret.Reveal() != "hmac-key" || !w[0].SendResolved || w[1].SendResolved ||
					cfg.Alerting.FailureThreshold != 3 {
					t.Errorf("webhooks = %v, failure_threshold %d", w, cfg.Alerting.FailureThreshold)
				}
			},
		},
		{
			file:   "generic-client-credentials.yml",
			env:    []string{"IDP_CLIENT_SECRET=client-secret", "IDP_INTROSPECTOR_SECRET=introspector-secret"},
			grants: []string{"client_credentials", "client_credentials"},
		},
		{
			// Also run against a real Hydra by e2e/hydra.
			file:   "hydra.yml",
			env:    []string{"HYDRA_CLIENT_SECRET=client-secret", "HYDRA_BEARER_CLIENT_SECRET=bearer-secret"},
			files:  map[string][]byte{"keys/tokenwatch-signed.pem": rsaKey, "keys/tokenwatch-bearer.pem": rsaKey},
			grants: []string{"client_credentials", "client_credentials", "jwt_bearer"},
			check: func(t *testing.T, cfg *Config) {
				for i, o := range cfg.Orgs {
					// Hydra's discovery names no introspection endpoint, and its admin endpoint takes no client auth.
					if !strings.HasSuffix(o.Endpoints.Introspection, "/admin/oauth2/introspect") ||
						o.Introspection.Client == nil || o.Introspection.Client.AuthMethod != "none" {
						t.Errorf("orgs[%d]: introspection_url %q, introspection client %+v; want Hydra's admin endpoint with auth_method none",
							i, o.Endpoints.Introspection, o.Introspection.Client)
					}
				}
				if m := cfg.Orgs[1].Client.AuthMethod; m != "private_key_jwt" {
					t.Errorf("orgs[1].client.auth_method = %q, want private_key_jwt", m)
				}
			},
		},
		{
			file:   "okta.yml",
			env:    []string{"OKTA_CLIENT_SECRET=client-secret"},
			files:  map[string][]byte{"keys/okta-signed-app.pem": rsaKey},
			grants: []string{"client_credentials", "client_credentials"},
			check: func(t *testing.T, cfg *Config) {
				if m := cfg.Orgs[1].Client.AuthMethod; m != "private_key_jwt" || cfg.Orgs[1].Client.KeyID == "" {
					t.Errorf("orgs[1].client: auth_method %q, key_id %q; want private_key_jwt with a key id", m, cfg.Orgs[1].Client.KeyID)
				}
			},
		},
		{
			file:   "keycloak.yml",
			env:    []string{"KEYCLOAK_CLIENT_SECRET=client-secret", "KEYCLOAK_INTROSPECTOR_SECRET=introspector-secret"},
			files:  map[string][]byte{"keys/keycloak-signed.pem": rsaKey},
			grants: []string{"client_credentials", "client_credentials"},
			check: func(t *testing.T, cfg *Config) {
				if ic := cfg.Orgs[0].Introspection.Client; ic == nil || ic.Secret.Reveal() != "introspector-secret" {
					t.Errorf("orgs[0].introspection.client = %+v, want the resource server with its secret", ic)
				}
				if u := cfg.Orgs[1].Endpoints.Introspection; !strings.HasSuffix(u, "/protocol/openid-connect/token/introspect") {
					t.Errorf("orgs[1].introspection_url = %q", u)
				}
			},
		},
		{
			file:   "zitadel.yml",
			env:    []string{"ZITADEL_CLIENT_SECRET=client-secret", "ZITADEL_API_APP_SECRET=api-app-secret"},
			files:  map[string][]byte{"keys/zitadel-api-app.pem": rsaKey},
			grants: []string{"client_credentials", "client_credentials"},
			check: func(t *testing.T, cfg *Config) {
				if ic := cfg.Orgs[1].Introspection.Client; ic == nil || ic.AuthMethod != "private_key_jwt" || ic.PrivateKey == nil {
					t.Errorf("orgs[1].introspection.client = %+v, want private_key_jwt with a loaded key", ic)
				}
			},
		},
	}
}

// TestExamples loads every file under examples/ as a newcomer would use it:
// copied next to its secret and key files, with its variables set.
func TestExamples(t *testing.T) {
	for _, tc := range exampleCases(t) {
		t.Run(tc.file, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, tc.file)
			writeFile(t, path, mustRead(t, filepath.Join("examples", tc.file)))
			for name, content := range tc.files {
				writeFile(t, filepath.Join(dir, name), content)
			}
			cfg, err := Load(path, tc.env)
			if err != nil {
				t.Fatalf("example does not load:\n%v", err)
			}
			var grants []string
			for _, o := range cfg.Orgs {
				grants = append(grants, o.Grant.Type)
			}
			if !slices.Equal(grants, tc.grants) {
				t.Errorf("grant types = %v, want %v", grants, tc.grants)
			}
			if tc.check != nil {
				tc.check(t, cfg)
			}
		})
	}
}

func TestEveryExampleIsTested(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("examples", "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	tested := map[string]bool{}
	for _, tc := range exampleCases(t) {
		tested[tc.file] = true
	}
	for _, f := range files {
		if !tested[filepath.Base(f)] {
			t.Errorf("%s is not loaded by TestExamples", f)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, content []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
}
