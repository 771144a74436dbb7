package orgsim_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

func TestIntrospectionPermissions(t *testing.T) {
	tests := []struct {
		name         string
		token        func(e *env) string
		callerID     string
		callerSecret string
		// wantType is the active answer's token_type; "" means {"active":false}.
		wantType     string
		wantClientID string
	}{
		{name: "own client-credentials token", token: (*env).ccToken, callerID: ccID, callerSecret: ccSecret,
			wantType: "access_token", wantClientID: ccID},
		{name: "own password-grant session id", token: func(e *env) string { return e.passwordToken(webID, webSecret) },
			callerID: webID, callerSecret: webSecret},
		{name: "password-grant session id, Introspect All Tokens", token: func(e *env) string { return e.passwordToken(webID, webSecret) },
			callerID: allID, callerSecret: allSecret, wantType: "sid"},
		{name: "another app's token", token: (*env).ccToken, callerID: webID, callerSecret: webSecret},
		{name: "another app's token, Introspect All Tokens", token: (*env).ccToken, callerID: allID, callerSecret: allSecret,
			wantType: "access_token", wantClientID: ccID},
		{name: "unknown token", token: func(*env) string { return "00D000000000001!nosuchtoken" }, callerID: allID, callerSecret: allSecret},
		{name: "own refresh token", token: func(e *env) string {
			rt, err := e.org.IssueRefreshToken(webID, username)
			if err != nil {
				e.t.Fatal(err)
			}
			return rt
		}, callerID: webID, callerSecret: webSecret, wantType: "refresh_token", wantClientID: webID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, orgsim.Options{})
			tok := tt.token(e)
			r := e.introspect(tt.callerID, tt.callerSecret, tok)
			if tt.wantType == "" {
				if r.status != http.StatusOK || string(r.body) != `{"active":false}` {
					t.Fatalf("got %d %s, want 200 {\"active\":false} and nothing else", r.status, r.body)
				}
				return
			}
			in := e.introspectActive(tt.callerID, tt.callerSecret, tok)
			if in.TokenType != tt.wantType || in.Username != username {
				t.Errorf("token_type %q username %q, want %q %q", in.TokenType, in.Username, tt.wantType, username)
			}
			if want := e.org.URL() + "/id/" + e.org.OrgID() + "/" + e.userID; in.Sub != want {
				t.Errorf("sub = %q, want the identity URL %q", in.Sub, want)
			}
			if in.Iat != epoch.Unix() || in.Nbf != epoch.Unix() {
				t.Errorf("iat %d nbf %d, want %d", in.Iat, in.Nbf, epoch.Unix())
			}
			switch tt.wantType {
			case "sid":
				// Salesforce's shape for session ids, nulls included.
				for _, want := range []string{`"scope":null`, `"client_id":null`, `"session_type":"Oauth2"`} {
					if !strings.Contains(string(r.body), want) {
						t.Errorf("answer lacks %s", want)
					}
				}
				if in.Exp != epoch.Add(2*time.Hour).Unix() {
					t.Errorf("exp = %d, want iat + the 2h org default", in.Exp)
				}
			case "access_token":
				if in.ClientID == nil || *in.ClientID != tt.wantClientID || in.Scope == nil || *in.Scope != "api" {
					t.Errorf("client_id %v scope %v, want %q and api", in.ClientID, in.Scope, tt.wantClientID)
				}
			case "refresh_token":
				if in.Exp != 0 {
					t.Errorf("refresh token has exp %d; it lives until revoked", in.Exp)
				}
			}
		})
	}
}

func TestSetIntrospectAllAppliesAtOnce(t *testing.T) {
	e := newEnv(t, orgsim.Options{})
	tok := e.passwordToken(webID, webSecret)
	if r := e.introspect(webID, webSecret, tok); string(r.body) != `{"active":false}` {
		t.Fatalf("before ticking the box: got %s", r.body)
	}
	e.org.SetIntrospectAll(webID, true)
	if in := e.introspectActive(webID, webSecret, tok); in.TokenType != "sid" {
		t.Errorf("token_type = %q, want sid", in.TokenType)
	}
}

func TestIntrospectionRequestErrors(t *testing.T) {
	e := newEnv(t, orgsim.Options{})
	tok := e.ccToken()
	tests := []struct {
		name       string
		form       url.Values
		mod        func(*http.Request)
		status     int
		code, desc string
	}{
		{name: "wrong secret", form: url.Values{"token": {tok}, "client_id": {ccID}, "client_secret": {"nope"}},
			status: 401, code: "invalid_client", desc: "invalid client credentials"},
		{name: "unknown client", form: url.Values{"token": {tok}, "client_id": {"3MVG9nope"}, "client_secret": {"x"}},
			status: 401, code: "invalid_client", desc: "invalid client credentials"},
		{name: "no client authentication", form: url.Values{"token": {tok}},
			status: 401, code: "invalid_client", desc: "invalid client credentials"},
		{name: "wrong secret in Basic", form: url.Values{"token": {tok}}, mod: basicAuth(ccID, "nope"),
			status: 401, code: "invalid_client", desc: "invalid client credentials"},
		{name: "no token", form: url.Values{"client_id": {ccID}, "client_secret": {ccSecret}},
			status: 400, code: "invalid_request", desc: "token is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mods []func(*http.Request)
			if tt.mod != nil {
				mods = append(mods, tt.mod)
			}
			wantOAuthError(t, e.post("/services/oauth2/introspect", tt.form, mods...), tt.status, tt.code, tt.desc)
		})
	}
	t.Run("Basic works", func(t *testing.T) {
		r := e.post("/services/oauth2/introspect", url.Values{"token": {tok}}, basicAuth(ccID, ccSecret))
		if r.status != 200 || !strings.Contains(string(r.body), `"active":true`) {
			t.Errorf("got %d %s", r.status, r.body)
		}
	})
}

// TestSlidingSessionTimeout: Salesforce records activity only once half
// the session timeout has passed since the activity last recorded; a call
// in the first half moves nothing, and introspection never does.
func TestSlidingSessionTimeout(t *testing.T) {
	e := newEnv(t, orgsim.Options{})
	e.org.SetSessionTimeout(ccID, 15*time.Minute)
	tok := e.ccToken()
	exp := func() time.Time { return time.Unix(e.introspectActive(ccID, ccSecret, tok).Exp, 0) }
	use := func() {
		t.Helper()
		if r := e.get("/services/data/v62.0/limits", tok); r.status != http.StatusOK {
			t.Fatalf("REST call: %s", r.describe())
		}
	}

	if got, want := exp(), epoch.Add(15*time.Minute); !got.Equal(want) {
		t.Fatalf("fresh token: exp %v, want %v", got, want)
	}
	e.clock.Advance(5 * time.Minute)
	use()
	if got, want := exp(), epoch.Add(15*time.Minute); !got.Equal(want) {
		t.Fatalf("a call 5m into a 15m session moved exp to %v; within the first half it must not", got)
	}
	e.clock.Advance(5 * time.Minute)
	if got, want := exp(), epoch.Add(15*time.Minute); !got.Equal(want) {
		t.Fatalf("introspection moved exp to %v; it must not count as activity", got)
	}
	use() // 10m: past half the timeout since the issue
	if got, want := exp(), epoch.Add(25*time.Minute); !got.Equal(want) {
		t.Fatalf("after a call past half the timeout: exp %v, want %v", got, want)
	}
	e.clock.Advance(7 * time.Minute)
	use() // 7m after the last recorded activity: not recorded
	if got, want := exp(), epoch.Add(25*time.Minute); !got.Equal(want) {
		t.Fatalf("a call 7m after the recorded activity moved exp to %v", got)
	}
	// The session ends 15m after the recorded activity, 8m after the last use.
	e.clock.Advance(8*time.Minute + time.Second)
	if r := e.introspect(ccID, ccSecret, tok); string(r.body) != `{"active":false}` {
		t.Errorf("timed-out token introspects as %s", r.body)
	}
	r := e.get("/services/oauth2/userinfo", tok)
	if r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("timed-out token on userinfo: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
}

func TestSessionTimeoutSources(t *testing.T) {
	e := newEnv(t, orgsim.Options{DefaultSessionTimeout: 30 * time.Minute})
	lifetime := func(tok string) time.Duration {
		in := e.introspectActive(allID, allSecret, tok)
		return time.Duration(in.Exp-in.Iat) * time.Second
	}
	before := e.ccToken()
	if got := lifetime(before); got != 30*time.Minute {
		t.Errorf("app without a timeout: lifetime %v, want the org default 30m", got)
	}
	e.org.SetSessionTimeout(ccID, 24*time.Hour)
	if got := lifetime(e.ccToken()); got != 24*time.Hour {
		t.Errorf("app timeout 24h: lifetime %v", got)
	}
	if got := lifetime(before); got != 30*time.Minute {
		t.Errorf("a token issued before the change: lifetime %v, want 30m still", got)
	}
}
