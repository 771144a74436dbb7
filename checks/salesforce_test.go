package checks_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

// TestSalesforceTokenErrors: every error text a Salesforce admin meets at
// the token endpoint, as Salesforce sends it, gets its own outcome and a fix
// that names what to change. Where orgsim produces the answer by itself the
// case sets the org up; the older codes that only some orgs still send are
// answered verbatim (docs/salesforce.md lists each with its source).
func TestSalesforceTokenErrors(t *testing.T) {
	body := func(code, desc string) orgsim.Fault {
		return orgsim.Fault{Status: 400, Body: `{"error":"` + code + `","error_description":"` + desc + `"}`}
	}
	cases := []struct {
		name  string
		opts  orgsim.Options
		setup func(*testing.T, *world, *checks.Target)
		fault *orgsim.Fault
		kind  string
		want  checks.Outcome
		// fix holds words the fix must contain.
		fix []string
	}{
		{name: "login rate exceeded", opts: orgsim.Options{LoginRateLimit: 1}, kind: "client_credentials",
			setup: func(t *testing.T, w *world, tg *checks.Target) { w.check(t, *tg) },
			want:  checks.OutcomeRateLimited, fix: []string{"3,600", "token_mode: reuse"}},
		{name: "inactive_user", kind: "client_credentials", fault: ptr(body("inactive_user", "inactive user")),
			want: checks.OutcomeGrantRejected, fix: []string{"deactivated", "Setup > Users"}},
		{name: "invalid_grant inactive user", kind: "password",
			setup: func(_ *testing.T, w *world, _ *checks.Target) { w.org.SetFrozen("user@example.com", true) },
			want:  checks.OutcomeGrantRejected, fix: []string{"frozen", "Setup > Users"}},
		{name: "inactive_org", kind: "password", setup: func(_ *testing.T, w *world, _ *checks.Target) { w.org.SetInactive(true) },
			want: checks.OutcomeGrantRejected, fix: []string{"locked", "suspended"}},
		{name: "invalid_client_id", kind: "password", setup: func(_ *testing.T, _ *world, tg *checks.Target) { tg.Client.ID = "nobody" },
			want: checks.OutcomeClientRejected, fix: []string{"consumer key", "sandbox"}},
		{name: "invalid_client_credentials", kind: "password", fault: ptr(body("invalid_client_credentials", "client secret invalid")),
			want: checks.OutcomeClientRejected, fix: []string{"consumer secret", "client.secret"}},
		{name: "invalid_client", kind: "password", setup: func(_ *testing.T, _ *world, tg *checks.Target) { tg.Client.Secret = "CANARY-wrong-secret" },
			want: checks.OutcomeClientRejected, fix: []string{"consumer secret"}},
		{name: "authentication failure", kind: "password", setup: func(_ *testing.T, _ *world, tg *checks.Target) { tg.Grant.Password = "CANARY-wrong-password" },
			want: checks.OutcomeGrantRejected, fix: []string{"security token", "Summer '23"}},
		{name: "invalid user credentials", kind: "password", fault: ptr(body("invalid_grant", "invalid user credentials")),
			want: checks.OutcomeGrantRejected, fix: []string{"grant.username", "security token"}},
		{name: "IP restricted or invalid login hours", kind: "password",
			setup: func(_ *testing.T, w *world, _ *checks.Target) {
				w.org.AddUser(orgsim.User{Username: "user@example.com", Password: userPassword, SecurityToken: userSecToken, IPRestricted: true})
			},
			want: checks.OutcomeGrantRejected, fix: []string{"Login IP Ranges", "Login Hours", "IP Relaxation"}},
		{name: "user hasn't approved this consumer", kind: "jwt_bearer",
			setup: func(_ *testing.T, _ *world, tg *checks.Target) { tg.Grant.Username = "user@example.com" },
			want:  checks.OutcomeGrantRejected, fix: []string{"Admin approved users are pre-authorized", "permission set"}},
		{name: "expired access/refresh token", kind: "refresh_token",
			setup: func(_ *testing.T, _ *world, tg *checks.Target) { tg.Grant.RefreshToken = "5Aep861CANARY-unknown" },
			want:  checks.OutcomeGrantRejected, fix: []string{"Refresh Token Policy", "Re-authorize"}},
		{name: "Audience validation failed", kind: "jwt_bearer",
			setup: func(_ *testing.T, _ *world, tg *checks.Target) { tg.Grant.Audience = "https://test.salesforce.com" },
			want:  checks.OutcomeGrantRejected, fix: []string{"grant.audience", "https://test.salesforce.com", "sandbox"}},
		{name: "audience is invalid", kind: "jwt_bearer", fault: ptr(body("invalid_grant", "audience is invalid")),
			want: checks.OutcomeGrantRejected, fix: []string{"grant.audience", "https://test.salesforce.com"}},
		{name: "invalid assertion", kind: "jwt_bearer",
			setup: func(_ *testing.T, w *world, tg *checks.Target) { tg.Grant.PrivateKey = otherKey() },
			want:  checks.OutcomeGrantRejected, fix: []string{"certificate", "grant.private_key_file"}},
		{name: "request not supported on this domain", opts: orgsim.Options{LoginHost: true}, kind: "client_credentials",
			want: checks.OutcomeGrantRejected, fix: []string{"My Domain", "login.salesforce.com"}},
		{name: "no client credentials user enabled", kind: "client_credentials",
			setup: func(_ *testing.T, w *world, tg *checks.Target) {
				w.org.AddApp(orgsim.App{ClientID: "cc-app", ClientSecret: ccSecret})
			},
			want: checks.OutcomeGrantRejected, fix: []string{"Run As", "Client Credentials Flow"}},
		{name: "unsupported_grant_type", kind: "client_credentials", fault: ptr(body("unsupported_grant_type", "grant type not supported")),
			want: checks.OutcomeGrantRejected, fix: []string{"grant.type", "connected app"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.opts)
			tg := w.target(tc.kind)
			if tc.setup != nil {
				tc.setup(t, w, &tg)
			}
			if tc.fault != nil {
				w.org.SetFault(orgsim.EndpointToken, *tc.fault)
			}
			res := w.check(t, tg)
			assertNoCanary(t, res, "CANARY-wrong", "CANARY-unknown")
			if res.Outcome != tc.want {
				t.Fatalf("outcome %s, want %s: %s", res.Outcome, tc.want, res.Explanation)
			}
			for _, word := range tc.fix {
				if !strings.Contains(res.Fix, word) {
					t.Errorf("fix lacks %q: %s", word, res.Fix)
				}
			}
			if strings.HasPrefix(res.Fix, "The grant was refused; see the error description") {
				t.Errorf("generic fix: %s", res.Fix)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// otherKey is an RSA key no connected app knows.
var otherKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// TestLimitsIsTheSecondWitnessOfAnAPIOnlyToken: a token with only the api
// scope is refused by userinfo (403) though it works; the REST API's
// /limits is its second witness, and its DailyApiRequests are kept.
func TestLimitsIsTheSecondWitnessOfAnAPIOnlyToken(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	res := w.check(t, w.target("jwt_bearer")) // jwt-app grants "api" only
	if res.Outcome != checks.OutcomeOK {
		t.Fatalf("outcome %s: %s", res.Outcome, res.Explanation)
	}
	pr := res.Step(checks.StepProbe)
	if !strings.HasSuffix(pr.URL, "/services/data/"+checks.LimitsAPIVersion+"/limits") || pr.Status != 200 {
		t.Fatalf("probe %s %s answered %d, want the REST API's limits", pr.Method, pr.URL, pr.Status)
	}
	if a := res.APIRequests; a == nil || a.Max != 15000 || a.Remaining <= 0 || a.Remaining >= a.Max {
		t.Fatalf("API requests %+v, want Max 15000 and what remains", res.APIRequests)
	}
	if w.org.Requests(orgsim.EndpointUserinfo) != 0 {
		t.Errorf("userinfo was called with a token whose scope does not reach it")
	}

	t.Run("the seed case with an api-only token", func(t *testing.T) {
		// Another app introspects without "Introspect All Tokens": inactive,
		// while the REST API accepts the token: a permission gap, not a dead token.
		tg := w.target("jwt_bearer")
		tg.Introspection.Client = &checks.Client{ID: "pw-app", Secret: pwSecret, AuthMethod: checks.AuthClientSecretPost}
		res := w.check(t, tg)
		if res.Outcome != checks.OutcomeIntrospectionNotPermitted {
			t.Fatalf("outcome %s, want introspection_not_permitted: %s", res.Outcome, res.Explanation)
		}
	})
	t.Run("a dead session", func(t *testing.T) {
		w.org.SetFault(orgsim.EndpointResource, orgsim.Fault{Status: 401,
			Body: `[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]`})
		defer w.org.ClearFaults()
		res := w.check(t, w.target("jwt_bearer"))
		if res.Outcome != checks.OutcomeResourceRejected || res.APIRequests != nil {
			t.Fatalf("outcome %s (api requests %+v): %s", res.Outcome, res.APIRequests, res.Explanation)
		}
	})
	t.Run("API not enabled is not a dead token", func(t *testing.T) {
		w.org.SetFault(orgsim.EndpointResource, orgsim.Fault{Status: 403,
			Body: `[{"message":"The REST API is not enabled for this Organization.","errorCode":"API_DISABLED_FOR_ORG"}]`})
		defer w.org.ClearFaults()
		tg := w.target("jwt_bearer")
		tg.Introspection.Client = &checks.Client{ID: "pw-app", Secret: pwSecret, AuthMethod: checks.AuthClientSecretPost}
		res := w.check(t, tg)
		if res.Outcome != checks.OutcomeIntrospectionNotPermitted {
			t.Fatalf("outcome %s: %s", res.Outcome, res.Explanation)
		}
	})
}

// TestNoWitnessForATokenWithoutAPIOrIdentityScope: a token whose scope
// reaches neither userinfo nor the REST API (chatter_api, refresh_token) is
// refused by both as if it were dead. It is not probed: introspection
// alone says whether it works, and an active token is not reported dead.
func TestNoWitnessForATokenWithoutAPIOrIdentityScope(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	w.org.AddApp(orgsim.App{ClientID: "chatter-app", ClientSecret: ccSecret, RunAsUser: "user@example.com", Scope: "chatter_api refresh_token"})
	tg := w.target("client_credentials")
	tg.Client.ID = "chatter-app"
	res := w.check(t, tg)
	if res.Outcome != checks.OutcomeOK {
		t.Fatalf("outcome %s, want ok: %s", res.Outcome, res.Explanation)
	}
	pr := res.Step(checks.StepProbe)
	if !pr.Skipped || !strings.Contains(pr.Detail, "reaches neither userinfo") || !strings.Contains(pr.Detail, `"chatter_api refresh_token"`) {
		t.Errorf("probe step %+v, want skipped with the reason", pr)
	}
	if n := w.org.Requests(orgsim.EndpointResource) + w.org.Requests(orgsim.EndpointUserinfo); n != 0 {
		t.Errorf("%d resource calls with a token whose scope reaches no witness", n)
	}
	// A token with api still has /limits as its witness, one with only an
	// identity scope userinfo.
	w.org.AddApp(orgsim.App{ClientID: "id-app", ClientSecret: ccSecret, RunAsUser: "user@example.com", Scope: "openid"})
	tg.Client.ID = "id-app"
	res = w.check(t, tg)
	if pr := res.Step(checks.StepProbe); res.Outcome != checks.OutcomeOK || pr.Skipped || !strings.HasSuffix(pr.URL, "/services/oauth2/userinfo") {
		t.Errorf("scope openid: %s, probe %s %s: %s", res.Outcome, pr.Method, pr.URL, res.Explanation)
	}
}

// TestIntrospectionWithoutASecret: a JWT-bearer org without a consumer
// secret introspects with its client_id alone, which Salesforce refuses.
func TestIntrospectionWithoutASecret(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	tg := w.target("jwt_bearer")
	tg.Introspection.Client = nil
	res := w.check(t, tg)
	if res.Outcome != checks.OutcomeIntrospectionUnauthorized {
		t.Fatalf("outcome %s: %s", res.Outcome, res.Explanation)
	}
	for _, word := range []string{"consumer secret", "introspection.client", "client.secret"} {
		if !strings.Contains(res.Fix, word) {
			t.Errorf("fix lacks %q: %s", word, res.Fix)
		}
	}
}

// TestRevokeUnsupportedTokenTypeIsANote: Salesforce answers some token
// kinds 400 unsupported_token_type at revocation; that is noted, not a failure.
func TestRevokeUnsupportedTokenTypeIsANote(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	w.org.SetFault(orgsim.EndpointRevoke, orgsim.Fault{Status: 400,
		Body: `{"error":"unsupported_token_type","error_description":"this token type is not supported"}`})
	res := w.check(t, w.target("client_credentials"))
	if res.Outcome != checks.OutcomeOK {
		t.Fatalf("outcome %s: %s", res.Outcome, res.Explanation)
	}
	rv := res.Step(checks.StepRevoke)
	if rv.Outcome != checks.OutcomeOK || !strings.Contains(rv.Detail, "unsupported_token_type") {
		t.Fatalf("revoke step %+v", rv)
	}
	if !strings.Contains(res.Explanation, "unsupported_token_type") {
		t.Errorf("the healthy explanation does not note the revocation: %s", res.Explanation)
	}
}

// TestReuseUnderTheHalfTimeoutRule: Salesforce records a session's activity
// only past half its timeout, so a kept token used early in its session
// keeps its first exp. Reaching that exp is a normal end; a session ended
// by an admin before it is an early end.
func TestReuseUnderTheHalfTimeoutRule(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	tg := w.target("password_all")
	tg.TokenMode = checks.TokenModeReuse
	c := checks.NewChecker(tg, checks.WithClock(w.clock.Now))
	defer c.Close(context.Background())

	first := c.Check(context.Background())
	w.clock.Advance(50 * time.Minute)
	second := c.Check(context.Background())
	if second.Outcome != checks.OutcomeOK || second.Token.Minted || !second.Token.Expiry.Equal(first.Token.Expiry) {
		t.Fatalf("second: %s minted=%v exp %s, want the first exp %s", second.Outcome, second.Token.Minted, second.Token.Expiry, first.Token.Expiry)
	}
	// No check in the second half of the session: it ends at its first exp.
	w.clock.Advance(75 * time.Minute)
	third := c.Check(context.Background())
	if third.Outcome != checks.OutcomeOK || !third.Token.Minted || !strings.Contains(third.Explanation, "ended at its exp") {
		t.Fatalf("third: %s minted=%v: %s", third.Outcome, third.Token.Minted, third.Explanation)
	}
	w.clock.Advance(20 * time.Minute)
	w.org.RevokeUserSessions("user@example.com")
	fourth := c.Check(context.Background())
	if fourth.Outcome != checks.OutcomeTokenInvalidatedEarly {
		t.Fatalf("fourth: %s: %s", fourth.Outcome, fourth.Explanation)
	}
}

// TestRefreshTokenPolicyExpiry: with grant.refresh_token_policy the result
// says when the refresh token in use expires: the earlier of its last use
// plus expire_if_unused and its issue (seen at a rotation) plus expire_after.
func TestRefreshTokenPolicyExpiry(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	tg := w.target("refresh_token")
	tg.Grant.RefreshTokenPolicy = checks.RefreshTokenPolicy{ExpireIfUnused: 90 * 24 * time.Hour, ExpireAfter: 30 * 24 * time.Hour}
	c := checks.NewChecker(tg, checks.WithClock(w.clock.Now))
	defer c.Close(context.Background())
	start := w.clock.Now()
	res := c.Check(context.Background())
	if res.Outcome != checks.OutcomeOK {
		t.Fatalf("outcome %s: %s", res.Outcome, res.Explanation)
	}
	// rt-app rotates: the token in use was issued at this refresh.
	if want := start.Add(30 * 24 * time.Hour); !res.RefreshTokenExpiry.Equal(want) {
		t.Fatalf("refresh token expiry %s, want %s", res.RefreshTokenExpiry, want)
	}
	tg.Grant.RefreshTokenPolicy = checks.RefreshTokenPolicy{ExpireIfUnused: 7 * 24 * time.Hour}
	c2 := checks.NewChecker(tg, checks.WithClock(w.clock.Now), checks.WithRefreshChain(checks.NewRefreshChain(c.RefreshToken(), true, nil)))
	defer c2.Close(context.Background())
	w.clock.Advance(time.Hour)
	res = c2.Check(context.Background())
	if want := start.Add(time.Hour + 7*24*time.Hour); res.Outcome != checks.OutcomeOK || !res.RefreshTokenExpiry.Equal(want) {
		t.Fatalf("%s: refresh token expiry %s, want %s", res.Outcome, res.RefreshTokenExpiry, want)
	}
	if res := w.check(t, w.target("client_credentials")); !res.RefreshTokenExpiry.IsZero() {
		t.Errorf("an org without a policy has a refresh token expiry %s", res.RefreshTokenExpiry)
	}
}

func TestSigningCertificateExpiryIsReported(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	tg := w.target("jwt_bearer")
	notAfter := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	tg.Grant.CertificateNotAfter = notAfter
	res := w.check(t, tg)
	if !res.SigningCertExpiry.Equal(notAfter) {
		t.Fatalf("signing certificate expiry %s, want %s", res.SigningCertExpiry, notAfter)
	}
	if strings.Contains(res.Explanation, "Warning") {
		t.Errorf("a warning for a certificate with more than 30 days left: %s", res.Explanation)
	}
	// Within 30 days the explanation (the status page, diagnose, the API) warns.
	tg.Grant.CertificateNotAfter = w.clock.Now().Add(10 * 24 * time.Hour)
	res = w.check(t, tg)
	if res.Outcome != checks.OutcomeOK || !strings.Contains(res.Explanation,
		"Warning: the signing certificate (grant.certificate_file) expires at "+tg.Grant.CertificateNotAfter.UTC().Format(time.RFC3339)+", in 10 days") {
		t.Errorf("%s: %s", res.Outcome, res.Explanation)
	}
}

// TestAPIAllowanceAndRefreshTokenWarnings: the explanation warns when less
// than 10% of the daily API requests remain, and when the refresh token
// expires within 14 days under its policy.
func TestAPIAllowanceAndRefreshTokenWarnings(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	w.org.SetFault(orgsim.EndpointResource, orgsim.Fault{Status: 200,
		Body: `{"DailyApiRequests":{"Max":15000,"Remaining":900},"DailyAsyncApexExecutions":{"Max":250000,"Remaining":250000}}`})
	res := w.check(t, w.target("jwt_bearer"))
	if res.Outcome != checks.OutcomeOK || !strings.Contains(res.Explanation, "Warning: 900 of the org's 15000 daily API requests remain (6%)") {
		t.Errorf("%s: %s", res.Outcome, res.Explanation)
	}
	tg := w.target("refresh_token")
	tg.Grant.RefreshTokenPolicy = checks.RefreshTokenPolicy{ExpireIfUnused: 7 * 24 * time.Hour}
	res = w.check(t, tg)
	if res.Outcome != checks.OutcomeOK || !strings.Contains(res.Explanation, "Warning: the refresh token expires at ") ||
		!strings.Contains(res.Explanation, "under grant.refresh_token_policy") {
		t.Errorf("%s: %s", res.Outcome, res.Explanation)
	}
}

// TestAPIAllowanceUsedUp: once the org's daily API allowance is gone the
// REST API answers 403 REQUEST_LIMIT_EXCEEDED "TotalRequests Limit
// exceeded.": rate_limited with advice about the org's API requests (not
// the login rate), and none of the allowance remaining, so that the
// metric and TokenAPIRequestsLow stay rather than going blank.
func TestAPIAllowanceUsedUp(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	exceeded := orgsim.Fault{Status: 403, Body: `[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]`}

	// Before any /limits answer the allowance is unknown.
	w.org.SetFault(orgsim.EndpointResource, exceeded)
	res := w.check(t, w.target("jwt_bearer"))
	if res.Outcome != checks.OutcomeRateLimited || res.APIRequests != nil {
		t.Fatalf("outcome %s, api requests %+v: %s", res.Outcome, res.APIRequests, res.Explanation)
	}
	w.org.ClearFaults()

	c := checks.NewChecker(w.target("jwt_bearer"), checks.WithClock(w.clock.Now))
	defer c.Close(context.Background())
	first := c.Check(context.Background())
	if first.Outcome != checks.OutcomeOK || first.APIRequests == nil {
		t.Fatalf("first: %s %+v: %s", first.Outcome, first.APIRequests, first.Explanation)
	}
	w.org.SetFault(orgsim.EndpointResource, exceeded)
	res = c.Check(context.Background())
	assertNoCanary(t, res)
	if res.Outcome != checks.OutcomeRateLimited {
		t.Fatalf("outcome %s: %s", res.Outcome, res.Explanation)
	}
	if strings.Contains(res.Fix, "logins") || !strings.Contains(res.Fix, "API request limit") || !strings.Contains(res.Fix, "DailyApiRequests") {
		t.Errorf("fix: %s", res.Fix)
	}
	if a := res.APIRequests; a == nil || a.Max != first.APIRequests.Max || a.Remaining != 0 {
		t.Errorf("api requests %+v, want none of %d remaining", a, first.APIRequests.Max)
	}
	if !strings.Contains(res.Explanation, "Warning: 0 of the org's 15000 daily API requests remain") {
		t.Errorf("explanation: %s", res.Explanation)
	}

	// Sforce-Limit-Info, when the answer carries it, tells the allowance.
	w.org.ClearFaults()
	withHeader := checks.NewChecker(w.target("jwt_bearer"), checks.WithClock(w.clock.Now),
		checks.WithTransport(limitsAnswer{status: 403, body: exceeded.Body, limitInfo: "api-usage=15007/15000; per-app-api-usage=3/100"}))
	defer withHeader.Close(context.Background())
	res = withHeader.Check(context.Background())
	if a := res.APIRequests; res.Outcome != checks.OutcomeRateLimited || a == nil || a.Max != 15000 || a.Remaining != 0 {
		t.Errorf("with Sforce-Limit-Info: %s %+v: %s", res.Outcome, a, res.Explanation)
	}

	// A 429 at the resource call is no login refusal either.
	w.org.SetFault(orgsim.EndpointResource, orgsim.Fault{Status: 429, Body: `{}`})
	res = c.Check(context.Background())
	if res.Outcome != checks.OutcomeRateLimited || strings.Contains(res.Fix, "logins per user") || !strings.Contains(res.Fix, "says nothing about the token") {
		t.Errorf("429: %s: %s", res.Outcome, res.Fix)
	}

	// Another limit (concurrent long requests) says nothing about the allowance.
	w.org.SetFault(orgsim.EndpointResource, orgsim.Fault{Status: 403,
		Body: `[{"message":"ConcurrentPerOrgLongTxn Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]`})
	res = c.Check(context.Background())
	if res.Outcome != checks.OutcomeRateLimited || res.APIRequests != nil || strings.Contains(res.Fix, "logins") {
		t.Errorf("concurrent limit: %s %+v: %s", res.Outcome, res.APIRequests, res.Fix)
	}
}

// TestLimitsWithoutViewSetup: /limits needs the View Setup and
// Configuration permission, which a least-privilege integration user
// lacks; its 403 INSUFFICIENT_ACCESS (or 404 NOT_FOUND) comes after the
// token was accepted, so the token works and the check is healthy. The
// allowance then comes from the Sforce-Limit-Info header every REST answer
// carries.
func TestLimitsWithoutViewSetup(t *testing.T) {
	w := newWorld(t, orgsim.Options{})
	w.org.AddUser(orgsim.User{Username: "jwt@example.com", Password: "x", NoViewSetup: true})
	res := w.check(t, w.target("jwt_bearer"))
	if res.Outcome != checks.OutcomeOK {
		t.Fatalf("outcome %s, want ok: %s", res.Outcome, res.Explanation)
	}
	pr := res.Step(checks.StepProbe)
	if pr.Status != 403 || !strings.Contains(pr.Detail, "INSUFFICIENT_ACCESS") || !strings.Contains(pr.Detail, "View Setup and Configuration") {
		t.Errorf("probe step %+v", pr)
	}
	if a := res.APIRequests; a == nil || a.Max != 15000 || a.Remaining <= 0 || a.Remaining >= a.Max {
		t.Errorf("api requests %+v, want them from Sforce-Limit-Info", res.APIRequests)
	}
	// The same with the seed case: inactive introspection, working token.
	tg := w.target("jwt_bearer")
	tg.Introspection.Client = &checks.Client{ID: "pw-app", Secret: pwSecret, AuthMethod: checks.AuthClientSecretPost}
	if res := w.check(t, tg); res.Outcome != checks.OutcomeIntrospectionNotPermitted {
		t.Errorf("seed case: %s: %s", res.Outcome, res.Explanation)
	}
	// 404 NOT_FOUND in Salesforce's error array: the token was accepted too.
	w.org.SetFault(orgsim.EndpointResource, orgsim.Fault{Status: 404,
		Body: `[{"message":"The requested resource does not exist","errorCode":"NOT_FOUND"}]`})
	if res := w.check(t, w.target("jwt_bearer")); res.Outcome != checks.OutcomeOK || res.APIRequests != nil {
		t.Errorf("404 NOT_FOUND: %s %+v: %s", res.Outcome, res.APIRequests, res.Explanation)
	}
	// The API itself refused is still a failure, and a dead session still dead.
	for _, f := range []orgsim.Fault{
		{Status: 403, Body: `[{"message":"API is disabled for this User","errorCode":"API_CURRENTLY_DISABLED"}]`},
		{Status: 401, Body: `[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]`},
		{Status: 404, Body: `not found`},
	} {
		w.org.SetFault(orgsim.EndpointResource, f)
		if res := w.check(t, w.target("jwt_bearer")); res.Outcome == checks.OutcomeOK {
			t.Errorf("%d %s: ok", f.Status, f.Body)
		}
	}
}

// limitsAnswer answers the REST API's /limits itself, with a
// Sforce-Limit-Info header; every other request goes to the simulated org.
type limitsAnswer struct {
	status          int
	body, limitInfo string
}

func (l limitsAnswer) RoundTrip(r *http.Request) (*http.Response, error) {
	if !strings.HasSuffix(r.URL.Path, "/limits") {
		return http.DefaultTransport.RoundTrip(r)
	}
	h := http.Header{"Content-Type": {"application/json"}, "Sforce-Limit-Info": {l.limitInfo}}
	return &http.Response{StatusCode: l.status, Header: h, Body: io.NopCloser(strings.NewReader(l.body)), Request: r}, nil
}
