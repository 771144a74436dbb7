package configs

import (
	"strings"
	"testing"
)

func TestLoginIdentity(t *testing.T) {
	cfg := mustParse(t, `orgs:
  - name: pw
    url: https://Acme.my.salesforce.com
    client: {id: app, secret: s}
    grant: {type: password, username: integration@acme.com, password: p}
  - name: cc
    url: https://acme.my.salesforce.com
    client: {id: app, secret: s}
    grant: {type: client_credentials}
  - name: idp
    provider: generic
    token_url: https://idp.example.com:8443/token
    discovery_url: https://other.example.com/.well-known/openid-configuration
    client: {id: c, secret: s}
    grant: {type: client_credentials}
`, nil)
	for i, want := range []string{"acme.my.salesforce.com integration@acme.com", "acme.my.salesforce.com client app",
		"idp.example.com:8443 client c"} {
		if got := cfg.Orgs[i].LoginIdentity(); got != want {
			t.Errorf("%s: identity %q, want %q", cfg.Orgs[i].Name, got, want)
		}
	}
}

func TestWarningsForLoginsBeyondTheBudget(t *testing.T) {
	org := func(name, schedule, user, mode string) string {
		return "  - name: " + name + "\n    url: https://acme.my.salesforce.com\n    schedule: \"" + schedule + "\"\n" +
			"    client: {id: app, secret: s}\n    grant: {type: password, username: " + user + ", password: p}\n" +
			"    token_mode: " + mode + "\n"
	}
	for _, tc := range []struct {
		name string
		yaml string
		want []string
	}{
		{"within the budget", "orgs:\n" + org("a", "@every 10s", "u@acme.com", "fresh"), nil},
		{"one schedule beyond it", "global: {login_budget: 100}\norgs:\n" + org("a", "@every 10s", "u@acme.com", "fresh"),
			[]string{"orgs a log in as acme.my.salesforce.com u@acme.com about 360 times an hour, more than global.login_budget (100)"}},
		{"orgs sharing a user add up", "orgs:\n" + org("a", "@every 5s", "u@acme.com", "fresh") + org("b", "@every 10s", "u@acme.com", "fresh") +
			org("c", "@every 5s", "other@acme.com", "fresh"),
			[]string{"orgs a, b log in as acme.my.salesforce.com u@acme.com about 1080 times an hour"}},
		{"busiest hour of a cron spec", "global: {login_budget: 11}\norgs:\n" + org("a", "*/5 9-17 * * *", "u@acme.com", "fresh"),
			[]string{"about 12 times an hour"}},
		{"reuse does not count", "global: {login_budget: 10}\norgs:\n" + org("a", "@every 10s", "u@acme.com", "reuse"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mustParse(t, tc.yaml, nil).Warnings()
			if len(got) != len(tc.want) {
				t.Fatalf("warnings %q, want %d", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %q lacks %q", got[i], w)
				}
			}
		})
	}
}

func TestWarningsForUnusedCredentials(t *testing.T) {
	cfg := mustParse(t, `orgs:
  - name: cc
    url: https://acme.my.salesforce.com
    client: {id: app, secret: s}
    grant: {type: client_credentials, password: p, refresh_token: r}
  - name: pw
    url: https://acme.my.salesforce.com
    client: {id: app, secret: s}
    grant: {type: password, username: u, password: p}
`, nil)
	got := strings.Join(cfg.Warnings(), "\n")
	for _, want := range []string{
		"orgs[0].grant.password is set but grant type client_credentials does not use it (only password does)",
		"orgs[0].grant.refresh_token is set but grant type client_credentials does not use it (only refresh_token does)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "orgs[1]") {
		t.Errorf("a password of a password grant was warned about:\n%s", got)
	}
}
