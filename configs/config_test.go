package configs

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// mustParse parses yaml that must be valid, resolving files against testdata.
func mustParse(t *testing.T, yaml string, env []string) *Config {
	t.Helper()
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse([]byte(yaml), dir, env)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

// problemsOf parses yaml that must be invalid and returns its problems as text.
func problemsOf(t *testing.T, yaml string, env []string) []string {
	t.Helper()
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse([]byte(yaml), dir, env)
	var problems Problems
	if !errors.As(err, &problems) {
		t.Fatalf("Parse error = %v, want Problems", err)
	}
	return strings.Split(problems.Error(), "\n")
}

const minimalSalesforce = `
orgs:
  - name: acme
    url: https://acme.my.salesforce.com
    client: {id: acme-client, secret_file: client-secret.txt}
    grant: {type: client_credentials}
`

const minimalGeneric = `
orgs:
  - name: idp
    provider: generic
    discovery_url: https://idp.example.com/.well-known/openid-configuration
    client: {id: idp-client, secret: inline-secret}
    grant: {type: client_credentials}
`

func TestDefaults(t *testing.T) {
	sf := mustParse(t, minimalSalesforce, nil)
	gen := mustParse(t, minimalGeneric, nil)
	jwt := mustParse(t, `
orgs:
  - name: acme
    url: https://acme.my.salesforce.com
    client: {id: acme-client, private_key_file: rsa-pkcs8.key}
    grant: {type: jwt_bearer, username: u@acme.com, private_key_file: rsa-pkcs1.key}
    introspection:
      client: {id: introspector, secret: s}
`, nil)
	jwtOnly := mustParse(t, `
orgs:
  - name: acme
    url: https://acme.my.salesforce.com
    client: {id: acme-client}
    grant: {type: jwt_bearer, username: u@acme.com, private_key_file: rsa-pkcs1.key}
`, nil)
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"global schedule", sf.Global.Schedule, "@every 1m"},
		{"jwt_bearer without client credentials: none", jwtOnly.Orgs[0].Client.AuthMethod, "none"},
		{"global timeout", sf.Global.Timeout, 10 * time.Second},
		{"global max_concurrent_checks", sf.Global.MaxConcurrentChecks, 32},
		{"provider", sf.Orgs[0].Provider, "salesforce"},
		{"org schedule from global", sf.Orgs[0].Schedule, "@every 1m"},
		{"org timeout from global", sf.Orgs[0].Timeout, 10 * time.Second},
		{"salesforce auth_method", sf.Orgs[0].Client.AuthMethod, "client_secret_post"},
		{"generic auth_method", gen.Orgs[0].Client.AuthMethod, "client_secret_basic"},
		{"key without secret: private_key_jwt", jwt.Orgs[0].Client.AuthMethod, "private_key_jwt"},
		{"introspection client auth_method like the client's", jwt.Orgs[0].Introspection.Client.AuthMethod, "client_secret_post"},
		{"token_type_hint", sf.Orgs[0].Introspection.TokenTypeHint, "access_token"},
		{"no separate introspection client", sf.Orgs[0].Introspection.Client == nil, true},
		{"probe", sf.Orgs[0].Probe, "userinfo"},
		{"token_mode", sf.Orgs[0].TokenMode, "fresh"},
		{"salesforce verify_signature", sf.Orgs[0].VerifySignature, true},
		{"salesforce without client secret: no signature check", jwt.Orgs[0].VerifySignature, false},
		{"generic verify_signature", gen.Orgs[0].VerifySignature, false},
		{"salesforce jwt_bearer audience", jwt.Orgs[0].Grant.Audience, "https://login.salesforce.com"},
		{"secret read from file", sf.Orgs[0].Client.Secret.Reveal(), "fixture-client-secret"},
		{"inline secret", gen.Orgs[0].Client.Secret.Reveal(), "inline-secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !reflect.DeepEqual(tc.got, tc.want) {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

func TestExplicitSettingsWin(t *testing.T) {
	cfg := mustParse(t, `
global: {schedule: "@every 5m", timeout: 20s, max_concurrent_checks: 4}
orgs:
  - name: acme
    url: https://acme.my.salesforce.com
    schedule: "CRON_TZ=UTC 0 * * * *"
    timeout: 3s
    client: {id: acme-client, secret_file: client-secret.txt, auth_method: client_secret_basic}
    grant: {type: jwt_bearer, username: u@acme.com, private_key_file: rsa-pkcs8.key, audience: https://test.salesforce.com}
    introspection: {token_type_hint: refresh_token}
    probe: https://acme.my.salesforce.com/services/data/
    token_mode: reuse
    verify_signature: false
  - name: globex
    url: https://globex.my.salesforce.com
    client: {id: globex-client, secret: s}
    grant: {type: client_credentials}
`, nil)
	acme, globex := cfg.Orgs[0], cfg.Orgs[1]
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"global", cfg.Global, withGlobalDefaults(Global{Schedule: "@every 5m", Timeout: 20 * time.Second, MaxConcurrentChecks: 4})},
		{"org schedule", acme.Schedule, "CRON_TZ=UTC 0 * * * *"},
		{"org timeout", acme.Timeout, 3 * time.Second},
		{"other org inherits schedule", globex.Schedule, "@every 5m"},
		{"other org inherits timeout", globex.Timeout, 20 * time.Second},
		{"auth_method", acme.Client.AuthMethod, "client_secret_basic"},
		{"audience", acme.Grant.Audience, "https://test.salesforce.com"},
		{"token_type_hint", acme.Introspection.TokenTypeHint, "refresh_token"},
		{"probe URL", acme.Probe, "https://acme.my.salesforce.com/services/data/"},
		{"token_mode", acme.TokenMode, "reuse"},
		{"verify_signature", acme.VerifySignature, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !reflect.DeepEqual(tc.got, tc.want) {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

func TestEnvOverrides(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want Global
		// problems, when set, are expected instead of a config.
		problems []string
	}{
		{
			name: "overrides the file",
			env: []string{"TOKENWATCH_GLOBAL_SCHEDULE=*/5 * * * *", "TOKENWATCH_GLOBAL_TIMEOUT=3s",
				"TOKENWATCH_GLOBAL_MAX_CONCURRENT_CHECKS=7"},
			want: withGlobalDefaults(Global{Schedule: "*/5 * * * *", Timeout: 3 * time.Second, MaxConcurrentChecks: 7}),
		},
		{
			name: "empty variable leaves the file's value",
			env:  []string{"TOKENWATCH_GLOBAL_TIMEOUT="},
			want: withGlobalDefaults(Global{Schedule: "@every 2m", Timeout: 4 * time.Second, MaxConcurrentChecks: 32}),
		},
		{
			name: "later entry wins",
			env:  []string{"TOKENWATCH_GLOBAL_TIMEOUT=1s", "TOKENWATCH_GLOBAL_TIMEOUT=2s"},
			want: withGlobalDefaults(Global{Schedule: "@every 2m", Timeout: 2 * time.Second, MaxConcurrentChecks: 32}),
		},
		{
			name: "other TOKENWATCH variables belong to the command line",
			env:  []string{"TOKENWATCH_WEB_LISTEN_ADDRESS=:9851", "TOKENWATCH_LOG_LEVEL=debug"},
			want: withGlobalDefaults(Global{Schedule: "@every 2m", Timeout: 4 * time.Second, MaxConcurrentChecks: 32}),
		},
		{
			name:     "unknown global variable",
			env:      []string{"TOKENWATCH_GLOBAL_TIMEOUTS=3s"},
			problems: []string{"TOKENWATCH_GLOBAL_TIMEOUTS: unknown setting (known: TOKENWATCH_GLOBAL_SCHEDULE, TOKENWATCH_GLOBAL_TIMEOUT, TOKENWATCH_GLOBAL_MAX_CONCURRENT_CHECKS)"},
		},
		{
			name: "invalid values are named by variable",
			env: []string{"TOKENWATCH_GLOBAL_SCHEDULE=sometimes", "TOKENWATCH_GLOBAL_TIMEOUT=ten",
				"TOKENWATCH_GLOBAL_MAX_CONCURRENT_CHECKS=lots"},
			problems: []string{
				"TOKENWATCH_GLOBAL_MAX_CONCURRENT_CHECKS: must be a whole number",
				`TOKENWATCH_GLOBAL_SCHEDULE: invalid schedule: expected exactly 5 fields, found 1 (e.g. "@every 1m" or "*/5 * * * *")`,
				`TOKENWATCH_GLOBAL_TIMEOUT: invalid duration (use Go syntax, e.g. 10s or 1h30m)`,
			},
		},
		{
			name: "out of range values are named by variable",
			env:  []string{"TOKENWATCH_GLOBAL_TIMEOUT=1h", "TOKENWATCH_GLOBAL_MAX_CONCURRENT_CHECKS=0"},
			problems: []string{
				"TOKENWATCH_GLOBAL_MAX_CONCURRENT_CHECKS: must be at least 1, got 0",
				"TOKENWATCH_GLOBAL_TIMEOUT: must be more than 0s and at most 5m, got 1h0m0s",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yaml := "global: {schedule: \"@every 2m\", timeout: 4s}\n" + minimalSalesforce
			if tc.problems != nil {
				if got := problemsOf(t, yaml, tc.env); !slices.Equal(got, tc.problems) {
					t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.problems, "\n"))
				}
				return
			}
			cfg := mustParse(t, yaml, tc.env)
			if cfg.Global != tc.want {
				t.Errorf("global = %+v, want %+v", cfg.Global, tc.want)
			}
			// Orgs inherit the overridden values.
			if o := cfg.Orgs[0]; o.Schedule != tc.want.Schedule || o.Timeout != tc.want.Timeout {
				t.Errorf("org schedule, timeout = %q, %v; want %q, %v", o.Schedule, o.Timeout, tc.want.Schedule, tc.want.Timeout)
			}
		})
	}
}

func TestSecretSources(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("plain", "s3cret")
	write("newline", "s3cret\n")
	write("crlf", "s3cret\r\n")
	write("two-newlines", "s3cret\n\n")
	write("inner-space", " s3 cret \n")
	for _, tc := range []struct {
		name, value string // value of client.secret or, with a _file suffix in name, secret_file
		env         []string
		want        string
	}{
		{name: "inline", value: "secret: s3cret", want: "s3cret"},
		{name: "from environment", value: "secret: ${ACME_SECRET}", env: []string{"ACME_SECRET=from-env"}, want: "from-env"},
		{name: "partial ${} is literal", value: "secret: pre${ACME_SECRET}", env: []string{"ACME_SECRET=x"}, want: "pre${ACME_SECRET}"},
		{name: "file without newline", value: "secret_file: plain", want: "s3cret"},
		{name: "file trailing newline dropped", value: "secret_file: newline", want: "s3cret"},
		{name: "file CRLF dropped", value: "secret_file: crlf", want: "s3cret"},
		{name: "only one newline dropped", value: "secret_file: two-newlines", want: "s3cret\n"},
		{name: "spaces kept", value: "secret_file: inner-space", want: " s3 cret "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yaml := fmt.Sprintf("orgs:\n  - name: acme\n    url: https://acme.my.salesforce.com\n    client:\n      id: c\n      %s\n    grant: {type: client_credentials}\n", tc.value)
			cfg, err := Parse([]byte(yaml), dir, tc.env)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := cfg.Orgs[0].Client.Secret.Reveal(); got != tc.want {
				t.Errorf("secret = %q, want %q", got, tc.want)
			}
		})
	}
}

// The same config must mean the same files whatever directory tokenwatch
// was started from.
func TestRelativePathsFollowTheConfigFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secrets", "client"), []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "tokenwatch.yml")
	yaml := "orgs:\n  - {name: acme, url: 'https://acme.my.salesforce.com', client: {id: c, secret_file: secrets/client}, grant: {type: client_credentials}}\n"
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())

	cfg, err := Load(cfgPath, nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	c := cfg.Orgs[0].Client
	if c.Secret.Reveal() != "from-file" {
		t.Errorf("secret = %q, want from-file", c.Secret.Reveal())
	}
	if want := filepath.Join(dir, "secrets", "client"); c.SecretFile != want {
		t.Errorf("SecretFile = %q, want %q", c.SecretFile, want)
	}
}

func TestAcceptedValues(t *testing.T) {
	for _, tc := range []struct{ name, setting string }{
		{"loopback name over http", "token_url: http://localhost:4444/oauth2/token"},
		{"loopback v4 over http", "token_url: http://127.0.0.2:4444/oauth2/token"},
		{"loopback v6 over http", "token_url: 'http://[::1]:4444/oauth2/token'"},
		{"https", "token_url: https://idp.example.com/oauth2/token"},
		{"probe none", "probe: none"},
		{"probe URL", "probe: https://api.example.com/v1/ping"},
		{"schedule every", "schedule: '@every 30s'"},
		{"schedule descriptor", "schedule: '@hourly'"},
		{"schedule five fields", "schedule: '*/5 * * * *'"},
		{"schedule with time zone", "schedule: 'CRON_TZ=UTC 0 9 * * 1-5'"},
		{"schedule with TZ", "schedule: 'TZ=UTC @daily'"},
		{"timeout at the limit", "timeout: 5m"},
		{"go duration", "timeout: 1m30s"},
		{"labels", "labels: {team: crm, _env: prod}"},
		{"tls with CA and client certificate", "tls: {ca_file: client.crt, cert_file: client.crt, key_file: rsa-pkcs8.key, server_name: idp.internal}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yaml := "orgs:\n  - name: idp\n    provider: generic\n    token_url: https://idp.example.com/token\n" +
				"    client: {id: c, secret: s}\n    grant: {type: client_credentials}\n    " + tc.setting + "\n"
			// A later token_url replaces the first one in YAML only if keys
			// repeat, which yaml refuses; so drop the default when testing it.
			if strings.HasPrefix(tc.setting, "token_url") {
				yaml = strings.Replace(yaml, "    token_url: https://idp.example.com/token\n", "", 1)
			}
			mustParse(t, yaml, nil)
		})
	}
}

func TestPrivateKeys(t *testing.T) {
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file    string
		wantRSA bool
		wantEC  bool
		problem string
	}{
		{file: "rsa-pkcs8.key", wantRSA: true},
		{file: "rsa-pkcs1.key", wantRSA: true},
		{file: "ec-pkcs8.key", wantEC: true},
		{file: "ec-sec1.key", wantEC: true},
		{file: "ed25519.key", problem: "cannot use {dir}/ed25519.key: unsupported key type ed25519.PrivateKey; use an RSA or EC key"},
		{file: "rsa-encrypted.key", problem: "cannot use {dir}/rsa-encrypted.key: the key is encrypted; store it unencrypted, e.g. openssl pkey -in KEY -out KEY.plain"},
		{file: "garbage.key", problem: "cannot use {dir}/garbage.key: invalid PRIVATE KEY: "},
		{file: "client.crt", problem: "cannot use {dir}/client.crt: no PEM private key found"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			yaml := "orgs:\n  - name: idp\n    provider: generic\n    token_url: https://idp.example.com/token\n" +
				"    client: {id: c, private_key_file: " + tc.file + "}\n    grant: {type: client_credentials}\n"
			cfg, err := Parse([]byte(yaml), dir, nil)
			if tc.problem != "" {
				want := "orgs[0].client.private_key_file: " + strings.ReplaceAll(tc.problem, "{dir}", dir)
				if err == nil || !strings.HasPrefix(err.Error(), want) {
					t.Errorf("error = %v, want it to start with %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			switch k := cfg.Orgs[0].Client.PrivateKey.(type) {
			case *rsa.PrivateKey:
				if !tc.wantRSA {
					t.Errorf("got an RSA key")
				}
			case *ecdsa.PrivateKey:
				if !tc.wantEC {
					t.Errorf("got an EC key")
				}
			default:
				t.Errorf("PrivateKey is %T", k)
			}
		})
	}
}

// No credential may reach an error or a printed Config: they end up in logs,
// in check-config output and in bug reports.
func TestSecretsNeverLeak(t *testing.T) {
	const (
		inlineCanary = "canary-inline-5d1f"
		fileCanary   = "canary-file-9b7e"
		envCanary    = "canary-env-3c2a"
	)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "password"), []byte(fileCanary+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join("testdata", "rsa-pkcs8.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "jwt.key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"ACME_REFRESH_TOKEN=" + envCanary, "ACME_CLIENT_SECRET=" + envCanary}
	valid := `
orgs:
  - name: acme
    url: https://acme.my.salesforce.com
    client: {id: c, secret: ` + inlineCanary + `, private_key_file: jwt.key}
    grant: {type: password, username: u, password_file: password}
    introspection:
      client: {id: i, secret: "${ACME_CLIENT_SECRET}"}
  - name: globex
    url: https://globex.my.salesforce.com
    client: {id: c, secret: "${ACME_CLIENT_SECRET}"}
    grant: {type: refresh_token, refresh_token: "${ACME_REFRESH_TOKEN}", private_key_file: jwt.key}
`
	invalid := `
orgs:
  - name: acme
    url: https://user:` + inlineCanary + `@acme.my.salesforce.com
    token_url: "https://user:` + inlineCanary + ` x@acme.my.salesforce.com/token"
    probe: "https://user:` + inlineCanary + `%zz@acme.my.salesforce.com/"
    client: {id: c, secret: ` + inlineCanary + `, secret_file: password}
    grant: {type: password, username: u, password: [` + inlineCanary + `], pasword: ` + inlineCanary + `}
    introspection:
      client: {id: 7, secret: {value: ` + inlineCanary + `}}
  - name: globex
    url: https://globex.my.salesforce.com
    client: {id: c, secret: "${ACME_CLIENT_SECRET}", secret_file: password}
    grant: {type: refresh_token, refresh_token: "${ACME_REFRESH_TOKEN}", refresh_token_file: password}
`
	canaries := []string{inlineCanary, fileCanary, envCanary}
	assertClean := func(t *testing.T, what, text string) {
		t.Helper()
		for _, c := range canaries {
			if strings.Contains(text, c) {
				t.Errorf("%s contains the secret %q:\n%s", what, c, text)
			}
		}
	}

	t.Run("printed config", func(t *testing.T) {
		cfg, err := Parse([]byte(valid), dir, env)
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		// The secrets were resolved: the test would pass vacuously otherwise.
		if cfg.Orgs[0].Grant.Password.Reveal() != fileCanary || cfg.Orgs[1].Grant.RefreshToken.Reveal() != envCanary {
			t.Fatalf("secrets not resolved")
		}
		out := fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg) + fmt.Sprintf("%v %+v %#v", *cfg, *cfg, cfg.Orgs[0]) +
			fmt.Sprintf("%+v %#v", cfg.Orgs[0].Client, cfg.Orgs[1].Grant)
		assertClean(t, "printed config", out)
		// Parsed keys would print their private numbers without redaction.
		d := cfg.Orgs[0].Client.PrivateKey.(*rsa.PrivateKey).D.String()
		if strings.Contains(out, d) || strings.Contains(out, d[:20]) {
			t.Errorf("printed config contains the private key")
		}
		b, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		assertClean(t, "JSON config", string(b))
	})

	t.Run("problems", func(t *testing.T) {
		_, err := Parse([]byte(invalid), dir, env)
		var problems Problems
		if !errors.As(err, &problems) {
			t.Fatalf("Parse error = %v, want Problems", err)
		}
		if len(problems) < 8 {
			t.Errorf("only %d problems; the invalid config should report every planted mistake:\n%v", len(problems), err)
		}
		assertClean(t, "problems", err.Error())
	})
}

// withGlobalDefaults fills in the defaults of the global keys a test does not set.
func withGlobalDefaults(g Global) Global {
	g.LoginBudget = DefaultLoginBudget
	g.Backoff = Backoff{Initial: DefaultBackoffInitial, Max: DefaultBackoffMax}
	g.Probe = Probe{MaxAge: DefaultProbeMaxAge, MaxConcurrent: DefaultProbeMaxConc, Timeout: DefaultProbeTimeout}
	return g
}
