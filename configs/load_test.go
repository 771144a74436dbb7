package configs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

type invalidCase struct {
	fixture string // testdata/invalid-<fixture>.yml
	env     []string
	// want is every problem, in order; {dir} stands for the absolute testdata directory.
	want []string
}

// invalidCases pairs each testdata/invalid-*.yml with the exact problems a
// user sees for it; TestEveryInvalidFixtureIsTested keeps the two in step.
func invalidCases() []invalidCase {
	return []invalidCase{
		{fixture: "global-login-budget", want: []string{
			"global.login_budget: must be at least 1 (logins per hour), got -5"}},
		{fixture: "global-backoff", want: []string{
			"global.backoff.initial: must be positive, got 0s"}},
		{fixture: "global-backoff-max-short", want: []string{
			"global.backoff.max: must not be shorter than backoff.initial (10m0s), got 1m0s"}},
		{fixture: "global-probe", want: []string{
			"global.probe.fresh: unknown key",
			"global.probe.max_age: must not be negative, got -1s",
			"global.probe.max_concurrent: must be at least 1, got 0",
			"global.probe.timeout: must be more than 0s and at most 5m, got 10m0s"}},
		{fixture: "metrics-global", want: []string{
			"global.metrics.phase: unknown key",
			"global.metrics.step_histograms: must be true or false, got a string"}},
		{fixture: "metrics-org", want: []string{
			"orgs[0].metrics.histograms: unknown key",
			"orgs[0].metrics.phases: must be true or false, got a number",
			"orgs[1].metrics: must be a mapping, got a boolean"}},
		{fixture: "no-orgs", want: []string{
			"orgs: at least one org is required (add a list entry under orgs:)"}},
		{fixture: "org-name-missing", want: []string{
			"orgs[0].name: required (a unique name; it becomes the org label)"}},
		{fixture: "org-name-duplicate", want: []string{
			`orgs[2].name: duplicate name "acme" (first used by orgs[0]); names must be unique`}},
		{fixture: "org-name-pattern", want: []string{
			`orgs[0].name: only letters, digits, '.', '_' and '-' are allowed, starting with a letter or digit`}},
		{fixture: "provider-unknown", want: []string{
			`orgs[0].provider: unknown provider (one of salesforce, generic)`}},
		{fixture: "salesforce-url-missing", want: []string{
			"orgs[0].url: required for provider salesforce (the My Domain base URL, e.g. https://acme.my.salesforce.com)"}},
		{fixture: "generic-endpoint-missing", want: []string{
			"orgs[0].discovery_url: required for provider generic unless token_url is set " +
				"(the RFC 8414 or OpenID discovery document, e.g. https://idp.example.com/.well-known/openid-configuration)"}},
		{fixture: "url-unparsable", want: []string{
			`orgs[0].token_url: not a valid URL: invalid port after the host (a number, e.g. :8443)`}},
		{fixture: "url-relative", want: []string{
			"orgs[0].introspection_url: must be an absolute URL with scheme and host, e.g. https://idp.example.com/path"}},
		{fixture: "url-scheme", want: []string{
			`orgs[0].revocation_url: the scheme is not allowed; use https`}},
		{fixture: "url-plain-http", want: []string{
			"orgs[0].url: plain http is allowed only to loopback hosts (localhost, 127.0.0.0/8, ::1) because credentials are sent; use https"}},
		{fixture: "url-credentials", want: []string{
			"orgs[0].userinfo_url: must not contain credentials (user:password@); set them under client or grant"}},
		{fixture: "schedule", want: []string{
			`orgs[0].schedule: invalid schedule: expected exactly 5 fields, found 4 (e.g. "@every 1m" or "*/5 * * * *")`}},
		{fixture: "schedule-every-too-short", want: []string{
			"global.schedule: @every interval must be at least 1s, got 500ms"}},
		{fixture: "timeout-zero", want: []string{
			"global.timeout: must be more than 0s and at most 5m, got 0s"}},
		{fixture: "timeout-too-long", want: []string{
			"orgs[0].timeout: must be more than 0s and at most 5m, got 10m0s"}},
		{fixture: "timeout-syntax", want: []string{
			`global.timeout: invalid duration (use Go syntax, e.g. 10s or 1h30m)`}},
		{fixture: "max-concurrent-checks", want: []string{
			"global.max_concurrent_checks: must be at least 1, got 0"}},
		{fixture: "wrong-type", want: []string{
			"orgs[0].client.id: must be a string, got a number (quote the value)"}},
		{fixture: "unknown-key", want: []string{
			"orgs[0].grant.pasword: unknown key"}},
		{fixture: "alerting-unknown-key", want: []string{
			"alerting.resend_intervall: unknown key"}},
		{fixture: "alerting-failure-threshold", want: []string{
			"alerting.failure_threshold: must be at least 1, got 0"}},
		{fixture: "alerting-success-threshold", want: []string{
			"alerting.success_threshold: must be at least 1, got 0"}},
		{fixture: "alerting-resend-interval", want: []string{
			"alerting.resend_interval: must be at least 1s, got 100ms"}},
		{fixture: "alerting-expires-soon-threshold", want: []string{
			"alerting.expires_soon_threshold: must not be negative (0s turns TokenExpiresSoon off), got -1h0m0s"}},
		{fixture: "alerting-destinations-not-a-list", want: []string{
			"alerting.alertmanagers: must be a list, got a mapping"}},
		{fixture: "alerting-alertmanager-url-missing", want: []string{
			"alerting.alertmanagers[0].url: required (the Alertmanager base URL, e.g. http://127.0.0.1:9093)"}},
		{fixture: "alerting-alertmanager-url-plain-http", want: []string{
			"alerting.alertmanagers[0].url: plain http is allowed only to loopback hosts (localhost, 127.0.0.0/8, ::1) " +
				"when basic_auth or a bearer token is sent; use https"}},
		{fixture: "alerting-alertmanager-url-credentials", want: []string{
			"alerting.alertmanagers[0].url: must not contain credentials (user:password@); use basic_auth"}},
		{fixture: "alerting-alertmanager-url-scheme", want: []string{
			`alerting.alertmanagers[0].url: the scheme is not allowed; use https or http`}},
		{fixture: "alerting-basic-auth-username-missing", want: []string{
			"alerting.alertmanagers[0].basic_auth.username: required with basic_auth"}},
		{fixture: "alerting-basic-auth-password-missing", want: []string{
			"alerting.alertmanagers[0].basic_auth.password: required with basic_auth (set password, password: ${ENV_VAR} or password_file)"}},
		{fixture: "alerting-basic-auth-password-both", want: []string{
			"alerting.alertmanagers[0].basic_auth.password_file: set either password or password_file, not both"}},
		{fixture: "alerting-bearer-token-both", want: []string{
			"alerting.alertmanagers[0].bearer_token_file: set either bearer_token or bearer_token_file, not both"}},
		{fixture: "alerting-auth-both", want: []string{
			"alerting.alertmanagers[0].bearer_token: set either basic_auth or bearer_token, not both (one Authorization header)"}},
		{fixture: "alerting-bearer-token-file-unreadable", want: []string{
			"alerting.alertmanagers[0].bearer_token_file: cannot read: no such file or directory"}},
		{fixture: "alerting-tls-not-pem", want: []string{
			"alerting.alertmanagers[0].tls.ca_file: no PEM certificate found in {dir}/not-pem.txt"}},
		{fixture: "alerting-timeout", want: []string{
			"alerting.webhooks[0].timeout: must be more than 0s and at most 5m, got 0s"}},
		{fixture: "alerting-webhook-url-relative", want: []string{
			"alerting.webhooks[0].url: must be an absolute URL with scheme and host " +
				"(the URL that receives the alerts, e.g. https://hooks.example.com/tokenwatch)"}},
		{fixture: "alerting-webhook-secret-both", want: []string{
			"alerting.webhooks[0].secret_file: set either secret or secret_file, not both"}},
		{fixture: "alerting-webhook-secret-file-empty", want: []string{
			"alerting.webhooks[0].secret_file: file {dir}/empty-secret.txt is empty"}},
		{fixture: "alerting-webhook-send-resolved", want: []string{
			"alerting.webhooks[0].send_resolved: must be true or false, got a string"}},
		{fixture: "alerting-destination-duplicate", want: []string{
			"alerting.webhooks[1].url: the same URL as alerting.webhooks[0].url; each destination would get every notification twice"}},
		{fixture: "alerting-destination-duplicate-normalized", want: []string{
			"alerting.alertmanagers[1].url: the same URL as alerting.alertmanagers[0].url; each destination would get every notification twice",
			"alerting.webhooks[1].url: the same URL as alerting.webhooks[0].url; each destination would get every notification twice"}},
		{fixture: "client-id-missing", want: []string{
			"orgs[0].client.id: required (the OAuth client id; for Salesforce the connected app's consumer key)"}},
		{fixture: "client-secret-missing", want: []string{
			"orgs[0].client.secret: required for auth_method client_secret_basic (set secret, secret: ${ENV_VAR} or secret_file)"}},
		{fixture: "client-secret-both", env: []string{"ACME_CLIENT_SECRET=from-env"}, want: []string{
			"orgs[0].client.secret_file: set either secret or secret_file, not both"}},
		{fixture: "client-secret-file-unreadable", want: []string{
			"orgs[0].client.secret_file: cannot read: no such file or directory"}},
		{fixture: "secret-file-empty", want: []string{
			"orgs[0].grant.password_file: file {dir}/empty-secret.txt is empty"}},
		{fixture: "env-unset", env: []string{"OTHER=1"}, want: []string{
			"orgs[0].client.secret: environment variable ACME_CLIENT_SECRET is not set"}},
		{fixture: "env-unset", env: []string{"ACME_CLIENT_SECRET="}, want: []string{
			"orgs[0].client.secret: environment variable ACME_CLIENT_SECRET is empty"}},
		{fixture: "env-reference-name", want: []string{
			"orgs[0].client.secret: ${...} must name an environment variable made of letters, digits and _"}},
		{fixture: "auth-method-unknown", want: []string{
			`orgs[0].client.auth_method: unknown method (one of client_secret_basic, client_secret_post, private_key_jwt, tls_client_auth, none)`}},
		{fixture: "private-key-jwt-no-key", want: []string{
			"orgs[0].client.private_key_file: required for auth_method private_key_jwt (a PEM RSA or EC private key)"}},
		{fixture: "private-key-file", want: []string{
			"orgs[0].client.private_key_file: cannot use {dir}/not-pem.txt: no PEM private key found " +
				"(expected BEGIN PRIVATE KEY, BEGIN RSA PRIVATE KEY or BEGIN EC PRIVATE KEY)"}},
		{fixture: "tls-client-auth-no-cert", want: []string{
			"orgs[0].client.auth_method: tls_client_auth needs the org's tls.cert_file and tls.key_file (the client certificate)"}},
		{fixture: "grant-type-missing", want: []string{
			"orgs[0].grant.type: required (one of password, client_credentials, jwt_bearer, refresh_token)"}},
		{fixture: "grant-type-unknown", want: []string{
			`orgs[0].grant.type: unknown grant type (one of password, client_credentials, jwt_bearer, refresh_token)`}},
		{fixture: "password-grant-username-missing", want: []string{
			"orgs[0].grant.username: required for grant type password"}},
		{fixture: "password-grant-password-missing", want: []string{
			"orgs[0].grant.password: required for grant type password (set password, password: ${ENV_VAR} or password_file; " +
				"for Salesforce, the password followed by the security token)"}},
		{fixture: "jwt-bearer-username-missing", want: []string{
			"orgs[0].grant.username: required for grant type jwt_bearer (the user the token is issued for)"}},
		{fixture: "jwt-bearer-key-missing", want: []string{
			"orgs[0].grant.private_key_file: required for grant type jwt_bearer (the PEM private key whose certificate the server trusts)"}},
		{fixture: "jwt-bearer-ec-key-salesforce", want: []string{
			"orgs[0].grant.private_key_file: Salesforce accepts only RS256 assertions; use an RSA key"}},
		{fixture: "refresh-token-missing", want: []string{
			"orgs[0].grant.refresh_token: required for grant type refresh_token (set refresh_token, refresh_token: ${ENV_VAR} or refresh_token_file)"}},
		{fixture: "introspection-client", want: []string{
			"orgs[0].introspection.client.id: required (the OAuth client id; for Salesforce the connected app's consumer key)"}},
		{fixture: "token-type-hint", want: []string{
			`orgs[0].introspection.token_type_hint: must be access_token or refresh_token`}},
		{fixture: "probe", want: []string{
			`orgs[0].probe: must be userinfo, none, or an https URL called with the token`}},
		{fixture: "token-mode", want: []string{
			`orgs[0].token_mode: unknown mode (one of fresh, reuse)`}},
		{fixture: "verify-signature-generic", want: []string{
			"orgs[0].verify_signature: only provider salesforce signs token responses; remove verify_signature or set it to false"}},
		{fixture: "verify-signature-no-secret", want: []string{
			"orgs[0].verify_signature: needs client.secret (Salesforce signs token responses with it); set the secret or verify_signature: false"}},
		{fixture: "tls-cert-without-key", want: []string{
			"orgs[0].tls.key_file: required when tls.cert_file is set (the client certificate's private key)"}},
		{fixture: "tls-key-without-cert", want: []string{
			"orgs[0].tls.cert_file: required when tls.key_file is set (the client certificate)"}},
		{fixture: "tls-file-unreadable", want: []string{
			"orgs[0].tls.ca_file: cannot read: no such file or directory"}},
		{fixture: "tls-not-pem", want: []string{
			"orgs[0].tls.ca_file: no PEM certificate found in {dir}/not-pem.txt"}},
		{fixture: "tls-key-mismatch", want: []string{
			"orgs[0].tls.cert_file: cannot load the client certificate with tls.key_file {dir}/ec-sec1.key: " +
				"tls: private key type does not match public key type"}},
		{fixture: "label-name", want: []string{
			"orgs[0].labels.team-name: invalid label name (must match ^[a-zA-Z_][a-zA-Z0-9_]*$)"}},
		{fixture: "label-double-underscore", want: []string{
			"orgs[0].labels.__meta_team: label names starting with __ are reserved for Prometheus"}},
		{fixture: "label-reserved", want: []string{
			`orgs[0].labels.severity: "severity" is set by tokenwatch itself; choose another label name`}},
		{fixture: "expect-min-lifetime", want: []string{
			"orgs[0].expect.min_lifetime: must not be negative, got -1h0m0s"}},
		{fixture: "many", want: []string{
			"alerting.failure_threshold: must be at least 1, got 0",
			`alerting.webhooks[0].url: the scheme is not allowed; use https or http`,
			`global.timeout: invalid duration (use Go syntax, e.g. 10s or 1h30m)`,
			"orgs[0].client.secret: required for auth_method client_secret_post (set secret, secret: ${ENV_VAR} or secret_file)",
			"orgs[0].grant.password: required for grant type password (set password, password: ${ENV_VAR} or password_file; " +
				"for Salesforce, the password followed by the security token)",
			"orgs[0].grant.pasword: unknown key",
			"orgs[0].grant.username: required for grant type password",
			"orgs[0].url: plain http is allowed only to loopback hosts (localhost, 127.0.0.0/8, ::1) because credentials are sent; use https",
			"orgs[1].grant.refresh_token: environment variable IDP_REFRESH_TOKEN is not set",
			`orgs[1].labels.job: "job" is set by tokenwatch itself; choose another label name`,
			`orgs[1].name: duplicate name "acme" (first used by orgs[0]); names must be unique`,
		}},
	}
}

func TestInvalidConfigs(t *testing.T) {
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range invalidCases() {
		t.Run(tc.fixture+strings.Join(tc.env, ","), func(t *testing.T) {
			cfg, err := Load(filepath.Join("testdata", "invalid-"+tc.fixture+".yml"), tc.env)
			if cfg != nil {
				t.Errorf("Load returned a config for an invalid file")
			}
			var problems Problems
			if !errors.As(err, &problems) {
				t.Fatalf("Load error = %v, want Problems", err)
			}
			want := make([]string, len(tc.want))
			for i, w := range tc.want {
				want[i] = strings.ReplaceAll(w, "{dir}", dir)
			}
			got := make([]string, len(problems))
			for i, p := range problems {
				got[i] = p.String()
			}
			if !slices.Equal(got, want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// A fixture without an expectation would assert nothing; one named in the
// table but missing would fail with a confusing read error.
func TestEveryInvalidFixtureIsTested(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid-*.yml")
	if err != nil {
		t.Fatal(err)
	}
	tested := map[string]bool{}
	for _, tc := range invalidCases() {
		tested[tc.fixture] = true
		if _, err := os.Stat(filepath.Join("testdata", "invalid-"+tc.fixture+".yml")); err != nil {
			t.Errorf("case %q has no fixture: %v", tc.fixture, err)
		}
	}
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "invalid-"), ".yml")
		if !tested[name] {
			t.Errorf("fixture %s has no expected problems in invalidCases", f)
		}
	}
}

func TestProblemsError(t *testing.T) {
	ps := Problems{
		{Path: "orgs[2].grant.password_file", Message: "file /x is empty"},
		{Path: "TOKENWATCH_GLOBAL_TIMEOUT", Message: `invalid duration "soon"`},
	}
	want := "orgs[2].grant.password_file: file /x is empty\nTOKENWATCH_GLOBAL_TIMEOUT: invalid duration \"soon\""
	if got := ps.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// Problems sort by path with numbers compared by value, so a user reading
// the list finds orgs in file order even past ten.
func TestProblemsListOrgsInOrder(t *testing.T) {
	var b strings.Builder
	b.WriteString("orgs:\n")
	for range 12 {
		b.WriteString("  - url: https://acme.my.salesforce.com\n    client: {id: a, secret: s}\n    grant: {type: client_credentials}\n")
	}
	_, err := Parse([]byte(b.String()), "", nil)
	var problems Problems
	if !errors.As(err, &problems) {
		t.Fatalf("Parse error = %v, want Problems", err)
	}
	var paths []string
	for _, p := range problems {
		paths = append(paths, p.Path)
	}
	want := []string{"orgs[0].name", "orgs[1].name", "orgs[2].name", "orgs[3].name", "orgs[4].name", "orgs[5].name",
		"orgs[6].name", "orgs[7].name", "orgs[8].name", "orgs[9].name", "orgs[10].name", "orgs[11].name"}
	if !slices.Equal(paths, want) {
		t.Errorf("paths = %v, want %v", paths, want)
	}
}

func TestStructureProblems(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"orgs not a list", "orgs: {name: acme}\n", []string{"orgs: must be a list, got a mapping"}},
		{"empty orgs list", "orgs: []\n", []string{"orgs: at least one org is required (add a list entry under orgs:)"}},
		{"empty org entry", "orgs:\n  -\n", []string{"orgs[0]: empty org (remove the dash or fill it in)"}},
		{"org not a mapping", "orgs:\n  - acme\n", []string{"orgs[0]: must be a mapping, got a string"}},
		{"global not a mapping", "global: fast\norgs:\n  - {name: a, url: 'https://a.my.salesforce.com', client: {id: a, secret: s}, grant: {type: client_credentials}}\n",
			[]string{"global: must be a mapping, got a string"}},
		{"boolean as string", "orgs:\n  - {name: a, url: 'https://a.my.salesforce.com', client: {id: a, secret: s}, grant: {type: client_credentials}, verify_signature: yes}\n",
			[]string{"orgs[0].verify_signature: must be true or false, got a string"}},
		{"duration as number", "global: {timeout: 10}\norgs:\n  - {name: a, url: 'https://a.my.salesforce.com', client: {id: a, secret: s}, grant: {type: client_credentials}}\n",
			[]string{"global.timeout: must be a duration with a unit (Go syntax, e.g. 10s or 1h30m), got a number"}},
		{"scope list item not a string", "orgs:\n  - {name: a, url: 'https://a.my.salesforce.com', client: {id: a, secret: s}, grant: {type: client_credentials}, expect: {scope_includes: [api, 7]}}\n",
			[]string{"orgs[0].expect.scope_includes[1]: must be a string, got a number (quote the value)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "", nil)
			var problems Problems
			if !errors.As(err, &problems) {
				t.Fatalf("Parse error = %v, want Problems", err)
			}
			got := strings.Split(problems.Error(), "\n")
			if !slices.Equal(got, tc.want) {
				t.Errorf("problems = %q, want %q", got, tc.want)
			}
		})
	}
}

// A file that is not YAML is not a list of problems but one error, saying
// where; it never repeats the file's content.
func TestUnparsableFiles(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"syntax error", "orgs:\n  - name: [acme\n", "load config: yaml: line 1:"},
		{"duplicate key", "global:\n  timeout: 1s\n  timeout: 2s\n", `mapping key "timeout" already defined`},
		{"a secret passed as the config", "canary-7f3a9c\n", "load config: line 1: the top level must be a YAML mapping with global: and orgs:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "", nil)
			var problems Problems
			if err == nil || errors.As(err, &problems) {
				t.Fatalf("Parse error = %v, want a plain error", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "canary") {
				t.Errorf("error repeats the file content: %q", err)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yml"), nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load error = %v, want one wrapping os.ErrNotExist", err)
	}
}
