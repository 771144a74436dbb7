package durability

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// rotator is an RFC 6749 authorization server written for this package
// alone, shared with no other code: one client, one refresh token chain,
// strict rotation. Every refresh returns a new refresh token; presenting a
// retired one kills the chain (every token of it dies, and every later
// refresh answers 400 invalid_grant "expired access/refresh token").
//
// When is a refresh token retired? A client can be killed after the server
// rotated but before it read the answer: then it never learned the new
// token, and no client could do better than present the old one again. So,
// as servers with a rotation grace period do, the rotator retires a refresh
// token once its successor has been used (refreshed with, or its access
// token introspected or presented to userinfo), and not before: presenting
// the predecessor of an unused successor is a lost answer (counted; the
// unused successor is retired instead). What kills the chain is exactly what
// a client with durable state must never do: go back to a refresh token
// after it has shown it holds the next one.
//
// Each refresh is delayed by a random duration (100-300 ms in the test),
// half before the rotation and half after it, so that kills land in
// mid-request on both sides of the rotation.
type rotator struct {
	srv          *httptest.Server
	clientID     string
	clientSecret string
	username     string
	delay        func() time.Duration

	mu      sync.Mutex
	seed    string // the chain's first refresh token, the one configured
	latest  string // the newest refresh token
	prev    string // the token latest replaced, while latest is unused; "" once it is used
	gen     map[string]int
	retired map[string]bool
	access  map[string]*rotatorAccess
	killed  string // why the chain died; "" while it lives

	refreshes     int // rotations answered
	lostAnswers   int // predecessors presented while their successor was unused
	abandoned     int // refreshes whose client went away before the rotation
	unknownTokens int
}

type rotatorAccess struct {
	refresh string // the refresh token issued with it
	issued  time.Time
	expiry  time.Time
	revoked bool
}

// newRotator starts a rotator on loopback; each refresh is delayed by a
// duration between minDelay and maxDelay drawn from rng.
func newRotator(t *testing.T, rng *mrand.Rand, minDelay, maxDelay time.Duration) *rotator {
	s := &rotator{
		clientID:     "rotating-monitor",
		clientSecret: "rotator-client-secret-" + randomToken(8),
		username:     "integration@rotating.example",
		gen:          make(map[string]int),
		retired:      make(map[string]bool),
		access:       make(map[string]*rotatorAccess),
	}
	// Its own generator, seeded from the test's: the test draws from rng too.
	own := mrand.New(mrand.NewPCG(rng.Uint64(), rng.Uint64()))
	var rngMu sync.Mutex
	s.delay = func() time.Duration {
		rngMu.Lock()
		defer rngMu.Unlock()
		return minDelay + time.Duration(own.Int64N(int64(maxDelay-minDelay)+1))
	}
	s.seed = "rt-" + randomToken(24)
	s.latest = s.seed
	s.gen[s.seed] = 0
	mux := http.NewServeMux()
	mux.HandleFunc("/oauth2/token", s.serveToken)
	mux.HandleFunc("/oauth2/introspect", s.serveIntrospect)
	mux.HandleFunc("/oauth2/revoke", s.serveRevoke)
	mux.HandleFunc("/oauth2/userinfo", s.serveUserinfo)
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

// orgConfig is the org's entry in tokenwatch's config.
func (s *rotator) orgConfig(name, refreshFile string) string {
	u := s.srv.URL
	return fmt.Sprintf(`  - name: %s
    provider: generic
    token_url: %s/oauth2/token
    introspection_url: %s/oauth2/introspect
    revocation_url: %s/oauth2/revoke
    userinfo_url: %s/oauth2/userinfo
    client: {id: %s, secret: %s}
    grant: {type: refresh_token, refresh_token_file: %s}
`, name, u, u, u, u, s.clientID, s.clientSecret, refreshFile)
}

// report summarizes the chain for logs and failures.
func (s *rotator) report() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	state := "alive"
	if s.killed != "" {
		state = "KILLED: " + s.killed
	}
	return fmt.Sprintf("chain %s; %d rotations (latest generation %d), %d lost answers tolerated, %d refreshes abandoned by their client before the rotation, %d unknown tokens presented",
		state, s.refreshes, s.gen[s.latest], s.lostAnswers, s.abandoned, s.unknownTokens)
}

func (s *rotator) killedReason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.killed
}

func (s *rotator) rotations() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshes
}

func (s *rotator) clientOK(r *http.Request) bool {
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	return id == s.clientID && secret == s.clientSecret
}

func (s *rotator) serveToken(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		writeJSONStatus(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request"})
		return
	}
	// Reading the whole body lets the server notice a client that goes away.
	if err := r.ParseForm(); err != nil {
		writeJSONStatus(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	if !s.clientOK(r) {
		writeJSONStatus(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client", "error_description": "invalid client credentials"})
		return
	}
	if g := r.PostForm.Get("grant_type"); g != "refresh_token" {
		writeJSONStatus(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	d := s.delay()
	before := d / 2
	if !sleepCtx(r.Context(), before) {
		s.mu.Lock()
		s.abandoned++
		s.mu.Unlock()
		return
	}
	status, body := s.rotate(r.PostForm.Get("refresh_token"))
	// The rotation is done: a client killed now never reads its new token.
	sleepCtx(r.Context(), d-before)
	writeJSONStatus(w, status, body)
}

func (s *rotator) rotate(presented string) (int, any) {
	invalid := map[string]string{"error": "invalid_grant", "error_description": "expired access/refresh token"}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.killed != "":
		return http.StatusBadRequest, invalid
	case presented != "" && presented == s.latest:
		s.confirmLocked(presented)
		s.prev = s.latest
	case presented != "" && presented == s.prev:
		// latest was never used: its answer was lost. Retire it instead.
		s.lostAnswers++
		s.retired[s.latest] = true
	case s.retired[presented]:
		s.killed = fmt.Sprintf("retired refresh token of generation %d presented after its successor had been used (latest generation %d, after %d rotations)",
			s.gen[presented], s.gen[s.latest], s.refreshes)
		for _, a := range s.access {
			a.revoked = true
		}
		return http.StatusBadRequest, invalid
	default:
		s.unknownTokens++
		return http.StatusBadRequest, invalid
	}
	next := "rt-" + randomToken(24)
	s.gen[next] = s.gen[s.latest] + 1
	s.latest = next
	s.refreshes++
	now := time.Now()
	at := "at-" + randomToken(24)
	s.access[at] = &rotatorAccess{refresh: next, issued: now, expiry: now.Add(time.Hour)}
	return http.StatusOK, map[string]any{
		"access_token":  at,
		"token_type":    "Bearer",
		"expires_in":    3600,
		"refresh_token": next,
		"scope":         "api",
	}
}

// confirmLocked records that the client uses refresh token rt (or its access
// token): if it is the newest, its predecessor is retired for good.
func (s *rotator) confirmLocked(rt string) {
	if rt == s.latest && s.prev != "" {
		s.retired[s.prev] = true
		s.prev = ""
	}
}

// liveAccessLocked returns the access token when it is alive, and confirms its refresh token.
func (s *rotator) liveAccessLocked(token string) *rotatorAccess {
	a := s.access[token]
	if a == nil || a.revoked || s.killed != "" || time.Now().After(a.expiry) {
		return nil
	}
	s.confirmLocked(a.refresh)
	return a
}

func (s *rotator) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		writeJSONStatus(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	if !s.clientOK(r) {
		writeJSONStatus(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	s.mu.Lock()
	a := s.liveAccessLocked(r.PostForm.Get("token"))
	s.mu.Unlock()
	if a == nil {
		writeJSONStatus(w, http.StatusOK, map[string]bool{"active": false})
		return
	}
	writeJSONStatus(w, http.StatusOK, map[string]any{
		"active": true, "scope": "api", "client_id": s.clientID, "username": s.username, "sub": s.username,
		"token_type": "Bearer", "exp": a.expiry.Unix(), "iat": a.issued.Unix(),
	})
}

func (s *rotator) serveUserinfo(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	var a *rotatorAccess
	if ok {
		a = s.liveAccessLocked(token)
	}
	s.mu.Unlock()
	if a == nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSONStatus(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return
	}
	writeJSONStatus(w, http.StatusOK, map[string]string{"sub": s.username, "preferred_username": s.username})
}

// serveRevoke revokes access tokens; revoking a refresh token of the chain
// kills the chain (RFC 7009 section 2.1 allows it).
func (s *rotator) serveRevoke(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		writeJSONStatus(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	if !s.clientOK(r) {
		writeJSONStatus(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	token := r.PostForm.Get("token")
	s.mu.Lock()
	if a := s.access[token]; a != nil {
		a.revoked = true
	} else if _, isRefresh := s.gen[token]; isRefresh && s.killed == "" {
		s.killed = fmt.Sprintf("refresh token of generation %d revoked by the client", s.gen[token])
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func writeJSONStatus(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// sleepCtx waits d, or less when ctx ends first; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
