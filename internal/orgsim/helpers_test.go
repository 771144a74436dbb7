package orgsim_test

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/internal/fakeclock"
	"github.com/tokenwatch/tokenwatch/internal/orgsim"
)

// Test fixtures. These credentials exist only inside the simulated org.
const (
	username      = "jane.doe@acme.com"
	password      = "hunter2"
	securityToken = "SECTOK123"
	frozenUser    = "frozen@acme.com"

	ccID, ccSecret   = "3MVG9cc", "cc-secret"
	webID, webSecret = "3MVG9web", "web-secret"
	allID, allSecret = "3MVG9all", "all-secret"
)

var epoch = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// env is a started org with a user, a frozen user and three apps:
// cc (client credentials as the user), web (password grant only) and all
// (Introspect All Tokens).
type env struct {
	t      *testing.T
	org    *orgsim.Org
	clock  *fakeclock.Clock
	userID string
	client *http.Client
}

func newEnv(t *testing.T, opts orgsim.Options) *env {
	t.Helper()
	clock := fakeclock.New(epoch)
	if opts.Clock == nil {
		opts.Clock = clock.Now
	}
	org := orgsim.New(opts)
	e := &env{t: t, org: org, clock: clock}
	e.userID = org.AddUser(orgsim.User{Username: username, Password: password, SecurityToken: securityToken})
	org.AddUser(orgsim.User{Username: frozenUser, Password: password, SecurityToken: securityToken, Frozen: true})
	org.AddApp(orgsim.App{ClientID: ccID, ClientSecret: ccSecret, RunAsUser: username})
	org.AddApp(orgsim.App{ClientID: webID, ClientSecret: webSecret})
	org.AddApp(orgsim.App{ClientID: allID, ClientSecret: allSecret, IntrospectAll: true})
	if err := org.Start(); err != nil {
		t.Fatalf("start org: %v", err)
	}
	t.Cleanup(org.Close)
	e.client = &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return e
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// describe says what came back without printing a token: bodies of
// successful answers may hold one.
func (r response) describe() string {
	if r.status == http.StatusOK {
		return "200 (body withheld)"
	}
	return http.StatusText(r.status) + ": " + string(r.body)
}

func (e *env) do(req *http.Request) response {
	e.t.Helper()
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("read %s answer: %v", req.URL.Path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

func (e *env) post(path string, form url.Values, mod ...func(*http.Request)) response {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.org.URL()+path, strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, m := range mod {
		m(req)
	}
	return e.do(req)
}

func (e *env) get(path, bearer string) response {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.org.URL()+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return e.do(req)
}

// tokenResponse mirrors Salesforce's token answer; Extra catches fields that must not be there.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	Signature    string `json:"signature"`
	Scope        string `json:"scope"`
	InstanceURL  string `json:"instance_url"`
	ID           string `json:"id"`
	TokenType    string `json:"token_type"`
	IssuedAt     string `json:"issued_at"`
}

func (e *env) token(form url.Values, mod ...func(*http.Request)) tokenResponse {
	e.t.Helper()
	r := e.post("/services/oauth2/token", form, mod...)
	if r.status != http.StatusOK {
		e.t.Fatalf("token request: %s", r.describe())
	}
	var tr tokenResponse
	if err := json.Unmarshal(r.body, &tr); err != nil {
		e.t.Fatalf("token answer is not JSON: %v", err)
	}
	return tr
}

func passwordForm(clientID, secret string) url.Values {
	return url.Values{
		"grant_type": {"password"}, "client_id": {clientID}, "client_secret": {secret},
		"username": {username}, "password": {password + securityToken},
	}
}

func (e *env) passwordToken(clientID, secret string) string {
	e.t.Helper()
	return e.token(passwordForm(clientID, secret)).AccessToken
}

func (e *env) ccToken() string {
	e.t.Helper()
	return e.token(url.Values{"grant_type": {"client_credentials"}, "client_id": {ccID}, "client_secret": {ccSecret}}).AccessToken
}

// introspect asks as the given app and returns the raw answer.
func (e *env) introspect(clientID, secret, tok string) response {
	e.t.Helper()
	return e.post("/services/oauth2/introspect", url.Values{
		"token": {tok}, "token_type_hint": {"access_token"}, "client_id": {clientID}, "client_secret": {secret},
	})
}

// introspection is the active answer; pointers tell null from absent.
type introspection struct {
	Active      bool    `json:"active"`
	Scope       *string `json:"scope"`
	ClientID    *string `json:"client_id"`
	Username    string  `json:"username"`
	Sub         string  `json:"sub"`
	TokenType   string  `json:"token_type"`
	SessionType string  `json:"session_type"`
	Exp         int64   `json:"exp"`
	Iat         int64   `json:"iat"`
	Nbf         int64   `json:"nbf"`
}

func (e *env) introspectActive(clientID, secret, tok string) introspection {
	e.t.Helper()
	r := e.introspect(clientID, secret, tok)
	var in introspection
	if r.status != http.StatusOK || json.Unmarshal(r.body, &in) != nil || !in.Active {
		e.t.Fatalf("introspection: want an active answer, got %s %s", http.StatusText(r.status), string(r.body))
	}
	return in
}

// wantOAuthError checks an RFC 6749 error answer exactly.
func wantOAuthError(t *testing.T, r response, status int, code, description string) {
	t.Helper()
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("want a JSON error, got %d %q", r.status, r.body)
	}
	if r.status != status || body.Error != code || body.Description != description {
		t.Errorf("got %d %q %q, want %d %q %q", r.status, body.Error, body.Description, status, code, description)
	}
}

func verifySignature(secret, id, issuedAt, signature string) bool {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(id + issuedAt))
	return hmac.Equal([]byte(base64.StdEncoding.EncodeToString(m.Sum(nil))), []byte(signature))
}

func newKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signJWT builds an RS256 compact JWS over claims.
func signJWT(t *testing.T, key *rsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	enc := base64.RawURLEncoding
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signed := enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + enc.EncodeToString(sig)
}

func basicAuth(id, secret string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret)) }
}
