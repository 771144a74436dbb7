// Package independent holds an end-to-end test of the tokenwatch binary
// against a Salesforce-like authorization server written for this package
// alone, from the project's protocol notes on Salesforce. It
// shares no code with the simulator under internal/.
package independent

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultSessionTimeout is the org-wide inactivity timeout used when an app
// sets none (Salesforce's default is 120 minutes).
const DefaultSessionTimeout = 2 * time.Hour

// App is a connected app.
type App struct {
	ClientID     string
	ClientSecret string
	// IntrospectAll is the "Introspect All Tokens" checkbox: the app may
	// introspect every token of the org, session ids included.
	IntrospectAll bool
	// RunAs is the integration user for the client credentials flow; empty
	// means the flow is not enabled for this app.
	RunAs string
	// SessionTimeout is the app's "Timeout Value"; zero means the org default.
	SessionTimeout time.Duration
}

type user struct {
	id            string
	username      string
	password      string
	securityToken string
	// blocked: every session of this user ends as soon as it is created.
	blocked bool
}

type token struct {
	value     string
	clientID  string
	username  string
	session   bool // password-grant tokens are session ids
	scope     string
	issued    time.Time
	lastUsed  time.Time
	timeout   time.Duration
	revoked   bool
	revokedBy string
}

// Server is a Salesforce-like authorization server listening on loopback.
type Server struct {
	ts    *httptest.Server
	orgID string

	mu       sync.Mutex
	apps     map[string]*App
	users    map[string]*user
	tokens   map[string]*token
	issued   []string
	requests map[string]int
	// apiCalls counts the REST API requests of the day.
	apiCalls int
	// badSignatures: token responses carry a signature made with the wrong key.
	badSignatures bool
}

// NewServer starts a server on 127.0.0.1 with a random port.
func NewServer() *Server {
	s := &Server{
		orgID:    "00D" + randomString(15, alnum),
		apps:     map[string]*App{},
		users:    map[string]*user{},
		tokens:   map[string]*token{},
		requests: map[string]int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/services/oauth2/token", s.handleToken)
	mux.HandleFunc("/services/oauth2/introspect", s.handleIntrospect)
	mux.HandleFunc("/services/oauth2/revoke", s.handleRevoke)
	mux.HandleFunc("/services/oauth2/userinfo", s.handleUserInfo)
	mux.HandleFunc("/id/", s.handleIdentity)
	mux.HandleFunc("/services/data/", s.handleREST)
	mux.HandleFunc("/.well-known/openid-configuration", s.handleDiscovery)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not found", http.StatusNotFound)
	})
	s.ts = httptest.NewServer(s.count(mux))
	return s
}

// URL is the base URL, e.g. http://127.0.0.1:41234.
func (s *Server) URL() string { return s.ts.URL }

// Close stops the server.
func (s *Server) Close() { s.ts.Close() }

// AddApp registers a connected app.
func (s *Server) AddApp(a App) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := a
	s.apps[a.ClientID] = &c
}

// AddUser registers a user whose login password is password+securityToken.
func (s *Server) AddUser(username, password, securityToken string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[username] = &user{
		id:            "005" + randomString(15, alnum),
		username:      username,
		password:      password,
		securityToken: securityToken,
	}
}

// KillSessions ends every live session of the user (Setup > Session
// Management > Remove) and returns how many it ended.
func (s *Server) KillSessions(username string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	now := time.Now()
	for _, t := range s.tokens {
		if t.username == username && s.aliveLocked(t, now) {
			t.revoked, t.revokedBy = true, "admin"
			n++
		}
	}
	return n
}

// BlockSessions models an admin policy that ends each session of the user as
// soon as it is created: the token endpoint still answers with a token, yet
// introspection, userinfo and revocation see it as dead. on=false lifts it.
func (s *Server) BlockSessions(username string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.users[username]; ok {
		u.blocked = on
	}
	if on {
		for _, t := range s.tokens {
			if t.username == username && !t.revoked {
				t.revoked, t.revokedBy = true, "admin"
			}
		}
	}
}

// CorruptSignatures makes token responses carry a signature computed with a
// key other than the client secret, as when a response is altered in transit.
func (s *Server) CorruptSignatures(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.badSignatures = on
}

// IssuedTokens lists every access token the server has issued, in order.
func (s *Server) IssuedTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

// RevokedByClient reports whether the token was revoked through /revoke.
func (s *Server) RevokedByClient(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tok]
	return ok && t.revoked && t.revokedBy == "client"
}

// Requests returns the number of requests seen per "METHOD path".
func (s *Server) Requests() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.requests))
	for k, v := range s.requests {
		out[k] = v
	}
	return out
}

// RequestSummary formats Requests in a stable order.
func (s *Server) RequestSummary() string {
	req := s.Requests()
	keys := make([]string, 0, len(req))
	for k := range req {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, req[k])
	}
	return strings.TrimSpace(b.String())
}

func (s *Server) count(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if strings.HasPrefix(p, "/id/") {
			p = "/id/..."
		}
		s.mu.Lock()
		s.requests[r.Method+" "+p]++
		s.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func (s *Server) identityURL(u *user) string {
	// The identity URL's host differs from instance_url, as on real orgs.
	host := strings.Replace(s.ts.URL, "127.0.0.1", "localhost", 1)
	return host + "/id/" + s.orgID + "/" + u.id
}

// --- token endpoint ---

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	InstanceURL string `json:"instance_url"`
	ID          string `json:"id"`
	TokenType   string `json:"token_type"`
	IssuedAt    string `json:"issued_at"`
	Signature   string `json:"signature"`
	Scope       string `json:"scope,omitempty"`
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		oauthError(w, http.StatusMethodNotAllowed, "invalid_request", "must use HTTP POST")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "malformed request body")
		return
	}
	grant := r.PostForm.Get("grant_type")
	if grant == "" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant type not supported")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	app, status, code, desc := s.authenticateClientLocked(r)
	if app == nil {
		oauthError(w, status, code, desc)
		return
	}
	var (
		u       *user
		session bool
		scope   string
	)
	switch grant {
	case "password":
		cand, ok := s.users[r.PostForm.Get("username")]
		if !ok || r.PostForm.Get("password") != cand.password+cand.securityToken {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "authentication failure")
			return
		}
		u, session = cand, true
	case "client_credentials":
		cand, ok := s.users[app.RunAs]
		if app.RunAs == "" || !ok {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "no client credentials user enabled")
			return
		}
		u, scope = cand, "api"
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant type not supported")
		return
	}

	now := time.Now()
	t := &token{
		value:    s.orgID + "!" + randomString(96, tokenChars),
		clientID: app.ClientID,
		username: u.username,
		session:  session,
		scope:    scope,
		issued:   now,
		lastUsed: now,
		timeout:  app.SessionTimeout,
	}
	if t.timeout <= 0 {
		t.timeout = DefaultSessionTimeout
	}
	if u.blocked {
		t.revoked, t.revokedBy = true, "admin"
	}
	s.tokens[t.value] = t
	s.issued = append(s.issued, t.value)

	resp := tokenResponse{
		AccessToken: t.value,
		InstanceURL: s.ts.URL,
		ID:          s.identityURL(u),
		TokenType:   "Bearer",
		IssuedAt:    strconv.FormatInt(now.UnixMilli(), 10),
		Scope:       scope,
	}
	key := app.ClientSecret
	if s.badSignatures {
		key = "not-" + key
	}
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(resp.ID + resp.IssuedAt))
	resp.Signature = base64.StdEncoding.EncodeToString(mac.Sum(nil))
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, resp)
}

// authenticateClientLocked reads client credentials from Basic or the body.
func (s *Server) authenticateClientLocked(r *http.Request) (app *App, status int, code, desc string) {
	id, secret, basic := r.BasicAuth()
	if basic {
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return nil, http.StatusBadRequest, "invalid_client", "malformed client credentials"
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	a, ok := s.apps[id]
	if id == "" || !ok {
		return nil, http.StatusBadRequest, "invalid_client_id", "client identifier invalid"
	}
	if !hmac.Equal([]byte(secret), []byte(a.ClientSecret)) {
		return nil, http.StatusBadRequest, "invalid_client", "invalid client credentials"
	}
	return a, 0, "", ""
}

func (s *Server) aliveLocked(t *token, now time.Time) bool {
	return !t.revoked && now.Before(t.lastUsed.Add(t.timeout))
}

// --- introspection ---

func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		oauthError(w, http.StatusMethodNotAllowed, "invalid_request", "must use HTTP POST")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "malformed request body")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	caller, _, code, desc := s.authenticateClientLocked(r)
	if caller == nil {
		w.Header().Set("WWW-Authenticate", `Basic realm="introspect"`)
		oauthError(w, http.StatusUnauthorized, code, desc)
		return
	}
	if r.PostForm.Get("token") == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "token is required")
		return
	}
	now := time.Now()
	t, ok := s.tokens[r.PostForm.Get("token")]
	inactive := map[string]any{"active": false}
	if !ok || !s.aliveLocked(t, now) {
		writeJSON(w, http.StatusOK, inactive)
		return
	}
	// Who may see what: an app sees its own non-session tokens; session ids
	// (password grant) and other apps' tokens only with Introspect All Tokens.
	visible := caller.IntrospectAll || (!t.session && t.clientID == caller.ClientID)
	if !visible {
		writeJSON(w, http.StatusOK, inactive)
		return
	}
	u := s.users[t.username]
	exp := t.lastUsed.Add(t.timeout)
	body := map[string]any{
		"active":   true,
		"username": u.username,
		"sub":      s.identityURL(u),
		"exp":      exp.Unix(),
		"iat":      t.issued.Unix(),
		"nbf":      t.issued.Unix(),
	}
	if t.session {
		body["token_type"] = "sid"
		body["session_type"] = "Oauth2"
		body["scope"] = nil
		body["client_id"] = nil
	} else {
		body["token_type"] = "access_token"
		body["scope"] = t.scope
		body["client_id"] = t.clientID
	}
	writeJSON(w, http.StatusOK, body)
}

// --- revocation ---

func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	var tok string
	switch r.Method {
	case http.MethodPost:
		if err := r.ParseForm(); err != nil {
			oauthError(w, http.StatusBadRequest, "invalid_request", "malformed request body")
			return
		}
		tok = r.PostForm.Get("token")
	case http.MethodGet:
		tok = r.URL.Query().Get("token")
	default:
		oauthError(w, http.StatusMethodNotAllowed, "invalid_request", "unsupported method")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tok]
	if !ok || !s.aliveLocked(t, time.Now()) {
		oauthError(w, http.StatusBadRequest, "invalid_token", "invalid token")
		return
	}
	t.revoked, t.revokedBy = true, "client"
	w.WriteHeader(http.StatusOK)
}

// --- resource calls ---

func (s *Server) bearerLocked(w http.ResponseWriter, r *http.Request) (*token, *user) {
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="salesforce"`)
		writeJSON(w, http.StatusUnauthorized, []map[string]string{{
			"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID",
		}})
		return nil, nil
	}
	now := time.Now()
	t, ok := s.tokens[strings.TrimSpace(h[len(prefix):])]
	if !ok || !s.aliveLocked(t, now) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="salesforce", error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, []map[string]string{{
			"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID",
		}})
		return nil, nil
	}
	t.lastUsed = now // API use pushes the inactivity timeout forward
	return t, s.users[t.username]
}

func (s *Server) handleUserInfo(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, u := s.bearerLocked(w, r)
	if t == nil {
		return
	}
	if t.scope != "" && !hasAnyScope(t.scope, "id", "openid", "profile", "email", "address", "phone", "full") {
		// The identity service wants one of these scopes; an api-only
		// token is refused though it is alive.
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "insufficient_scope", "error_description": "insufficient scope"})
		return
	}
	local := strings.SplitN(u.username, "@", 2)[0]
	writeJSON(w, http.StatusOK, map[string]any{
		"sub":                s.identityURL(u),
		"user_id":            u.id,
		"organization_id":    s.orgID,
		"preferred_username": u.username,
		"nickname":           local,
		"name":               local,
		"email":              u.username,
		"email_verified":     true,
		"zoneinfo":           "Europe/London",
		"active":             true,
		"user_type":          "STANDARD",
		"language":           "en_US",
		"locale":             "en_GB",
		"updated_at":         t.issued.UTC().Format("2006-01-02T15:04:05Z"),
	})
}

func (s *Server) handleIdentity(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, u := s.bearerLocked(w, r)
	if t == nil {
		return
	}
	if r.URL.Path != "/id/"+s.orgID+"/"+u.id {
		http.Error(w, "Bad_Id", http.StatusForbidden)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id":              s.identityURL(u),
		"user_id":         u.id,
		"organization_id": s.orgID,
		"username":        u.username,
		"active":          true,
		"urls":            map[string]string{"rest": s.ts.URL + "/services/data/v62.0/"},
	})
}

// dailyAPIRequests is the org's daily allowance of REST API requests.
const dailyAPIRequests = 15000

// handleREST answers the REST API's limits resource, which any token with
// the api scope may read; every REST call counts against the allowance.
func (s *Server) handleREST(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, _ := s.bearerLocked(w, r)
	if t == nil {
		return
	}
	if t.scope != "" && !hasAnyScope(t.scope, "api", "full") {
		writeJSON(w, http.StatusUnauthorized, []map[string]string{{
			"message": "This session is not valid for use with the REST API", "errorCode": "INVALID_SESSION_ID",
		}})
		return
	}
	s.apiCalls++
	w.Header().Set("Sforce-Limit-Info", fmt.Sprintf("api-usage=%d/%d", s.apiCalls, dailyAPIRequests))
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if r.Method != http.MethodGet || len(parts) != 4 || parts[3] != "limits" || !strings.HasPrefix(parts[2], "v") {
		writeJSON(w, http.StatusNotFound, []map[string]string{{
			"message": "The requested resource does not exist", "errorCode": "NOT_FOUND",
		}})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"DailyApiRequests":    map[string]int{"Max": dailyAPIRequests, "Remaining": dailyAPIRequests - s.apiCalls},
		"DailyBulkApiBatches": map[string]int{"Max": 15000, "Remaining": 15000},
		"DataStorageMB":       map[string]int{"Max": 5, "Remaining": 5},
	})
}

func hasAnyScope(scope string, want ...string) bool {
	for _, sc := range strings.Fields(scope) {
		for _, w := range want {
			if sc == w {
				return true
			}
		}
	}
	return false
}

func (s *Server) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	base := s.ts.URL
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                base,
		"token_endpoint":                        base + "/services/oauth2/token",
		"introspection_endpoint":                base + "/services/oauth2/introspect",
		"revocation_endpoint":                   base + "/services/oauth2/revoke",
		"userinfo_endpoint":                     base + "/services/oauth2/userinfo",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "client_secret_basic", "private_key_jwt"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

// --- helpers ---

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

const (
	alnum      = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	tokenChars = alnum + "._"
)

func randomString(n int, alphabet string) string {
	b := make([]byte, n)
	size := big.NewInt(int64(len(alphabet)))
	for i := range b {
		k, err := rand.Int(rand.Reader, size)
		if err != nil {
			panic(err)
		}
		b[i] = alphabet[k.Int64()]
	}
	return string(b)
}
