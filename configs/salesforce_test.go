package configs

import (
	"strings"
	"testing"
	"time"
)

func TestClientCredentialsNeedsMyDomain(t *testing.T) {
	for _, host := range []string{"https://login.salesforce.com", "https://test.salesforce.com/"} {
		probs := problemsOf(t, `
orgs:
  - name: acme
    url: `+host+`
    client: {id: acme-client, secret: s}
    grant: {type: client_credentials}
`, nil)
		if len(probs) != 1 || !strings.HasPrefix(probs[0], "orgs[0].url: ") || !strings.Contains(probs[0], "My Domain URL") ||
			!strings.Contains(probs[0], "request not supported on this domain") {
			t.Errorf("%s: problems %q", host, probs)
		}
	}
	// The other grants work there.
	mustParse(t, `
orgs:
  - name: acme
    url: https://login.salesforce.com
    client: {id: acme-client, secret: s}
    grant: {type: password, username: u@acme.com, password: p}
`, nil)
}

func TestJWTBearerAudienceFollowsTheHost(t *testing.T) {
	for _, tt := range []struct{ url, want string }{
		{"https://acme.my.salesforce.com", "https://login.salesforce.com"},
		{"https://login.salesforce.com", "https://login.salesforce.com"},
		{"https://test.salesforce.com", "https://test.salesforce.com"},
		{"https://acme--uat.sandbox.my.salesforce.com/", "https://test.salesforce.com"},
		{"https://ACME--UAT.SANDBOX.MY.SALESFORCE.COM", "https://test.salesforce.com"},
		{"https://acme.my.site.com/partners/", "https://acme.my.site.com/partners"},
		{"https://support.acme.com", "https://support.acme.com"},
		// Ports, case, instance hosts, scratch orgs.
		{"https://acme.my.salesforce.com:443/", "https://login.salesforce.com"},
		{"https://LOGIN.Salesforce.com", "https://login.salesforce.com"},
		{"https://acme.my.site.com:443/partners", "https://acme.my.site.com/partners"},
		{"https://Acme.My.Site.Com/partners", "https://acme.my.site.com/partners"},
		{"https://acme.my.site.com:8443/partners", "https://acme.my.site.com:8443/partners"},
		{"https://acme--uat.sandbox.my.site.com/partners", "https://acme--uat.sandbox.my.site.com/partners"},
		{"https://na85.salesforce.com", "https://login.salesforce.com"},
		{"https://eu6.salesforce.com/", "https://login.salesforce.com"},
		{"https://cs42.salesforce.com", "https://test.salesforce.com"},
		{"https://acme--uat.cs42.my.salesforce.com", "https://test.salesforce.com"},
		{"https://acme.develop.my.salesforce.com", "https://login.salesforce.com"},
		{"https://acme-dev-ed.scratch.my.salesforce.com", "https://test.salesforce.com"},
		{"https://cs-tools.my.salesforce.com", "https://login.salesforce.com"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"http://[::1]:8080/site", "http://[::1]:8080/site"},
		{"http://[::1]:80/site", "http://[::1]/site"},
	} {
		cfg := mustParse(t, `
orgs:
  - name: acme
    url: `+tt.url+`
    client: {id: acme-client, secret: s}
    grant: {type: jwt_bearer, username: u@acme.com, private_key_file: rsa-pkcs1.key}
`, nil)
		if got := cfg.Orgs[0].Grant.Audience; got != tt.want {
			t.Errorf("url %s: audience %q, want %q", tt.url, got, tt.want)
		}
	}
	cfg := mustParse(t, `
orgs:
  - name: acme
    url: https://acme--uat.sandbox.my.salesforce.com
    client: {id: acme-client, secret: s}
    grant: {type: jwt_bearer, username: u@acme.com, private_key_file: rsa-pkcs1.key, audience: https://login.salesforce.com}
`, nil)
	if got := cfg.Orgs[0].Grant.Audience; got != "https://login.salesforce.com" {
		t.Errorf("an explicit audience was replaced by %q", got)
	}
}

func TestSalesforceIntrospectionWithoutASecretIsNamed(t *testing.T) {
	cfg := mustParse(t, `
orgs:
  - name: acme
    url: https://acme.my.salesforce.com
    client: {id: acme-client}
    grant: {type: jwt_bearer, username: u@acme.com, private_key_file: rsa-pkcs1.key}
`, nil)
	var found bool
	for _, w := range cfg.Warnings() {
		if strings.HasPrefix(w, "orgs[0].introspection.client: ") && strings.Contains(w, "will be unauthorized") {
			found = true
		}
	}
	if !found {
		t.Errorf("no warning that introspection will be unauthorized: %q", cfg.Warnings())
	}
	for _, yaml := range []string{`
orgs:
  - name: acme
    url: https://acme.my.salesforce.com
    client: {id: acme-client, secret: s}
    grant: {type: jwt_bearer, username: u@acme.com, private_key_file: rsa-pkcs1.key}
`, `
orgs:
  - name: acme
    url: https://acme.my.salesforce.com
    client: {id: acme-client}
    grant: {type: jwt_bearer, username: u@acme.com, private_key_file: rsa-pkcs1.key}
    introspection: {client: {id: introspector, secret: s}}
`} {
		for _, w := range mustParse(t, yaml, nil).Warnings() {
			if strings.Contains(w, "introspection") {
				t.Errorf("warning with a secret: %s", w)
			}
		}
	}
}

func TestSigningCertificate(t *testing.T) {
	cfg := mustParse(t, `
orgs:
  - name: acme
    url: https://acme.my.salesforce.com
    client: {id: acme-client, secret: s}
    grant: {type: jwt_bearer, username: u@acme.com, private_key_file: rsa-pkcs1.key, certificate_file: client.crt}
`, nil)
	g := cfg.Orgs[0].Grant
	if want := time.Date(2126, 11, 2, 14, 4, 25, 0, time.UTC); !g.CertificateNotAfter.Equal(want) {
		t.Errorf("certificate NotAfter %s, want %s", g.CertificateNotAfter, want)
	}
	probs := problemsOf(t, `
orgs:
  - name: acme
    url: https://acme.my.salesforce.com
    client: {id: acme-client, secret: s}
    grant: {type: jwt_bearer, username: u@acme.com, private_key_file: rsa-pkcs1.key, certificate_file: other.crt}
`, nil)
	if len(probs) != 1 || !strings.HasPrefix(probs[0], "orgs[0].grant.certificate_file: ") || !strings.Contains(probs[0], "does not match") {
		t.Errorf("mismatched pair: %q", probs)
	}
	probs = problemsOf(t, `
orgs:
  - name: acme
    url: https://acme.my.salesforce.com
    client: {id: acme-client, secret: s}
    grant: {type: client_credentials, certificate_file: client.crt}
`, nil)
	if len(probs) != 1 || !strings.Contains(probs[0], "only for grant type jwt_bearer") {
		t.Errorf("certificate without jwt_bearer: %q", probs)
	}
	probs = problemsOf(t, `
orgs:
  - name: acme
    url: https://acme.my.salesforce.com
    client: {id: acme-client, secret: s}
    grant: {type: jwt_bearer, username: u@acme.com, private_key_file: rsa-pkcs1.key, certificate_file: not-pem.txt}
`, nil)
	if len(probs) != 1 || !strings.Contains(probs[0], "no PEM certificate") {
		t.Errorf("not a certificate: %q", probs)
	}
}

func TestRefreshTokenPolicy(t *testing.T) {
	cfg := mustParse(t, `
orgs:
  - name: acme
    url: https://acme.my.salesforce.com
    client: {id: acme-client, secret: s}
    grant:
      type: refresh_token
      refresh_token: rt
      refresh_token_policy: {expire_if_unused: 90d, expire_after: 1y}
`, nil)
	p := cfg.Orgs[0].Grant.RefreshTokenPolicy
	if p.ExpireIfUnused != 90*24*time.Hour || p.ExpireAfter != 365*24*time.Hour {
		t.Errorf("policy %+v", p)
	}
	for yaml, want := range map[string]string{
		`{expire_if_unused: soon}`: `orgs[0].grant.refresh_token_policy.expire_if_unused: invalid duration`,
		`{expire_if_unused: 0d}`:   `orgs[0].grant.refresh_token_policy.expire_if_unused: must be more than 0`,
		`{expire_never: 1d}`:       `orgs[0].grant.refresh_token_policy.expire_never: unknown key`,
	} {
		probs := problemsOf(t, `
orgs:
  - name: acme
    url: https://acme.my.salesforce.com
    client: {id: acme-client, secret: s}
    grant: {type: refresh_token, refresh_token: rt, refresh_token_policy: `+yaml+`}
`, nil)
		if len(probs) != 1 || !strings.HasPrefix(probs[0], want) {
			t.Errorf("%s: problems %q, want %q", yaml, probs, want)
		}
	}
	probs := problemsOf(t, `
orgs:
  - name: acme
    url: https://acme.my.salesforce.com
    client: {id: acme-client, secret: s}
    grant: {type: client_credentials, refresh_token_policy: {expire_if_unused: 90d}}
`, nil)
	if len(probs) != 1 || !strings.Contains(probs[0], "only for grant type refresh_token") {
		t.Errorf("policy without refresh_token: %q", probs)
	}
}

func TestSigningCertificateThreshold(t *testing.T) {
	if got := mustParse(t, minimalSalesforce, nil).Alerting.SigningCertificateThreshold; got != 30*24*time.Hour {
		t.Errorf("default %s, want 30 days", got)
	}
	cfg := mustParse(t, minimalSalesforce+"alerting: {signing_certificate_threshold: 45d}\n", nil)
	if got := cfg.Alerting.SigningCertificateThreshold; got != 45*24*time.Hour {
		t.Errorf("45d read as %s", got)
	}
	probs := problemsOf(t, minimalSalesforce+"alerting: {signing_certificate_threshold: soon}\n", nil)
	if len(probs) != 1 || !strings.HasPrefix(probs[0], "alerting.signing_certificate_threshold: ") {
		t.Errorf("problems %q", probs)
	}
}
