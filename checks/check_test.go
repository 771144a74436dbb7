package checks_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/internal/e2etest"
	"github.com/tokenwatch/tokenwatch/internal/fakeclock"
	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

// Canary values: unique strings that must never appear in a Result.
const (
	ccSecret     = "CANARY-cc-secret-4f1d"
	pwSecret     = "CANARY-pw-secret-9a2b"
	pwAllSecret  = "CANARY-pwall-secret-3c7e"
	rtSecret     = "CANARY-rt-secret-6d0f"
	userPassword = "CANARY-password-1e8a"
	userSecToken = "CANARYSECTOKEN77"
	basicSecret  = "CANARY:odd+secret%/&="
	jwtSecret    = "CANARY-jwt-secret-5b2c"
)

// world is one simulated org with an app for every grant.
type world struct {
	org   *orgsim.Org
	key   *rsa.PrivateKey
	clock *fakeclock.Clock
	rt    string
}

var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func newWorld(t testing.TB, opts orgsim.Options) *world {
	t.Helper()
	w := &world{key: testKey(), clock: fakeclock.New(time.Now().UTC().Truncate(time.Second))}
	opts.Clock = w.clock.Now
	w.org = orgsim.New(opts)
	w.org.AddUser(orgsim.User{Username: "user@example.com", Password: userPassword, SecurityToken: userSecToken})
	w.org.AddUser(orgsim.User{Username: "jwt@example.com", Password: "x"})
	w.org.AddApp(orgsim.App{ClientID: "cc-app", ClientSecret: ccSecret, RunAsUser: "user@example.com", Scope: "api web openid"})
	w.org.AddApp(orgsim.App{ClientID: "pw-app", ClientSecret: pwSecret})
	w.org.AddApp(orgsim.App{ClientID: "pw-all-app", ClientSecret: pwAllSecret, IntrospectAll: true})
	w.org.AddApp(orgsim.App{ClientID: "jwt-app", ClientSecret: jwtSecret, CertificateKey: &w.key.PublicKey, PreApproved: []string{"jwt@example.com"}})
	w.org.AddApp(orgsim.App{ClientID: "rt-app", ClientSecret: rtSecret, RefreshTokenRotation: true})
	w.org.AddApp(orgsim.App{ClientID: "pkjwt-app", CertificateKey: &w.key.PublicKey, RunAsUser: "user@example.com"})
	w.org.AddApp(orgsim.App{ClientID: "basic:app+1", ClientSecret: basicSecret, RunAsUser: "user@example.com"})
	if err := w.org.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.org.Close)
	rt, err := w.org.IssueRefreshToken("rt-app", "user@example.com")
	if err != nil {
		t.Fatal(err)
	}
	w.rt = rt
	return w
}

func (w *world) target(kind string) checks.Target {
	t := checks.Target{
		Name: kind, Provider: checks.ProviderSalesforce, URL: w.org.URL(), Timeout: 2 * time.Second,
		Probe: checks.ProbeUserinfo, TokenMode: checks.TokenModeFresh, VerifySignature: true,
		Introspection: checks.Introspection{TokenTypeHint: "access_token"},
	}
	post := checks.AuthClientSecretPost
	switch kind {
	case "client_credentials":
		t.Client = checks.Client{ID: "cc-app", Secret: ccSecret, AuthMethod: post}
		t.Grant = checks.Grant{Type: checks.GrantClientCredentials}
	case "password":
		t.Client = checks.Client{ID: "pw-app", Secret: pwSecret, AuthMethod: post}
		t.Grant = checks.Grant{Type: checks.GrantPassword, Username: "user@example.com", Password: userPassword + userSecToken}
	case "password_all":
		t.Client = checks.Client{ID: "pw-all-app", Secret: pwAllSecret, AuthMethod: post}
		t.Grant = checks.Grant{Type: checks.GrantPassword, Username: "user@example.com", Password: userPassword + userSecToken}
	case "jwt_bearer":
		t.Client = checks.Client{ID: "jwt-app"}
		t.Grant = checks.Grant{Type: checks.GrantJWTBearer, Username: "jwt@example.com", PrivateKey: w.key, Audience: "https://login.salesforce.com"}
		// The flow needs no secret, but Salesforce's introspection does.
		t.Introspection.Client = &checks.Client{ID: "jwt-app", Secret: jwtSecret, AuthMethod: post}
	case "refresh_token":
		t.Client = checks.Client{ID: "rt-app", Secret: rtSecret, AuthMethod: post}
		t.Grant = checks.Grant{Type: checks.GrantRefreshToken, RefreshToken: checks.Secret(w.rt)}
	case "private_key_jwt":
		t.Client = checks.Client{ID: "pkjwt-app", AuthMethod: checks.AuthPrivateKeyJWT, PrivateKey: w.key}
		t.Grant = checks.Grant{Type: checks.GrantClientCredentials}
		t.VerifySignature = false
	case "basic":
		t.Client = checks.Client{ID: "basic:app+1", Secret: basicSecret, AuthMethod: checks.AuthClientSecretBasic}
		t.Grant = checks.Grant{Type: checks.GrantClientCredentials}
	default:
		panic("unknown kind " + kind)
	}
	return t
}

func (w *world) check(t *testing.T, tg checks.Target, opts ...checks.Option) *checks.Result {
	t.Helper()
	c := checks.NewChecker(tg, append([]checks.Option{checks.WithClock(w.clock.Now)}, opts...)...)
	t.Cleanup(func() { c.Close(context.Background()) })
	res := c.Check(context.Background())
	assertNoCanary(t, res)
	return res
}

// assertNoCanary fails when any secret value appears anywhere in the result.
func assertNoCanary(t *testing.T, res *checks.Result, extra ...string) {
	t.Helper()
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b) + fmt.Sprintf("%v %+v", res, *res)
	for _, s := range append([]string{ccSecret, pwSecret, pwAllSecret, rtSecret, userPassword, userSecToken, basicSecret, jwtSecret, "00D"}, extra...) {
		if s == "00D" {
			// Salesforce session ids start with the org id and a "!"; none may appear.
			if strings.Contains(text, "!AQ") || strings.Contains(text, "00D000000000001!") {
				t.Errorf("a session id appears in the result")
			}
			continue
		}
		if strings.Contains(text, s) {
			t.Errorf("secret %q appears in the result", s[:8])
		}
	}
}

func TestGrantsAgainstSimulatedSalesforce(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	cases := []struct {
		kind      string
		want      checks.Outcome
		tokenType string
		signature string
	}{
		{"client_credentials", checks.OutcomeOK, "access_token", checks.SignatureValid},
		{"password_all", checks.OutcomeOK, "sid", checks.SignatureValid},
		{"password", checks.OutcomeIntrospectionNotPermitted, "Bearer", checks.SignatureValid},
		{"jwt_bearer", checks.OutcomeOK, "access_token", checks.SignatureNotChecked},
		{"refresh_token", checks.OutcomeOK, "access_token", checks.SignatureValid},
		{"private_key_jwt", checks.OutcomeOK, "access_token", checks.SignatureNotChecked},
		{"basic", checks.OutcomeOK, "access_token", checks.SignatureValid},
	}
	for _, tc := range cases {
		t.Run(tc.kind, func(t *testing.T) {
			res := w.check(t, w.target(tc.kind))
			if res.Outcome != tc.want {
				t.Fatalf("outcome %s, want %s: %s", res.Outcome, tc.want, res.Explanation)
			}
			if res.Token.TokenType != tc.tokenType {
				t.Errorf("token type %q, want %q", res.Token.TokenType, tc.tokenType)
			}
			if res.Token.Signature != tc.signature {
				t.Errorf("signature %q, want %q", res.Token.Signature, tc.signature)
			}
			if len(res.Steps) != 4 {
				t.Fatalf("steps %v, want token, introspect, probe, revoke", res.Steps)
			}
			for i, s := range checks.AllSteps {
				if res.Steps[i].Step != s || res.Steps[i].Skipped || res.Steps[i].Status != 200 {
					t.Errorf("step %d = %+v, want %s run with 200", i, res.Steps[i], s)
				}
			}
			if tc.want == checks.OutcomeOK {
				if res.Token.Active == nil || !*res.Token.Active {
					t.Errorf("introspection active = %v, want true", res.Token.Active)
				}
				if got := res.Token.Lifetime(); got != 2*time.Hour {
					t.Errorf("lifetime %s, want the org default session timeout 2h", got)
				}
				if res.Token.ExpirySource != "introspection" {
					t.Errorf("expiry source %q, want introspection", res.Token.ExpirySource)
				}
				if res.Fix != "" {
					t.Errorf("healthy result has a fix: %q", res.Fix)
				}
			}
		})
	}
}

func TestSeedCaseExplainsThePermissionGap(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	res := w.check(t, w.target("password"))
	if res.Outcome != checks.OutcomeIntrospectionNotPermitted {
		t.Fatalf("outcome %s, want introspection_not_permitted", res.Outcome)
	}
	if res.Token.Active == nil || *res.Token.Active {
		t.Fatalf("introspection active %v, want false", res.Token.Active)
	}
	for _, want := range []string{`{"active": false}`, "userinfo", "pw-app"} {
		if !strings.Contains(res.Explanation, want) {
			t.Errorf("explanation lacks %q: %s", want, res.Explanation)
		}
	}
	for _, want := range []string{"Introspect All Tokens", "session ids", "password-grant"} {
		if !strings.Contains(res.Fix, want) {
			t.Errorf("fix lacks %q: %s", want, res.Fix)
		}
	}
	if !res.Token.Expiry.IsZero() {
		t.Errorf("an inactive answer gave an expiry: %s", res.Token.Expiry)
	}

	// The generic wording names no Salesforce setting.
	tg := w.target("password")
	tg.Provider = checks.ProviderGeneric
	tg.Endpoints = checks.Endpoints{
		Token: w.org.URL() + "/services/oauth2/token", Introspection: w.org.URL() + "/services/oauth2/introspect",
		Revocation: w.org.URL() + "/services/oauth2/revoke", Userinfo: w.org.URL() + "/services/oauth2/userinfo",
	}
	tg.VerifySignature = false
	res = w.check(t, tg)
	if res.Outcome != checks.OutcomeIntrospectionNotPermitted {
		t.Fatalf("generic: outcome %s", res.Outcome)
	}
	if strings.Contains(res.Fix, "Introspect All Tokens") || !strings.Contains(res.Fix, "may lack permission") {
		t.Errorf("generic fix: %s", res.Fix)
	}
}

func TestDeadTokenIsTokenInactive(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	// The resource refuses the token the way Salesforce does for a dead session.
	w.org.SetFault(orgsim.EndpointUserinfo, orgsim.Fault{Status: 401,
		Body: `[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]`})
	res := w.check(t, w.target("password"))
	if res.Outcome != checks.OutcomeTokenInactive {
		t.Fatalf("outcome %s, want token_inactive: %s", res.Outcome, res.Explanation)
	}
	if !strings.Contains(res.Explanation, "INVALID_SESSION_ID") {
		t.Errorf("explanation does not quote the resource's error: %s", res.Explanation)
	}
	// Revoking a dead token may answer 400 invalid_token; that is no failure.
	if rv := res.Step(checks.StepRevoke); rv == nil || rv.Skipped {
		t.Errorf("revoke step %+v", rv)
	}
}

func TestProbeNoneCannotTellInactiveApart(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	tg := w.target("password")
	tg.Probe = checks.ProbeNone
	res := w.check(t, tg)
	if res.Outcome != checks.OutcomeTokenInactive || !strings.Contains(res.Explanation, "cannot be told") {
		t.Fatalf("outcome %s: %s", res.Outcome, res.Explanation)
	}
}

func TestTokenEndpointErrorsAreClassified(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	cases := []struct {
		name    string
		mutate  func(*checks.Target)
		want    checks.Outcome
		fixHint string
	}{
		{"wrong secret", func(tg *checks.Target) { tg.Client.Secret = "CANARY-wrong-secret" }, checks.OutcomeClientRejected, "consumer secret"},
		{"unknown client", func(tg *checks.Target) { tg.Client.ID = "nobody" }, checks.OutcomeClientRejected, "consumer key is unknown"},
		{"wrong password", func(tg *checks.Target) { tg.Grant.Password = "CANARY-wrong-password" }, checks.OutcomeGrantRejected, "security token"},
		{"basic wrong secret", func(tg *checks.Target) {
			tg.Client.AuthMethod = checks.AuthClientSecretBasic
			tg.Client.Secret = "CANARY-wrong-secret"
		}, checks.OutcomeClientRejected, "client"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := w.target("password")
			tc.mutate(&tg)
			res := w.check(t, tg)
			assertNoCanary(t, res, "CANARY-wrong")
			if res.Outcome != tc.want {
				t.Fatalf("outcome %s, want %s: %s", res.Outcome, tc.want, res.Explanation)
			}
			if !strings.Contains(res.Fix, tc.fixHint) {
				t.Errorf("fix %q lacks %q", res.Fix, tc.fixHint)
			}
			if len(res.Steps) != 1 {
				t.Errorf("a failed token step must end the check, got %d steps", len(res.Steps))
			}
		})
	}

	t.Run("jwt not approved", func(t *testing.T) {
		tg := w.target("jwt_bearer")
		tg.Grant.Username = "user@example.com"
		res := w.check(t, tg)
		if res.Outcome != checks.OutcomeGrantRejected || !strings.Contains(res.Fix, "Pre-authorize") {
			t.Fatalf("outcome %s, fix %q", res.Outcome, res.Fix)
		}
	})
	t.Run("jwt audience", func(t *testing.T) {
		tg := w.target("jwt_bearer")
		tg.Grant.Audience = "https://wrong.example.com"
		res := w.check(t, tg)
		if res.Outcome != checks.OutcomeGrantRejected || !strings.Contains(res.Fix, "test.salesforce.com") {
			t.Fatalf("outcome %s, fix %q", res.Outcome, res.Fix)
		}
	})
}

func TestPasswordFlowBlockedAndRateLimit(t *testing.T) {
	w := newWorld(t, orgsim.Options{PasswordFlowBlocked: true})
	res := w.check(t, w.target("password"))
	if res.Outcome != checks.OutcomeGrantRejected || !strings.Contains(res.Fix, "Summer '23") {
		t.Fatalf("blocked flow: outcome %s, fix %q", res.Outcome, res.Fix)
	}

	w = newWorld(t, orgsim.Options{LoginRateLimit: 1})
	if res := w.check(t, w.target("password_all")); res.Outcome != checks.OutcomeOK {
		t.Fatalf("first login: %s %s", res.Outcome, res.Explanation)
	}
	res = w.check(t, w.target("password_all"))
	if res.Outcome != checks.OutcomeRateLimited || !strings.Contains(res.Fix, "3,600") {
		t.Fatalf("second login: outcome %s, fix %q", res.Outcome, res.Fix)
	}
}

func TestClockSkewRejectsAssertions(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	tg := w.target("jwt_bearer")
	// The server's clock runs ten minutes ahead of ours: our assertion looks expired.
	skewed := func() time.Time { return w.clock.Now().Add(-10 * time.Minute) }
	c := checks.NewChecker(tg, checks.WithClock(skewed))
	res := c.Check(context.Background())
	if res.Outcome != checks.OutcomeClockSkew {
		t.Fatalf("outcome %s, want clock_skew: %s", res.Outcome, res.Explanation)
	}
	if res.Token.ClockSkew < 9*time.Minute {
		t.Errorf("clock skew %s, want about 10m", res.Token.ClockSkew)
	}
}

func TestInjectedFaultsAreClassified(t *testing.T) {
	cases := []struct {
		name     string
		endpoint orgsim.Endpoint
		fault    orgsim.Fault
		want     checks.Outcome
		detail   string
	}{
		{"maintenance page", orgsim.EndpointToken, orgsim.Fault{HTML: true}, checks.OutcomeProviderDown, "HTML"},
		{"503", orgsim.EndpointToken, orgsim.Fault{Status: 503, Body: "unavailable"}, checks.OutcomeServerError, "503"},
		{"truncated", orgsim.EndpointToken, orgsim.Fault{Truncate: true}, checks.OutcomeMalformedResponse, "not a JSON object"},
		{"hang up", orgsim.EndpointToken, orgsim.Fault{Hangup: true}, checks.OutcomeConnectError, "closed"},
		{"slow", orgsim.EndpointToken, orgsim.Fault{Latency: 3 * time.Second}, checks.OutcomeTimeout, "timeout"},
		{"429", orgsim.EndpointToken, orgsim.Fault{Status: 429, Body: "slow down"}, checks.OutcomeRateLimited, "429"},
		{"200 without token", orgsim.EndpointToken, orgsim.Fault{Status: 200, Body: `{"token_type":"Bearer"}`}, checks.OutcomeMalformedResponse, "no access_token"},
		{"200 with error", orgsim.EndpointToken, orgsim.Fault{Status: 200, Body: `{"error":"invalid_grant","error_description":"authentication failure"}`}, checks.OutcomeGrantRejected, "invalid_grant"},
		{"empty body", orgsim.EndpointToken, orgsim.Fault{Status: 200, Body: " "}, checks.OutcomeMalformedResponse, "empty"},
		{"bad signature", orgsim.EndpointToken, orgsim.Fault{BadSignature: true}, checks.OutcomeSignatureMismatch, ""},
		{"introspection 401", orgsim.EndpointIntrospect, orgsim.Fault{Status: 401, Body: `{"error":"invalid_client"}`}, checks.OutcomeIntrospectionUnauthorized, ""},
		{"introspection error", orgsim.EndpointIntrospect, orgsim.Fault{Status: 400, Body: `{"error":"unsupported_token_type"}`}, checks.OutcomeIntrospectionError, ""},
		{"introspection no active", orgsim.EndpointIntrospect, orgsim.Fault{Status: 200, Body: `{"scope":"api"}`}, checks.OutcomeMalformedResponse, ""},
		{"userinfo 403", orgsim.EndpointUserinfo, orgsim.Fault{Status: 403, Body: "Forbidden"}, checks.OutcomeResourceRejected, ""},
		{"revoke 500", orgsim.EndpointRevoke, orgsim.Fault{Status: 500}, checks.OutcomeRevokeFailed, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, orgsim.Options{})
			w.org.SetFault(tc.endpoint, tc.fault)
			tg := w.target("client_credentials")
			tg.Timeout = time.Second
			res := w.check(t, tg)
			if res.Outcome != tc.want {
				t.Fatalf("outcome %s, want %s: %s", res.Outcome, tc.want, res.Explanation)
			}
			if !strings.Contains(res.Explanation, tc.detail) {
				t.Errorf("explanation %q lacks %q", res.Explanation, tc.detail)
			}
			if res.Fix == "" {
				t.Errorf("no fix for %s", res.Outcome)
			}
		})
	}
}

func TestRedirectDoesNotForwardCredentials(t *testing.T) {
	var hits int
	var mu sync.Mutex
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
	}))
	defer other.Close()
	w := newWorld(t, orgsim.Options{})
	w.org.SetFault(orgsim.EndpointToken, orgsim.Fault{Redirect: other.URL + "/services/oauth2/token"})
	res := w.check(t, w.target("client_credentials"))
	if res.Outcome != checks.OutcomeRedirect {
		t.Fatalf("outcome %s: %s", res.Outcome, res.Explanation)
	}
	mu.Lock()
	defer mu.Unlock()
	if hits != 0 {
		t.Fatalf("the redirect target received %d requests; credentials must not follow a redirect", hits)
	}
}

func TestPlainHTTPOnlyToLoopback(t *testing.T) {
	tg := checks.Target{Name: "x", Provider: checks.ProviderGeneric, Timeout: time.Second,
		Endpoints: checks.Endpoints{Token: "http://auth.example.invalid/token"},
		Client:    checks.Client{ID: "id", Secret: ccSecret, AuthMethod: checks.AuthClientSecretBasic},
		Grant:     checks.Grant{Type: checks.GrantClientCredentials}, Probe: checks.ProbeNone}
	res := checks.NewChecker(tg).Check(context.Background())
	if res.Outcome != checks.OutcomeInsecureEndpoint {
		t.Fatalf("outcome %s, want insecure_endpoint", res.Outcome)
	}
	if res.Steps[0].Status != 0 || res.Steps[0].Duration != 0 {
		t.Errorf("a request was sent: %+v", res.Steps[0])
	}
}

func TestTransportFailures(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close() // nothing listens there now
	cases := []struct {
		name, url string
		want      checks.Outcome
	}{
		{"refused", addr + "/token", checks.OutcomeConnectError},
		{"dns", "https://no-such-host.invalid/token", checks.OutcomeDNSError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := checks.Target{Name: "x", Provider: checks.ProviderGeneric, Timeout: 2 * time.Second,
				Endpoints: checks.Endpoints{Token: tc.url},
				Client:    checks.Client{ID: "id", Secret: ccSecret, AuthMethod: checks.AuthClientSecretBasic},
				Grant:     checks.Grant{Type: checks.GrantClientCredentials}}
			res := checks.NewChecker(tg).Check(context.Background())
			if res.Outcome != tc.want {
				t.Fatalf("outcome %s, want %s: %s", res.Outcome, tc.want, res.Explanation)
			}
		})
	}
}

func TestTLS(t *testing.T) {
	w := &world{key: testKey(), clock: fakeclock.New(time.Now().UTC())}
	w.org = orgsim.New(orgsim.Options{Clock: w.clock.Now})
	w.org.AddUser(orgsim.User{Username: "user@example.com", Password: userPassword})
	w.org.AddApp(orgsim.App{ClientID: "cc-app", ClientSecret: ccSecret, RunAsUser: "user@example.com"})
	if err := w.org.StartTLS(); err != nil {
		t.Fatal(err)
	}
	defer w.org.Close()

	tg := w.target("client_credentials")
	res := w.check(t, tg)
	if res.Outcome != checks.OutcomeTLSError || !strings.Contains(res.Explanation, "unknown authority") {
		t.Fatalf("untrusted: outcome %s: %s", res.Outcome, res.Explanation)
	}

	pool := x509.NewCertPool()
	pool.AddCert(w.org.Certificate())
	res = w.check(t, tg, checks.WithTransport(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}))
	if res.Outcome != checks.OutcomeOK {
		t.Fatalf("trusted: outcome %s: %s", res.Outcome, res.Explanation)
	}
	if !res.TLSCertExpiry.Equal(w.org.Certificate().NotAfter) {
		t.Errorf("certificate expiry %s, want %s", res.TLSCertExpiry, w.org.Certificate().NotAfter)
	}
	if tk := res.Step(checks.StepToken); tk.Phases.TLS == 0 || tk.Phases.Connect == 0 {
		t.Errorf("token step phases %+v: want connect and tls timed on a new connection", tk.Phases)
	}
}

func TestExpectations(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	tg := w.target("client_credentials")
	tg.Expect = checks.Expectations{MinLifetime: 3 * time.Hour, ScopeIncludes: []string{"api", "full"}, Username: "user@example.com", ClientID: "other"}
	res := w.check(t, tg)
	if res.Outcome != checks.OutcomeExpectationFailed {
		t.Fatalf("outcome %s: %s", res.Outcome, res.Explanation)
	}
	for _, want := range []string{"lifetime (exp - iat) is 2h0m0s, below min_lifetime 3h0m0s", "lacks full", `client_id is "cc-app", expected "other"`} {
		if !strings.Contains(res.Explanation, want) {
			t.Errorf("explanation lacks %q: %s", want, res.Explanation)
		}
	}
	if strings.Contains(res.Explanation, "username") {
		t.Errorf("a met expectation is reported: %s", res.Explanation)
	}
	tg.Expect = checks.Expectations{MinLifetime: time.Hour, ScopeIncludes: []string{"api"}, ClientID: "cc-app"}
	if res := w.check(t, tg); res.Outcome != checks.OutcomeOK {
		t.Fatalf("met expectations: %s %s", res.Outcome, res.Explanation)
	}
}

func TestRefreshTokenRotationIsFollowed(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	c := checks.NewChecker(w.target("refresh_token"), checks.WithClock(w.clock.Now))
	for i := range 3 {
		res := c.Check(context.Background())
		assertNoCanary(t, res, w.rt)
		if res.Outcome != checks.OutcomeOK {
			t.Fatalf("check %d: %s %s", i, res.Outcome, res.Explanation)
		}
	}
	// A second checker still holding the original, rotated-out token is refused with advice.
	res := checks.NewChecker(w.target("refresh_token"), checks.WithClock(w.clock.Now)).Check(context.Background())
	if res.Outcome != checks.OutcomeGrantRejected || !strings.Contains(res.Fix, "rotation") {
		t.Fatalf("rotated-out token: %s, fix %q", res.Outcome, res.Fix)
	}
}

func TestReuseMode(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	tg := w.target("password_all")
	tg.TokenMode = checks.TokenModeReuse
	c := checks.NewChecker(tg, checks.WithClock(w.clock.Now))
	defer c.Close(context.Background())

	first := c.Check(context.Background())
	if first.Outcome != checks.OutcomeOK || !first.Token.Minted || !first.Step(checks.StepRevoke).Skipped {
		t.Fatalf("first: %s minted=%v %s", first.Outcome, first.Token.Minted, first.Explanation)
	}
	w.clock.Advance(10 * time.Minute)
	second := c.Check(context.Background())
	if second.Outcome != checks.OutcomeOK || second.Token.Minted || !second.Step(checks.StepToken).Skipped {
		t.Fatalf("second: %s minted=%v", second.Outcome, second.Token.Minted)
	}
	// The session slides, but only once half the timeout (2h) has passed
	// since the activity last recorded: the probe at 10m moved nothing, the
	// one at 70m moves exp to 70m + 2h, which the next check sees.
	if !second.Token.Expiry.Equal(first.Token.Expiry) {
		t.Errorf("a use 10m into a 2h session moved exp from %s to %s", first.Token.Expiry, second.Token.Expiry)
	}
	w.clock.Advance(60 * time.Minute)
	c.Check(context.Background())
	w.clock.Advance(time.Minute)
	slid := c.Check(context.Background())
	if got := slid.Token.Expiry.Sub(second.Token.Expiry); slid.Outcome != checks.OutcomeOK || got != 70*time.Minute {
		t.Errorf("exp moved by %s (%s), want 70m: the session timeout slides with use past half of it", got, slid.Outcome)
	}
	tokens := w.org.Requests(orgsim.EndpointToken)

	// An admin ends the session early.
	w.org.RevokeUserSessions("user@example.com")
	third := c.Check(context.Background())
	if third.Outcome != checks.OutcomeTokenInvalidatedEarly {
		t.Fatalf("third: %s %s", third.Outcome, third.Explanation)
	}
	if w.org.Requests(orgsim.EndpointToken) != tokens {
		t.Errorf("a token was minted in the check that reported the early death")
	}
	fourth := c.Check(context.Background())
	if fourth.Outcome != checks.OutcomeOK || !fourth.Token.Minted {
		t.Fatalf("fourth: %s minted=%v", fourth.Outcome, fourth.Token.Minted)
	}

	// A token that dies of old age is replaced within the same check.
	w.clock.Advance(3 * time.Hour)
	fifth := c.Check(context.Background())
	if fifth.Outcome != checks.OutcomeOK || !fifth.Token.Minted {
		t.Fatalf("fifth: %s minted=%v %s", fifth.Outcome, fifth.Token.Minted, fifth.Explanation)
	}
	revokes := w.org.Requests(orgsim.EndpointRevoke)
	c.Close(context.Background())
	if w.org.Requests(orgsim.EndpointRevoke) != revokes+1 {
		t.Errorf("Close did not revoke the kept token")
	}
}

// rfcServer is a minimal RFC-shaped authorization server with discovery,
// answering expires_in and a tolerant mix of introspection member types.
func rfcServer(t *testing.T, introspection string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	var srv *httptest.Server
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"issuer":%q,"token_endpoint":%q,"introspection_endpoint":%q,"revocation_endpoint":%q,"userinfo_endpoint":%q}`,
			srv.URL, srv.URL+"/token", srv.URL+"/introspect", srv.URL+"/revoke", srv.URL+"/userinfo")
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if !ok || id != "rfc-client" || secret != "rfc%2Bsecret" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client"}`)
			return
		}
		fmt.Fprint(w, `{"access_token":"opaque-CANARY-token-1","token_type":"bearer","expires_in":"3599","scope":["read","write"]}`)
	})
	mux.HandleFunc("/introspect", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, introspection) })
	mux.HandleFunc("/revoke", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/userinfo", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer opaque-CANARY-token-1" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, `{"sub":"s1","preferred_username":"svc"}`)
	})
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestGenericServerWithDiscovery(t *testing.T) {
	cases := []struct {
		name, body string
		want       checks.Outcome
		exp        int64
	}{
		{"numbers", `{"active":true,"exp":1900000000,"iat":1899996400,"client_id":"rfc-client","scope":"read write"}`, checks.OutcomeOK, 1900000000},
		{"strings and nulls", `{"active":"true","exp":"1900000000","iat":null,"client_id":null,"scope":null,"token_type":"sid"}`, checks.OutcomeOK, 1900000000},
		{"float exp", `{"active":true,"exp":1900000000.0}`, checks.OutcomeOK, 1900000000},
		{"garbage exp", `{"active":true,"exp":"soon"}`, checks.OutcomeOK, 0},
		{"inactive", `{"active":false}`, checks.OutcomeIntrospectionNotPermitted, 0},
		{"not an object", `[1,2,3]`, checks.OutcomeMalformedResponse, 0},
		{"null", `null`, checks.OutcomeMalformedResponse, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := rfcServer(t, tc.body)
			tg := checks.Target{Name: "rfc", Provider: checks.ProviderGeneric, DiscoveryURL: srv.URL + "/.well-known/openid-configuration",
				Timeout: time.Second, Client: checks.Client{ID: "rfc-client", Secret: "rfc+secret", AuthMethod: checks.AuthClientSecretBasic},
				Grant: checks.Grant{Type: checks.GrantClientCredentials}, Probe: checks.ProbeUserinfo, TokenMode: checks.TokenModeFresh}
			res := checks.NewChecker(tg).Check(context.Background())
			assertNoCanary(t, res, "opaque-CANARY-token-1", "rfc+secret")
			if res.Outcome != tc.want {
				t.Fatalf("outcome %s, want %s: %s", res.Outcome, tc.want, res.Explanation)
			}
			if res.Token.Scope != "read write" && tc.want == checks.OutcomeOK && tc.name != "strings and nulls" {
				t.Errorf("scope %q", res.Token.Scope)
			}
			switch {
			case tc.exp != 0 && res.Token.Expiry.Unix() != tc.exp:
				t.Errorf("expiry %s, want %d from introspection", res.Token.Expiry, tc.exp)
			case tc.exp == 0 && tc.want == checks.OutcomeOK && res.Token.ExpirySource != "expires_in":
				t.Errorf("expiry source %q, want expires_in when introspection gives no usable exp", res.Token.ExpirySource)
			}
		})
	}
}

func TestOversizedAnswerIsMalformed(t *testing.T) {
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"access_token":"`))
		w.Write([]byte(strings.Repeat("a", checks.MaxBodyBytes)))
		w.Write([]byte(`"}`))
	}))
	defer big.Close()
	tg := checks.Target{Name: "big", Provider: checks.ProviderGeneric, Timeout: 2 * time.Second,
		Endpoints: checks.Endpoints{Token: big.URL},
		Client:    checks.Client{ID: "id", Secret: ccSecret, AuthMethod: checks.AuthClientSecretBasic},
		Grant:     checks.Grant{Type: checks.GrantClientCredentials}}
	res := checks.NewChecker(tg).Check(context.Background())
	if res.Outcome != checks.OutcomeMalformedResponse || !strings.Contains(res.Explanation, "exceeds") {
		t.Fatalf("outcome %s: %s", res.Outcome, res.Explanation)
	}
}

func TestEchoedSecretsAreRedacted(t *testing.T) {
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"error":"invalid_grant","error_description":"bad password %s for secret %s"}`,
			r.PostForm.Get("password"), r.PostForm.Get("client_secret"))
	}))
	defer echo.Close()
	tg := checks.Target{Name: "echo", Provider: checks.ProviderGeneric, Timeout: 2 * time.Second,
		Endpoints: checks.Endpoints{Token: echo.URL},
		Client:    checks.Client{ID: "id", Secret: ccSecret, AuthMethod: checks.AuthClientSecretPost},
		Grant:     checks.Grant{Type: checks.GrantPassword, Username: "u", Password: userPassword}}
	res := checks.NewChecker(tg).Check(context.Background())
	assertNoCanary(t, res)
	if !strings.Contains(res.Explanation, "<redacted>") {
		t.Fatalf("explanation: %s", res.Explanation)
	}
}

func TestSecretPrintsRedacted(t *testing.T) {
	s := checks.Secret(ccSecret)
	b, _ := json.Marshal(struct{ S checks.Secret }{s})
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %q %+v %#v", s, s, s, s, s), string(b)} {
		if strings.Contains(out, ccSecret) {
			t.Fatalf("secret printed: %s", out)
		}
	}
	if s.Reveal() != ccSecret {
		t.Fatal("Reveal lost the value")
	}
}

func TestEveryOutcomeIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/outcomes.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(checks.AllOutcomes) != len(checks.OutcomeDoc) {
		t.Errorf("%d outcomes but %d descriptions", len(checks.AllOutcomes), len(checks.OutcomeDoc))
	}
	for _, o := range checks.AllOutcomes {
		if !strings.Contains(string(doc), "| `"+string(o)+"` |") {
			t.Errorf("docs/outcomes.md has no row for %s", o)
		}
		if checks.OutcomeDoc[o] == "" {
			t.Errorf("no OutcomeDoc for %s", o)
		}
	}
}

func TestResultJSONUsesSecondsAndRoundTrips(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	res := w.check(t, w.target("client_credentials"))
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(b, &generic); err != nil {
		t.Fatal(err)
	}
	if d, ok := generic["duration_seconds"].(float64); !ok || d <= 0 || d > 10 {
		t.Errorf("duration_seconds = %v, want a small float", generic["duration_seconds"])
	}
	if _, ok := generic["tls_cert_expiry"]; ok {
		t.Errorf("an unknown time is written out: %s", b)
	}
	token := generic["token"].(map[string]any)
	if token["lifetime_seconds"] != 7200.0 {
		t.Errorf("lifetime_seconds = %v, want 7200", token["lifetime_seconds"])
	}
	var back checks.Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Duration.Round(time.Microsecond) != res.Duration.Round(time.Microsecond) ||
		back.Steps[0].Phases.Processing.Round(time.Microsecond) != res.Steps[0].Phases.Processing.Round(time.Microsecond) ||
		!back.Token.Expiry.Equal(res.Token.Expiry) || back.Outcome != res.Outcome {
		t.Errorf("round trip changed the result:\n%+v\n%+v", res, back)
	}
}

func TestTargetPrintsNoCredentials(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	tg := w.target("jwt_bearer")
	tg.Client = checks.Client{ID: "id", Secret: ccSecret, PrivateKey: w.key}
	tg.Grant.Password = userPassword
	out := fmt.Sprintf("%v %+v %#v %s", tg, tg, tg, tg.Client)
	for _, s := range []string{ccSecret, userPassword, w.key.D.String()[:20]} {
		if strings.Contains(out, s) {
			t.Fatalf("printing a Target shows a credential (%.6s...)", s)
		}
	}
	if !strings.Contains(out, "<private key>") || !strings.Contains(out, "<secret>") {
		t.Fatalf("printed target lacks the redaction marks: %s", out)
	}
}

func TestSecondWitnessJudgement(t *testing.T) {
	cases := []struct {
		name     string
		kind     string
		fault    orgsim.Fault
		endpoint orgsim.Endpoint
		want     checks.Outcome
	}{
		// The resource knows the token but refuses this call: the token is alive.
		{"inactive, 403 insufficient_scope", "password", orgsim.Fault{Status: 403,
			Body: `{"error":"insufficient_scope"}`}, orgsim.EndpointUserinfo, checks.OutcomeIntrospectionNotPermitted},
		// A userinfo outage says nothing about the token: no false "dead token".
		{"inactive, userinfo 503", "password", orgsim.Fault{Status: 503}, orgsim.EndpointUserinfo, checks.OutcomeServerError},
		{"inactive, userinfo 404", "password", orgsim.Fault{Status: 404, Body: "Not Found"}, orgsim.EndpointUserinfo, checks.OutcomeUnexpectedStatus},
		{"active, API limit", "client_credentials", orgsim.Fault{Status: 403,
			Body: `[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]`}, orgsim.EndpointUserinfo, checks.OutcomeRateLimited},
		{"token endpoint 404", "client_credentials", orgsim.Fault{Status: 404, Body: "Not Found"}, orgsim.EndpointToken, checks.OutcomeUnexpectedStatus},
		{"unauthorized_client is a grant problem", "client_credentials", orgsim.Fault{Status: 400,
			Body: `{"error":"unauthorized_client","error_description":"grant type not allowed"}`}, orgsim.EndpointToken, checks.OutcomeGrantRejected},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, orgsim.Options{})
			w.org.SetFault(tc.endpoint, tc.fault)
			res := w.check(t, w.target(tc.kind))
			if res.Outcome != tc.want {
				t.Fatalf("outcome %s, want %s: %s", res.Outcome, tc.want, res.Explanation)
			}
		})
	}
}

func TestAdviceMatchesTheDescription(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	w.org.SetFault(orgsim.EndpointToken, orgsim.Fault{Status: 400,
		Body: `{"error":"invalid_grant","error_description":"the principal named in the assertion is unknown to the recipient"}`})
	res := w.check(t, w.target("client_credentials"))
	if strings.Contains(res.Fix, "IP") {
		t.Fatalf("an unrelated description got the IP-restriction advice: %s", res.Fix)
	}
}

func TestAbsurdTimestampsAreUnknown(t *testing.T) {
	srv := rfcServer(t, `{"active":true,"exp":300000000000000,"iat":1899996400}`)
	tg := checks.Target{Name: "rfc", Provider: checks.ProviderGeneric, DiscoveryURL: srv.URL + "/.well-known/openid-configuration",
		Timeout: time.Second, Client: checks.Client{ID: "rfc-client", Secret: "rfc+secret", AuthMethod: checks.AuthClientSecretBasic},
		Grant: checks.Grant{Type: checks.GrantClientCredentials}, Probe: checks.ProbeUserinfo}
	res := checks.NewChecker(tg).Check(context.Background())
	if res.Token.ExpirySource == "introspection" {
		t.Fatalf("an exp past year 9999 was taken: %s", res.Token.Expiry)
	}
	if _, err := json.Marshal(res); err != nil {
		t.Fatalf("the result cannot be written as JSON: %v", err)
	}
}

func TestReuseKeepsALiveTokenTheIntrospectorCannotSee(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	tg := w.target("password")
	tg.TokenMode = checks.TokenModeReuse
	c := checks.NewChecker(tg, checks.WithClock(w.clock.Now))
	defer c.Close(context.Background())
	for i := range 3 {
		res := c.Check(context.Background())
		if res.Outcome != checks.OutcomeIntrospectionNotPermitted {
			t.Fatalf("check %d: %s", i, res.Outcome)
		}
	}
	if got := w.org.Requests(orgsim.EndpointToken); got != 1 {
		t.Fatalf("%d tokens minted in three checks; reuse must keep the working token", got)
	}
}

func TestSecretFormatsRedactedWithEveryVerb(t *testing.T) {
	g := checks.Grant{Password: userPassword}
	if out := fmt.Sprintf("%d %x %X %o %v", g, g, g.Password, g.Password, g.Password); strings.Contains(out, userPassword) ||
		strings.Contains(out, fmt.Sprintf("%x", userPassword)) {
		t.Fatalf("a verb prints the secret: %s", out)
	}
}

func TestDiscoveryPointingElsewhereIsRefused(t *testing.T) {
	var stolen bool
	thief := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { stolen = true }))
	defer thief.Close()
	doc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"issuer":"x","token_endpoint":%q}`, strings.Replace(thief.URL, "127.0.0.1", "localhost", 1)+"/token")
	}))
	defer doc.Close()
	tg := checks.Target{Name: "d", Provider: checks.ProviderGeneric, DiscoveryURL: doc.URL + "/.well-known/openid-configuration",
		Timeout: time.Second, Client: checks.Client{ID: "id", Secret: ccSecret, AuthMethod: checks.AuthClientSecretBasic},
		Grant: checks.Grant{Type: checks.GrantClientCredentials}}
	res := checks.NewChecker(tg).Check(context.Background())
	if res.Outcome != checks.OutcomeDiscoveryFailed || !strings.Contains(res.Explanation, "another host") {
		t.Fatalf("outcome %s: %s", res.Outcome, res.Explanation)
	}
	if stolen {
		t.Fatal("the client secret was sent to the host a discovery document named")
	}
}

// Another port on the same host is another origin (another service): the
// client secret must not go there either.
func TestDiscoveryPointingToAnotherPortIsRefused(t *testing.T) {
	var stolen bool
	thief := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { stolen = true }))
	defer thief.Close()
	doc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"issuer":"x","token_endpoint":%q}`, thief.URL+"/token")
	}))
	defer doc.Close()
	tg := checks.Target{Name: "d", Provider: checks.ProviderGeneric, DiscoveryURL: doc.URL + "/.well-known/openid-configuration",
		Timeout: time.Second, Client: checks.Client{ID: "id", Secret: ccSecret, AuthMethod: checks.AuthClientSecretBasic},
		Grant: checks.Grant{Type: checks.GrantClientCredentials}}
	res := checks.NewChecker(tg).Check(context.Background())
	if res.Outcome != checks.OutcomeDiscoveryFailed || !strings.Contains(res.Explanation, "another host or port") {
		t.Fatalf("outcome %s: %s", res.Outcome, res.Explanation)
	}
	if stolen {
		t.Fatal("the client secret was sent to another port the discovery document named")
	}
}

func TestWaitingForARunningCheckHonoursTheDeadline(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	// The first check's token request waits at the org until the second
	// check has given up.
	hold := make(chan struct{})
	w.org.SetFault(orgsim.EndpointToken, orgsim.Fault{Hold: hold, Remaining: 1})
	c := checks.NewChecker(w.target("client_credentials"), checks.WithClock(w.clock.Now))
	done := make(chan *checks.Result)
	go func() { done <- c.Check(context.Background()) }()
	e2etest.WaitFor(t, 10*time.Second, "the first check's token request", func() bool {
		return w.org.Requests(orgsim.EndpointToken) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	began := time.Now()
	res := c.Check(ctx)
	waited := time.Since(began)
	close(hold)
	if waited > 300*time.Millisecond {
		t.Errorf("a check waited %s for the running one, past its own deadline", waited)
	}
	if res.Outcome != checks.OutcomeTimeout || !strings.Contains(res.Explanation, "still running") {
		t.Errorf("outcome %s: %s", res.Outcome, res.Explanation)
	}
	if first := <-done; first.Outcome != checks.OutcomeOK {
		t.Errorf("the running check: %s", first.Outcome)
	}
}
