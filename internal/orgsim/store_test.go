package orgsim

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDeadTokensArePurged checks that a long demo, minting and revoking
// a token every minute, does not keep every token it ever saw.
func TestDeadTokensArePurged(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	o := New(Options{Clock: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }, DefaultSessionTimeout: 15 * time.Minute})
	o.AddUser(User{Username: "u@acme.com", Password: "p"})
	o.AddApp(App{ClientID: "c", ClientSecret: "s"})
	h := o.Handler()
	form := url.Values{"grant_type": {"password"}, "client_id": {"c"}, "client_secret": {"s"}, "username": {"u@acme.com"}, "password": {"p"}}

	for i := range 600 { // ten hours, one check a minute
		req := httptest.NewRequest(http.MethodPost, "/services/oauth2/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("token %d: status %d", i, rec.Code)
		}
		// Every other token is revoked; the rest are left to time out.
		if i%2 == 0 {
			tok := rec.Body.String()
			tok = tok[strings.Index(tok, `"access_token":"`)+16:]
			tok = tok[:strings.IndexByte(tok, '"')]
			req = httptest.NewRequest(http.MethodPost, "/services/oauth2/revoke", strings.NewReader(url.Values{"token": {tok}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			rec = httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != 200 {
				t.Fatalf("revoke %d: status %d", i, rec.Code)
			}
		}
		mu.Lock()
		now = now.Add(time.Minute)
		mu.Unlock()
	}
	o.mu.Lock()
	kept := len(o.tokens)
	o.mu.Unlock()
	// 15 minutes of live tokens plus 15 minutes of retention, give or take a purge interval.
	if kept > 40 {
		t.Errorf("%d tokens kept after 600 checks, want at most 40", kept)
	}
}
