package orgsim_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

// The answers a Salesforce admin meets first, each with Salesforce's own
// body (docs/salesforce.md names the source of each).

func TestClientCredentialsIsRefusedOnTheLoginHost(t *testing.T) {
	e := newEnv(t, orgsim.Options{LoginHost: true})
	r := e.post("/services/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {ccID}, "client_secret": {ccSecret}})
	wantOAuthError(t, r, 400, "invalid_grant", "request not supported on this domain")
	// The other flows work there.
	e.passwordToken(webID, webSecret)
}

func TestSandboxAudience(t *testing.T) {
	key := newKey(t)
	const jwtID = "3MVG9jwt"
	assertion := func(aud string) url.Values {
		c := map[string]any{"iss": jwtID, "sub": username, "aud": aud, "exp": epoch.Add(2 * time.Minute).Unix()}
		return url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {signJWT(t, key, c)}}
	}
	for _, tt := range []struct {
		name    string
		sandbox bool
		aud     string
		ok      bool
	}{
		{"production, login", false, "https://login.salesforce.com", true},
		{"production, test", false, "https://test.salesforce.com", false},
		{"sandbox, test", true, "https://test.salesforce.com", true},
		{"sandbox, login", true, "https://login.salesforce.com", false},
		{"sandbox, its own URL", true, "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, orgsim.Options{Sandbox: tt.sandbox})
			e.org.AddApp(orgsim.App{ClientID: jwtID, CertificateKey: &key.PublicKey, PreApproved: []string{username}})
			aud := tt.aud
			if aud == "" {
				aud = e.org.URL()
			}
			r := e.post("/services/oauth2/token", assertion(aud))
			if tt.ok {
				if r.status != http.StatusOK {
					t.Fatalf("token request: %s", r.describe())
				}
				return
			}
			wantOAuthError(t, r, 400, "invalid_grant", "Audience validation failed")
		})
	}
}

func TestAccountStateAnswers(t *testing.T) {
	t.Run("org locked", func(t *testing.T) {
		e := newEnv(t, orgsim.Options{})
		e.org.SetInactive(true)
		wantOAuthError(t, e.post("/services/oauth2/token", passwordForm(webID, webSecret)), 400, "inactive_org", "inactive organization")
	})
	t.Run("login IP ranges or hours", func(t *testing.T) {
		e := newEnv(t, orgsim.Options{})
		e.org.AddUser(orgsim.User{Username: username, Password: password, SecurityToken: securityToken, IPRestricted: true})
		wantOAuthError(t, e.post("/services/oauth2/token", passwordForm(webID, webSecret)), 400, "invalid_grant", "IP restricted or invalid login hours")
	})
	t.Run("login rate", func(t *testing.T) {
		e := newEnv(t, orgsim.Options{LoginRateLimit: 1})
		e.ccToken()
		r := e.post("/services/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {ccID}, "client_secret": {ccSecret}})
		wantOAuthError(t, r, 400, "invalid_grant", "login rate exceeded")
	})
}

// TestIntrospectionNeedsTheConsumerSecret: Salesforce authenticates the
// introspecting app by key and secret; a client_id alone (an app without
// a secret, as a JWT-bearer setup may have) is refused with 401.
func TestIntrospectionNeedsTheConsumerSecret(t *testing.T) {
	e := newEnv(t, orgsim.Options{})
	e.org.AddApp(orgsim.App{ClientID: "3MVG9nosecret", Public: true})
	e.org.AddApp(orgsim.App{ClientID: "3MVG9empty"})
	tok := e.ccToken()
	for _, id := range []string{"3MVG9nosecret", "3MVG9empty", ccID} {
		r := e.post("/services/oauth2/introspect", url.Values{"token": {tok}, "client_id": {id}})
		wantOAuthError(t, r, 401, "invalid_client", "invalid client credentials")
	}
	if in := e.introspectActive(ccID, ccSecret, tok); !in.Active {
		t.Fatal("with the secret the app's own token is active")
	}
}

// TestIdentityNeedsAnIdentityScope: a token with only api (and
// refresh_token) works for the REST API but not for userinfo or the
// identity URL.
func TestIdentityNeedsAnIdentityScope(t *testing.T) {
	e := newEnv(t, orgsim.Options{})
	e.org.AddApp(orgsim.App{ClientID: "3MVG9api", ClientSecret: "api-secret", RunAsUser: username, Scope: "api refresh_token"})
	e.org.AddApp(orgsim.App{ClientID: "3MVG9id", ClientSecret: "id-secret", RunAsUser: username, Scope: "api id"})
	cc := func(id, secret string) tokenResponse {
		return e.token(url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}})
	}
	api := cc("3MVG9api", "api-secret")
	if r := e.get("/services/oauth2/userinfo", api.AccessToken); r.status != http.StatusForbidden {
		t.Errorf("userinfo with scope api: %s, want 403", r.describe())
	}
	if r := e.get(strings.TrimPrefix(api.ID, e.org.URL()), api.AccessToken); r.status != http.StatusForbidden {
		t.Errorf("identity URL with scope api: %s, want 403", r.describe())
	}
	r := e.get("/services/data/v62.0/limits", api.AccessToken)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"DailyApiRequests":{"Max":15000,"Remaining":`) {
		t.Errorf("limits with scope api: %d %s", r.status, r.body)
	}
	if r := e.get("/services/oauth2/userinfo", cc("3MVG9id", "id-secret").AccessToken); r.status != http.StatusOK {
		t.Errorf("userinfo with scope id: %s", r.describe())
	}
}

// TestRESTNeedsTheAPIScope: a live token without api (or full), here one
// with only chatter_api and id, is refused by the REST API with the 401
// INVALID_SESSION_ID a dead session gets, though userinfo accepts it.
func TestRESTNeedsTheAPIScope(t *testing.T) {
	e := newEnv(t, orgsim.Options{})
	e.org.AddApp(orgsim.App{ClientID: "3MVG9chatter", ClientSecret: "chatter-secret", RunAsUser: username, Scope: "chatter_api id"})
	e.org.AddApp(orgsim.App{ClientID: "3MVG9full", ClientSecret: "full-secret", RunAsUser: username, Scope: "full"})
	cc := func(id, secret string) tokenResponse {
		return e.token(url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}})
	}
	chatter := cc("3MVG9chatter", "chatter-secret")
	r := e.get("/services/data/v62.0/limits", chatter.AccessToken)
	if r.status != http.StatusUnauthorized || !strings.Contains(string(r.body), "This session is not valid for use with the REST API") ||
		!strings.Contains(string(r.body), "INVALID_SESSION_ID") {
		t.Errorf("limits with scope chatter_api: %d %s", r.status, r.body)
	}
	if r := e.get("/services/oauth2/userinfo", chatter.AccessToken); r.status != http.StatusOK {
		t.Errorf("userinfo with scope chatter_api id: %s", r.describe())
	}
	if r := e.get("/services/data/v62.0/limits", cc("3MVG9full", "full-secret").AccessToken); r.status != http.StatusOK {
		t.Errorf("limits with scope full: %d %s", r.status, r.body)
	}
}

// TestLimitsNeedsViewSetup: /limits refuses a user without View Setup and
// Configuration with 403 INSUFFICIENT_ACCESS; every REST answer carries the
// org's daily usage in Sforce-Limit-Info.
func TestLimitsNeedsViewSetup(t *testing.T) {
	e := newEnv(t, orgsim.Options{})
	e.org.AddUser(orgsim.User{Username: username, Password: password, SecurityToken: securityToken, NoViewSetup: true})
	tok := e.ccToken()
	r := e.get("/services/data/v62.0/limits", tok)
	if r.status != http.StatusForbidden || !strings.Contains(string(r.body), `"errorCode":"INSUFFICIENT_ACCESS"`) {
		t.Errorf("limits without View Setup: %d %s", r.status, r.body)
	}
	if v := r.header.Get("Sforce-Limit-Info"); !strings.HasPrefix(v, "api-usage=") || !strings.HasSuffix(v, "/15000") {
		t.Errorf("Sforce-Limit-Info = %q", v)
	}
	if r := e.get("/services/data/v62.0/sobjects", tok); r.status != http.StatusOK || r.header.Get("Sforce-Limit-Info") == "" {
		t.Errorf("sobjects: %d %q", r.status, r.header.Get("Sforce-Limit-Info"))
	}
}

func TestRevokeAnswersUnsupportedTokenTypeForNoToken(t *testing.T) {
	e := newEnv(t, orgsim.Options{})
	r := e.post("/services/oauth2/revoke", url.Values{"token": {"not-a-salesforce-token"}})
	wantOAuthError(t, r, 400, "unsupported_token_type", "this token type is not supported")
	tok := e.ccToken()
	if r := e.post("/services/oauth2/revoke", url.Values{"token": {tok}}); r.status != http.StatusOK {
		t.Fatalf("revoke: %s", r.describe())
	}
	wantOAuthError(t, e.post("/services/oauth2/revoke", url.Values{"token": {tok}}), 400, "invalid_token", "")
}

func TestRefreshTokenPolicy(t *testing.T) {
	refresh := func(e *env, id, secret, rt string) response {
		return e.post("/services/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {id}, "client_secret": {secret}, "refresh_token": {rt}})
	}
	t.Run("expire if unused", func(t *testing.T) {
		e := newEnv(t, orgsim.Options{})
		e.org.AddApp(orgsim.App{ClientID: "3MVG9rt", ClientSecret: "rt", RefreshTokenPolicy: orgsim.RefreshTokenPolicy{ExpireIfUnused: 24 * time.Hour}})
		rt, err := e.org.IssueRefreshToken("3MVG9rt", username)
		if err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(23 * time.Hour)
		if r := refresh(e, "3MVG9rt", "rt", rt); r.status != http.StatusOK {
			t.Fatalf("used within the period: %s", r.describe())
		}
		e.clock.Advance(23 * time.Hour) // the use restarted the period
		if r := refresh(e, "3MVG9rt", "rt", rt); r.status != http.StatusOK {
			t.Fatalf("used within the period after a use: %s", r.describe())
		}
		e.clock.Advance(24*time.Hour + time.Second)
		wantOAuthError(t, refresh(e, "3MVG9rt", "rt", rt), 400, "invalid_grant", "expired access/refresh token")
	})
	t.Run("expire after", func(t *testing.T) {
		e := newEnv(t, orgsim.Options{})
		e.org.AddApp(orgsim.App{ClientID: "3MVG9rt", ClientSecret: "rt", RefreshTokenPolicy: orgsim.RefreshTokenPolicy{ExpireAfter: 48 * time.Hour}})
		rt, err := e.org.IssueRefreshToken("3MVG9rt", username)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			e.clock.Advance(23 * time.Hour)
			if r := refresh(e, "3MVG9rt", "rt", rt); r.status != http.StatusOK {
				t.Fatalf("within the lifetime: %s", r.describe())
			}
		}
		e.clock.Advance(2*time.Hour + time.Second)
		wantOAuthError(t, refresh(e, "3MVG9rt", "rt", rt), 400, "invalid_grant", "expired access/refresh token")
	})
}
