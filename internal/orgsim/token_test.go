package orgsim_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

func TestPasswordGrantResponse(t *testing.T) {
	e := newEnv(t, orgsim.Options{OrgID: "00D5e000000AbCdEAA"})
	r := e.post("/services/oauth2/token", passwordForm(webID, webSecret))
	if r.status != http.StatusOK {
		t.Fatalf("token request: %s", r.describe())
	}
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	var fields map[string]any
	if err := json.Unmarshal(r.body, &fields); err != nil {
		t.Fatal(err)
	}
	for _, absent := range []string{"expires_in", "scope", "refresh_token"} {
		if _, ok := fields[absent]; ok {
			t.Errorf("password grant answer has %q; Salesforce sends none", absent)
		}
	}
	if _, ok := fields["issued_at"].(string); !ok {
		t.Errorf("issued_at is %T, want a JSON string", fields["issued_at"])
	}
	var tr tokenResponse
	if err := json.Unmarshal(r.body, &tr); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tr.AccessToken, "00D5e000000AbCd!") {
		t.Errorf("access token does not have the session id shape <15-char org id>!...")
	}
	if tr.TokenType != "Bearer" || tr.InstanceURL != e.org.URL() {
		t.Errorf("token_type %q instance_url %q, want Bearer and %q", tr.TokenType, tr.InstanceURL, e.org.URL())
	}
	if want := e.org.URL() + "/id/00D5e000000AbCdEAA/" + e.userID; tr.ID != want {
		t.Errorf("id = %q, want %q", tr.ID, want)
	}
	if want := strconv.FormatInt(epoch.UnixMilli(), 10); tr.IssuedAt != want {
		t.Errorf("issued_at = %q, want epoch milliseconds %q", tr.IssuedAt, want)
	}
	if !verifySignature(webSecret, tr.ID, tr.IssuedAt, tr.Signature) {
		t.Error("signature does not verify as Base64(HMAC-SHA256(id + issued_at, client secret))")
	}
}

func TestPasswordGrantErrors(t *testing.T) {
	form := func(edit func(url.Values)) url.Values {
		f := passwordForm(webID, webSecret)
		edit(f)
		return f
	}
	tests := []struct {
		name        string
		opts        orgsim.Options
		form        url.Values
		mod         func(*http.Request)
		status      int
		code, desc  string
		wantBasicWA bool
	}{
		{name: "wrong password", form: form(func(f url.Values) { f.Set("password", "nope"+securityToken) }),
			status: 400, code: "invalid_grant", desc: "authentication failure"},
		{name: "security token missing", form: form(func(f url.Values) { f.Set("password", password) }),
			status: 400, code: "invalid_grant", desc: "authentication failure"},
		{name: "unknown user", form: form(func(f url.Values) { f.Set("username", "ghost@acme.com") }),
			status: 400, code: "invalid_grant", desc: "authentication failure"},
		{name: "frozen user", form: form(func(f url.Values) { f.Set("username", frozenUser) }),
			status: 400, code: "invalid_grant", desc: "inactive user"},
		{name: "flow blocked", opts: orgsim.Options{PasswordFlowBlocked: true}, form: passwordForm(webID, webSecret),
			status: 400, code: "invalid_grant", desc: "authentication failure"},
		{name: "unknown client", form: form(func(f url.Values) { f.Set("client_id", "3MVG9nope") }),
			status: 400, code: "invalid_client_id", desc: "client identifier invalid"},
		{name: "missing client id", form: form(func(f url.Values) { f.Del("client_id") }),
			status: 400, code: "invalid_client_id", desc: "client identifier invalid"},
		{name: "wrong secret in body", form: form(func(f url.Values) { f.Set("client_secret", "nope") }),
			status: 400, code: "invalid_client", desc: "invalid client credentials"},
		{name: "wrong secret in Basic", form: form(func(f url.Values) { f.Del("client_id"); f.Del("client_secret") }),
			mod: basicAuth(webID, "nope"), status: 401, code: "invalid_client", desc: "invalid client credentials", wantBasicWA: true},
		{name: "missing password", form: form(func(f url.Values) { f.Del("password") }),
			status: 400, code: "invalid_request", desc: "username and password are required"},
		{name: "unsupported grant", form: form(func(f url.Values) { f.Set("grant_type", "urn:example:magic") }),
			status: 400, code: "unsupported_grant_type", desc: "grant type not supported"},
		{name: "missing grant type", form: form(func(f url.Values) { f.Del("grant_type") }),
			status: 400, code: "unsupported_grant_type", desc: "grant type not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.opts)
			var mods []func(*http.Request)
			if tt.mod != nil {
				mods = append(mods, tt.mod)
			}
			r := e.post("/services/oauth2/token", tt.form, mods...)
			wantOAuthError(t, r, tt.status, tt.code, tt.desc)
			if got := r.header.Get("WWW-Authenticate"); tt.wantBasicWA != strings.HasPrefix(got, "Basic") {
				t.Errorf("WWW-Authenticate = %q", got)
			}
		})
	}
}

func TestTokenEndpointRejectsGet(t *testing.T) {
	e := newEnv(t, orgsim.Options{})
	wantOAuthError(t, e.get("/services/oauth2/token", ""), 400, "invalid_request", "must use HTTP POST")
}

func TestLoginRateLimit(t *testing.T) {
	e := newEnv(t, orgsim.Options{LoginRateLimit: 2})
	e.passwordToken(webID, webSecret)
	e.passwordToken(webID, webSecret)
	r := e.post("/services/oauth2/token", passwordForm(webID, webSecret))
	// Salesforce's own answer: a plain invalid_grant; LOGIN_RATE_EXCEEDED is
	// only what Login History shows.
	wantOAuthError(t, r, 400, "invalid_grant", "login rate exceeded")

	e.clock.Advance(time.Hour)
	e.passwordToken(webID, webSecret) // a new hour, a new allowance
}

func TestBasicAuthSpecialCharacters(t *testing.T) {
	const oddID, oddSecret = "3MVG9:odd+id%2F", "s:e+c%r/et=="
	tests := []struct {
		name   string
		mod    func(*http.Request)
		status int
	}{
		{name: "form-urlencoded then Base64 (RFC 6749)", mod: basicAuth(oddID, oddSecret), status: 200},
		{name: "raw, not form-urlencoded", mod: func(r *http.Request) { r.SetBasicAuth(oddID, oddSecret) }, status: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, orgsim.Options{})
			e.org.AddApp(orgsim.App{ClientID: oddID, ClientSecret: oddSecret, RunAsUser: username})
			r := e.post("/services/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, tt.mod)
			if r.status != tt.status {
				t.Fatalf("got %s, want status %d", r.describe(), tt.status)
			}
		})
	}
	t.Run("body", func(t *testing.T) {
		e := newEnv(t, orgsim.Options{})
		e.org.AddApp(orgsim.App{ClientID: oddID, ClientSecret: oddSecret, RunAsUser: username})
		e.token(url.Values{"grant_type": {"client_credentials"}, "client_id": {oddID}, "client_secret": {oddSecret}})
	})
}

func TestClientCredentialsGrant(t *testing.T) {
	t.Run("success", func(t *testing.T) {
		e := newEnv(t, orgsim.Options{})
		tr := e.token(url.Values{"grant_type": {"client_credentials"}}, basicAuth(ccID, ccSecret))
		if tr.Scope != "api" {
			t.Errorf("scope = %q, want api", tr.Scope)
		}
		if !strings.HasSuffix(tr.ID, "/"+e.userID) {
			t.Errorf("id %q is not the run-as user's identity URL", tr.ID)
		}
		if !verifySignature(ccSecret, tr.ID, tr.IssuedAt, tr.Signature) {
			t.Error("signature does not verify")
		}
	})
	tests := []struct {
		name  string
		setup func(*orgsim.Org)
		desc  string
	}{
		{name: "no run-as user", setup: func(o *orgsim.Org) { o.AddApp(orgsim.App{ClientID: ccID, ClientSecret: ccSecret}) },
			desc: "no client credentials user enabled"},
		{name: "run-as user does not exist", setup: func(o *orgsim.Org) {
			o.AddApp(orgsim.App{ClientID: ccID, ClientSecret: ccSecret, RunAsUser: "ghost@acme.com"})
		}, desc: "no client credentials user enabled"},
		{name: "run-as user frozen", setup: func(o *orgsim.Org) { o.SetFrozen(username, true) }, desc: "inactive user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, orgsim.Options{})
			tt.setup(e.org)
			r := e.post("/services/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {ccID}, "client_secret": {ccSecret}})
			wantOAuthError(t, r, 400, "invalid_grant", tt.desc)
		})
	}
}

func TestJWTBearerGrant(t *testing.T) {
	key, otherKey := newKey(t), newKey(t)
	const jwtID = "3MVG9jwt"
	claims := func(edit func(map[string]any)) map[string]any {
		c := map[string]any{"iss": jwtID, "sub": username, "aud": "https://login.salesforce.com", "exp": epoch.Add(2 * time.Minute).Unix()}
		if edit != nil {
			edit(c)
		}
		return c
	}
	tests := []struct {
		name       string
		assertion  func(e *env) string
		code, desc string
	}{
		{name: "valid", assertion: func(*env) string { return signJWT(t, key, claims(nil)) }},
		{name: "test.salesforce.com audience at production", assertion: func(*env) string {
			return signJWT(t, key, claims(func(c map[string]any) { c["aud"] = "https://test.salesforce.com" }))
		}, code: "invalid_grant", desc: "Audience validation failed"},
		{name: "org URL audience", assertion: func(e *env) string {
			return signJWT(t, key, claims(func(c map[string]any) { c["aud"] = []string{e.org.URL()} }))
		}},
		{name: "prn wins over sub", assertion: func(*env) string {
			return signJWT(t, key, claims(func(c map[string]any) { c["sub"] = "ghost@acme.com"; c["prn"] = username }))
		}},
		{name: "wrong audience", assertion: func(*env) string {
			return signJWT(t, key, claims(func(c map[string]any) { c["aud"] = "https://example.com" }))
		}, code: "invalid_grant", desc: "Audience validation failed"},
		{name: "expired", assertion: func(*env) string {
			return signJWT(t, key, claims(func(c map[string]any) { c["exp"] = epoch.Add(-time.Second).Unix() }))
		}, code: "invalid_grant", desc: "assertion expired"},
		{name: "exp more than 3 minutes ahead", assertion: func(*env) string {
			return signJWT(t, key, claims(func(c map[string]any) { c["exp"] = epoch.Add(10 * time.Minute).Unix() }))
		}, code: "invalid_grant", desc: "assertion expiry too far in the future"},
		{name: "exp in milliseconds", assertion: func(*env) string {
			return signJWT(t, key, claims(func(c map[string]any) { c["exp"] = epoch.Add(time.Minute).UnixMilli() }))
		}, code: "invalid_grant", desc: "assertion expiry too far in the future"},
		{name: "user not pre-approved", assertion: func(*env) string {
			return signJWT(t, key, claims(func(c map[string]any) { c["sub"] = "other@acme.com" }))
		}, code: "invalid_grant", desc: "user hasn't approved this consumer"},
		{name: "signed by another key", assertion: func(*env) string { return signJWT(t, otherKey, claims(nil)) },
			code: "invalid_grant", desc: "invalid assertion"},
		{name: "unknown issuer", assertion: func(*env) string {
			return signJWT(t, key, claims(func(c map[string]any) { c["iss"] = "3MVG9nope" }))
		}, code: "invalid_client_id", desc: "client identifier invalid"},
		{name: "not a JWT", assertion: func(*env) string { return "not-a-jwt" }, code: "invalid_grant", desc: "invalid assertion"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, orgsim.Options{})
			e.org.AddApp(orgsim.App{ClientID: jwtID, ClientSecret: "jwt-secret", CertificateKey: &key.PublicKey, PreApproved: []string{username}})
			e.org.AddUser(orgsim.User{Username: "other@acme.com", Password: "x"})
			form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {tt.assertion(e)}}
			r := e.post("/services/oauth2/token", form)
			if tt.code != "" {
				wantOAuthError(t, r, 400, tt.code, tt.desc)
				return
			}
			if r.status != http.StatusOK {
				t.Fatalf("token request: %s", r.describe())
			}
			var fields map[string]any
			if err := json.Unmarshal(r.body, &fields); err != nil {
				t.Fatal(err)
			}
			if _, ok := fields["signature"]; ok {
				t.Error("jwt_bearer answer has a signature; published examples have none")
			}
			if fields["scope"] != "api" || fields["id"] != e.org.URL()+"/id/"+e.org.OrgID()+"/"+e.userID {
				t.Errorf("scope %v id %v, want api and the user's identity URL", fields["scope"], fields["id"])
			}
			// The app may introspect its own jwt_bearer tokens.
			in := e.introspectActive(jwtID, "jwt-secret", fields["access_token"].(string))
			if in.TokenType != "access_token" || in.Username != username {
				t.Errorf("introspection: token_type %q username %q", in.TokenType, in.Username)
			}
		})
	}
}

func TestPrivateKeyJWTClientAuthentication(t *testing.T) {
	key, otherKey := newKey(t), newKey(t)
	const pkID = "3MVG9pk"
	tests := []struct {
		name   string
		status int
		code   string
	}{
		{name: "valid", status: 200},
		{name: "signed by another key", status: 400, code: "invalid_client"},
		{name: "wrong audience", status: 400, code: "invalid_client"},
		{name: "expired", status: 400, code: "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, orgsim.Options{})
			e.org.AddApp(orgsim.App{ClientID: pkID, CertificateKey: &key.PublicKey, RunAsUser: username})
			c := map[string]any{"iss": pkID, "sub": pkID, "aud": e.org.URL() + "/services/oauth2/token", "exp": epoch.Add(time.Minute).Unix(), "jti": "1"}
			signer := key
			switch tt.name {
			case "signed by another key":
				signer = otherKey
			case "wrong audience":
				c["aud"] = "https://example.com"
			case "expired":
				c["exp"] = epoch.Add(-time.Minute).Unix()
			}
			r := e.post("/services/oauth2/token", url.Values{
				"grant_type":            {"client_credentials"},
				"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
				"client_assertion":      {signJWT(t, signer, c)},
			})
			if tt.code != "" {
				wantOAuthError(t, r, tt.status, tt.code, "invalid client credentials")
				return
			}
			if r.status != tt.status {
				t.Fatalf("got %s", r.describe())
			}
			var fields map[string]any
			_ = json.Unmarshal(r.body, &fields)
			if _, ok := fields["signature"]; ok {
				t.Error("an app without a secret got a signature")
			}
		})
	}
}

func TestRefreshTokenGrant(t *testing.T) {
	refresh := func(e *env, clientID, secret, rt string) response {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {clientID}}
		if secret != "" {
			form.Set("client_secret", secret)
		}
		return e.post("/services/oauth2/token", form)
	}
	decode := func(t *testing.T, r response) tokenResponse {
		t.Helper()
		if r.status != http.StatusOK {
			t.Fatalf("refresh: %s", r.describe())
		}
		var tr tokenResponse
		if err := json.Unmarshal(r.body, &tr); err != nil {
			t.Fatal(err)
		}
		return tr
	}

	t.Run("rotation, and reuse kills the chain", func(t *testing.T) {
		e := newEnv(t, orgsim.Options{})
		e.org.AddApp(orgsim.App{ClientID: "3MVG9rot", ClientSecret: "rot", RefreshTokenRotation: true})
		rt0, err := e.org.IssueRefreshToken("3MVG9rot", username)
		if err != nil {
			t.Fatal(err)
		}
		first := decode(t, refresh(e, "3MVG9rot", "rot", rt0))
		if first.RefreshToken == "" || first.RefreshToken == rt0 {
			t.Fatal("rotation: the refresh did not return a new refresh token")
		}
		if !verifySignature("rot", first.ID, first.IssuedAt, first.Signature) {
			t.Error("signature does not verify")
		}
		second := decode(t, refresh(e, "3MVG9rot", "rot", first.RefreshToken))
		if e.get("/services/data/v62.0/limits", second.AccessToken).status != http.StatusOK {
			t.Fatal("access token from the refresh does not work")
		}
		wantOAuthError(t, refresh(e, "3MVG9rot", "rot", rt0), 400, "invalid_grant", "expired access/refresh token")
		// The reuse ended the chain: the current refresh token and its access tokens too.
		wantOAuthError(t, refresh(e, "3MVG9rot", "rot", second.RefreshToken), 400, "invalid_grant", "expired access/refresh token")
		if r := e.get("/services/oauth2/userinfo", second.AccessToken); r.status != http.StatusUnauthorized {
			t.Errorf("access token of a killed chain: got %s, want 401", r.describe())
		}
	})
	t.Run("no rotation: same refresh token again, none returned", func(t *testing.T) {
		e := newEnv(t, orgsim.Options{})
		rt, _ := e.org.IssueRefreshToken(webID, username)
		for range 2 {
			tr := decode(t, refresh(e, webID, webSecret, rt))
			if tr.RefreshToken != "" {
				t.Error("refresh without rotation returned a refresh token")
			}
		}
	})
	t.Run("public app needs no secret", func(t *testing.T) {
		e := newEnv(t, orgsim.Options{})
		e.org.AddApp(orgsim.App{ClientID: "3MVG9pub", Public: true})
		rt, _ := e.org.IssueRefreshToken("3MVG9pub", username)
		tr := decode(t, refresh(e, "3MVG9pub", "", rt))
		if tr.Signature != "" {
			t.Error("an app without a secret got a signature")
		}
	})
	t.Run("errors", func(t *testing.T) {
		e := newEnv(t, orgsim.Options{})
		rt, _ := e.org.IssueRefreshToken(webID, username)
		wantOAuthError(t, refresh(e, ccID, ccSecret, rt), 400, "invalid_grant", "expired access/refresh token")
		wantOAuthError(t, refresh(e, webID, webSecret, "5Aepbogus"), 400, "invalid_grant", "expired access/refresh token")
		wantOAuthError(t, refresh(e, webID, webSecret, ""), 400, "invalid_request", "refresh_token is required")
		wantOAuthError(t, refresh(e, webID, "nope", rt), 400, "invalid_client", "invalid client credentials")
		e.org.SetFrozen(username, true)
		wantOAuthError(t, refresh(e, webID, webSecret, rt), 400, "invalid_grant", "inactive user")
	})
	t.Run("revoking the refresh token revokes its access tokens", func(t *testing.T) {
		e := newEnv(t, orgsim.Options{})
		rt, _ := e.org.IssueRefreshToken(webID, username)
		at := decode(t, refresh(e, webID, webSecret, rt)).AccessToken
		if r := e.post("/services/oauth2/revoke", url.Values{"token": {rt}}); r.status != http.StatusOK {
			t.Fatalf("revoke: %s", r.describe())
		}
		if r := e.get("/services/oauth2/userinfo", at); r.status != http.StatusUnauthorized {
			t.Errorf("access token after its refresh token was revoked: got %s, want 401", r.describe())
		}
	})
	t.Run("unknown app or user", func(t *testing.T) {
		e := newEnv(t, orgsim.Options{})
		if _, err := e.org.IssueRefreshToken("3MVG9nope", username); !errors.Is(err, orgsim.ErrUnknownApp) {
			t.Errorf("unknown app: got %v, want ErrUnknownApp", err)
		}
		if _, err := e.org.IssueRefreshToken(webID, "ghost@acme.com"); !errors.Is(err, orgsim.ErrUnknownUser) {
			t.Errorf("unknown user: got %v, want ErrUnknownUser", err)
		}
	})
}
