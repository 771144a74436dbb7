package orgsim_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

const invalidSession = `[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]`

func TestRevoke(t *testing.T) {
	e := newEnv(t, orgsim.Options{})
	tok := e.passwordToken(webID, webSecret)
	identity := e.token(passwordForm(webID, webSecret)).ID
	idPath := strings.TrimPrefix(identity, e.org.URL())

	r := e.post("/services/oauth2/revoke", url.Values{"token": {tok}})
	if r.status != http.StatusOK || len(r.body) != 0 {
		t.Fatalf("revoke: got %d %q, want 200 and an empty body", r.status, r.body)
	}
	t.Run("introspection says inactive", func(t *testing.T) {
		if r := e.introspect(allID, allSecret, tok); string(r.body) != `{"active":false}` {
			t.Errorf("got %s", r.body)
		}
	})
	t.Run("REST API answers 401 with a JSON array", func(t *testing.T) {
		r := e.get("/services/data/v62.0/limits", tok)
		if r.status != http.StatusUnauthorized || string(r.body) != invalidSession {
			t.Errorf("got %d %s", r.status, r.body)
		}
		if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
			t.Errorf("Content-Type = %q", r.header.Get("Content-Type"))
		}
	})
	t.Run("userinfo answers 401 Bad_OAuth_Token", func(t *testing.T) {
		r := e.get("/services/oauth2/userinfo", tok)
		if r.status != http.StatusUnauthorized || string(r.body) != "Bad_OAuth_Token" ||
			!strings.Contains(r.header.Get("WWW-Authenticate"), `Bearer realm="salesforce", error="invalid_token"`) {
			t.Errorf("got %d %q %q", r.status, r.body, r.header.Get("WWW-Authenticate"))
		}
	})
	t.Run("identity URL answers 403 with one line of text", func(t *testing.T) {
		r := e.get(idPath, tok)
		if r.status != http.StatusForbidden || strings.Count(string(r.body), "\n") != 1 ||
			!strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
			t.Errorf("got %d %q %q", r.status, r.body, r.header.Get("Content-Type"))
		}
	})
	t.Run("revoking again answers 400 invalid_token", func(t *testing.T) {
		r := e.post("/services/oauth2/revoke", url.Values{"token": {tok}})
		if r.status != http.StatusBadRequest || string(r.body) != `{"error":"invalid_token"}` {
			t.Errorf("got %d %s", r.status, r.body)
		}
	})
	t.Run("missing token answers 400 unsupported_token_type", func(t *testing.T) {
		wantOAuthError(t, e.post("/services/oauth2/revoke", url.Values{}), 400, "unsupported_token_type", "missing token")
	})
	t.Run("GET with token in the query", func(t *testing.T) {
		other := e.passwordToken(webID, webSecret)
		if r := e.get("/services/oauth2/revoke?token="+url.QueryEscape(other), ""); r.status != http.StatusOK {
			t.Fatalf("got %s", r.describe())
		}
		if r := e.get("/services/oauth2/userinfo", other); r.status != http.StatusUnauthorized {
			t.Errorf("token revoked by GET still works: %s", r.describe())
		}
	})
}

func TestRevokeUserSessions(t *testing.T) {
	e := newEnv(t, orgsim.Options{})
	pw, cc := e.passwordToken(webID, webSecret), e.ccToken()
	rt, _ := e.org.IssueRefreshToken(webID, username)
	e.org.RevokeUserSessions(username)
	for name, tok := range map[string]string{"password": pw, "client credentials": cc} {
		if r := e.get("/services/oauth2/userinfo", tok); r.status != http.StatusUnauthorized {
			t.Errorf("%s token after the admin removed sessions: %s", name, r.describe())
		}
	}
	r := e.post("/services/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {webID}, "client_secret": {webSecret}})
	if r.status != http.StatusOK {
		t.Errorf("refresh token should survive removed sessions: %s", r.describe())
	}
}

func TestResourceEndpointsWithLiveToken(t *testing.T) {
	e := newEnv(t, orgsim.Options{IdentityHost: "https://test.salesforce.com"})
	tr := e.token(passwordForm(webID, webSecret))
	wantID := "https://test.salesforce.com/id/" + e.org.OrgID() + "/" + e.userID
	if tr.ID != wantID || tr.InstanceURL != e.org.URL() {
		t.Fatalf("id %q instance_url %q: want the identity host to differ from the instance", tr.ID, tr.InstanceURL)
	}

	t.Run("userinfo", func(t *testing.T) {
		r := e.get("/services/oauth2/userinfo", tr.AccessToken)
		var ui map[string]any
		if r.status != http.StatusOK || json.Unmarshal(r.body, &ui) != nil {
			t.Fatalf("got %s", r.describe())
		}
		want := map[string]any{"sub": wantID, "user_id": e.userID, "organization_id": e.org.OrgID(),
			"preferred_username": username, "name": "jane doe", "email": username}
		for k, v := range want {
			if ui[k] != v {
				t.Errorf("%s = %v, want %v", k, ui[k], v)
			}
		}
	})
	t.Run("userinfo without a token", func(t *testing.T) {
		r := e.get("/services/oauth2/userinfo", "")
		if r.status != http.StatusUnauthorized || strings.Contains(r.header.Get("WWW-Authenticate"), "error=") {
			t.Errorf("got %d %q: want 401 without an error attribute (RFC 6750 §3.1)", r.status, r.header.Get("WWW-Authenticate"))
		}
	})
	t.Run("limits", func(t *testing.T) {
		r := e.get("/services/data/v62.0/limits", tr.AccessToken)
		var limits map[string]struct{ Max, Remaining int }
		if r.status != http.StatusOK || json.Unmarshal(r.body, &limits) != nil {
			t.Fatalf("got %s", r.describe())
		}
		if l := limits["DailyApiRequests"]; l.Max != 15000 || l.Remaining >= l.Max {
			t.Errorf("DailyApiRequests = %+v", l)
		}
	})
	t.Run("identity URL served by the org", func(t *testing.T) {
		r := e.get(strings.TrimPrefix(tr.ID, "https://test.salesforce.com"), tr.AccessToken)
		var id struct {
			ID, UserID, OrganizationID, Username string
			URLs                                 map[string]string
		}
		if r.status != http.StatusOK || json.Unmarshal(r.body, &id) != nil {
			t.Fatalf("got %s", r.describe())
		}
		if id.Username != username || id.URLs["rest"] != e.org.URL()+"/services/data/v{version}/" {
			t.Errorf("username %q urls.rest %q", id.Username, id.URLs["rest"])
		}
	})
	t.Run("identity URL of an unknown user", func(t *testing.T) {
		if r := e.get("/id/"+e.org.OrgID()+"/005000000000999AAA", tr.AccessToken); r.status != http.StatusNotFound {
			t.Errorf("got %s, want 404", r.describe())
		}
	})
	t.Run("refresh token is not a session", func(t *testing.T) {
		rt, _ := e.org.IssueRefreshToken(webID, username)
		if r := e.get("/services/data/v62.0/limits", rt); r.status != http.StatusUnauthorized {
			t.Errorf("got %s, want 401", r.describe())
		}
	})
}

func TestDiscovery(t *testing.T) {
	e := newEnv(t, orgsim.Options{})
	r := e.get("/.well-known/openid-configuration", "")
	var doc struct {
		Issuer                            string   `json:"issuer"`
		TokenEndpoint                     string   `json:"token_endpoint"`
		IntrospectionEndpoint             string   `json:"introspection_endpoint"`
		RevocationEndpoint                string   `json:"revocation_endpoint"`
		UserinfoEndpoint                  string   `json:"userinfo_endpoint"`
		JWKSURI                           string   `json:"jwks_uri"`
		TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
		GrantTypesSupported               []string `json:"grant_types_supported"`
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &doc) != nil {
		t.Fatalf("got %s", r.describe())
	}
	base := e.org.URL()
	want := map[string]string{
		"issuer": base, "token": base + "/services/oauth2/token", "introspection": base + "/services/oauth2/introspect",
		"revocation": base + "/services/oauth2/revoke", "userinfo": base + "/services/oauth2/userinfo", "jwks": base + "/id/keys",
	}
	got := map[string]string{
		"issuer": doc.Issuer, "token": doc.TokenEndpoint, "introspection": doc.IntrospectionEndpoint,
		"revocation": doc.RevocationEndpoint, "userinfo": doc.UserinfoEndpoint, "jwks": doc.JWKSURI,
	}
	for k := range want {
		if got[k] != want[k] {
			t.Errorf("%s = %q, want %q", k, got[k], want[k])
		}
	}
	if strings.Join(doc.TokenEndpointAuthMethodsSupported, " ") != "client_secret_post client_secret_basic private_key_jwt" {
		t.Errorf("auth methods = %v", doc.TokenEndpointAuthMethodsSupported)
	}
	if len(doc.GrantTypesSupported) == 0 {
		t.Error("grant_types_supported is empty")
	}
	if r := e.get("/id/keys", ""); r.status != http.StatusOK || string(r.body) != `{"keys":[]}` {
		t.Errorf("jwks: %d %s", r.status, r.body)
	}
	if r := e.get("/.well-known/oauth-authorization-server", ""); r.status != http.StatusNotFound {
		t.Errorf("RFC 8414 metadata: got %d, want 404 as Salesforce answers", r.status)
	}
}
