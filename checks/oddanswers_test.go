package checks

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tokenServer answers every token request with body.
func tokenServer(t *testing.T, body string) Target {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return Target{Name: "odd", Provider: ProviderGeneric, Endpoints: Endpoints{Token: srv.URL + "/token"},
		Client: Client{ID: "c", Secret: "s", AuthMethod: AuthClientSecretPost}, Grant: Grant{Type: GrantClientCredentials},
		Probe: ProbeNone, TokenMode: TokenModeFresh}
}

// An access token with NUL or control characters is a malformed answer, not
// a network problem (it used to read connect_error: no header can carry it).
func TestControlCharactersInTheTokenAreMalformed(t *testing.T) {
	for _, tok := range []string{`abc\u0000def`, `abc\ndef`, `abc\u007fdef`} {
		res := NewChecker(tokenServer(t, `{"access_token":"`+tok+`","token_type":"Bearer"}`)).Check(context.Background())
		if res.Outcome != OutcomeMalformedResponse || !strings.Contains(res.Explanation, "control characters") {
			t.Errorf("token %q: outcome %s (%s), want malformed_response", tok, res.Outcome, res.Explanation)
		}
	}
}

// An expires_in past what a duration holds (9.2e9 s) used to overflow to a
// negative duration and vanish; it is capped and reported.
func TestAbsurdExpiresInIsCappedAndReported(t *testing.T) {
	res := NewChecker(tokenServer(t, `{"access_token":"tok","token_type":"Bearer","expires_in":9.3e9}`)).Check(context.Background())
	if res.Outcome != OutcomeOK {
		t.Fatalf("outcome %s: %s", res.Outcome, res.Explanation)
	}
	if lt := res.Token.Expiry.Sub(res.Token.IssuedAt); lt != maxExpiresIn {
		t.Errorf("lifetime %s, want the cap %s", lt, maxExpiresIn)
	}
	if d := res.Step(StepToken).Detail; !strings.Contains(d, "expires_in absurdly large") {
		t.Errorf("token step detail %q does not report the cap", d)
	}
	if time.Until(res.Token.Expiry) < 99*365*24*time.Hour {
		t.Errorf("expiry %s, want about a century ahead", res.Token.Expiry)
	}
}

// Introspection saying active for a token whose exp has passed used to read
// ok; the server's clock or cache is wrong, and that is an outcome of its own.
func TestActiveWithAPastExpIsStale(t *testing.T) {
	past := time.Now().Add(-time.Hour).Unix()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/token":
			_, _ = w.Write([]byte(`{"access_token":"tok","token_type":"Bearer"}`))
		case "/introspect":
			_, _ = w.Write([]byte(`{"active":true,"exp":` + strconv.FormatInt(past, 10) + `}`))
		}
	}))
	t.Cleanup(srv.Close)
	tg := Target{Name: "stale", Provider: ProviderGeneric,
		Endpoints: Endpoints{Token: srv.URL + "/token", Introspection: srv.URL + "/introspect"},
		Client:    Client{ID: "c", Secret: "s", AuthMethod: AuthClientSecretPost}, Grant: Grant{Type: GrantClientCredentials},
		Probe: ProbeNone, TokenMode: TokenModeFresh}
	res := NewChecker(tg).Check(context.Background())
	if res.Outcome != OutcomeIntrospectionStale || res.Fix == "" || !strings.Contains(res.Explanation, "in the past") {
		t.Fatalf("outcome %s (%s, fix %q), want introspection_stale with a fix", res.Outcome, res.Explanation, res.Fix)
	}
}
