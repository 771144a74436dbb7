package checks

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// rotatingServer answers refresh_token grants like a strict rotating server:
// every refresh returns a new refresh token; any other token is refused.
type rotatingServer struct {
	current atomic.Value // string
	n       atomic.Int32
	// noAccess answers without an access token (a malformed answer).
	noAccess atomic.Bool
}

func newRotatingServer(t *testing.T, first string) (*rotatingServer, *httptest.Server) {
	t.Helper()
	rs := &rotatingServer{}
	rs.current.Store(first)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/token" {
			http.NotFound(w, r)
			return
		}
		if r.PostFormValue("refresh_token") != rs.current.Load().(string) {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"expired access/refresh token"}`))
			return
		}
		next := "rt-" + string('a'+rs.n.Add(1))
		rs.current.Store(next)
		if rs.noAccess.Load() {
			_, _ = w.Write([]byte(`{"refresh_token":"` + next + `","token_type":"Bearer"}`))
			return
		}
		_, _ = w.Write([]byte(`{"access_token":"at-` + next + `","refresh_token":"` + next + `","token_type":"Bearer","expires_in":3600}`))
	}))
	t.Cleanup(srv.Close)
	return rs, srv
}

func refreshTarget(url string) Target {
	return Target{Name: "rt", Provider: ProviderGeneric, Endpoints: Endpoints{Token: url + "/token"},
		Client: Client{ID: "c", Secret: "s", AuthMethod: AuthClientSecretPost}, Grant: Grant{Type: GrantRefreshToken},
		Probe: ProbeNone, TokenMode: TokenModeFresh}
}

// A rotated token whose save failed is saved again before the next refresh
// is sent, and the chain moves on in memory meanwhile.
func TestFailedSaveIsRetriedBeforeTheNextRefresh(t *testing.T) {
	rs, srv := newRotatingServer(t, "rt-0")
	var saved []Secret
	failing := true
	chain := NewRefreshChain("rt-0", false, func(s Secret) error {
		if failing {
			return errors.New("disk full")
		}
		saved = append(saved, s)
		return nil
	})
	c := NewChecker(refreshTarget(srv.URL), WithRefreshChain(chain))
	if res := c.Check(context.Background()); res.Outcome != OutcomeOK {
		t.Fatalf("first refresh: %s %s", res.Outcome, res.Explanation)
	}
	if got := chain.Token(); got != Secret(rs.current.Load().(string)) {
		t.Fatalf("chain holds %q after a failed save, want the rotated %q", got, rs.current.Load())
	}
	failing = false
	if res := c.Check(context.Background()); res.Outcome != OutcomeOK {
		t.Fatalf("second refresh: %s %s", res.Outcome, res.Explanation)
	}
	if len(saved) != 2 || saved[0] != "rt-b" || saved[1] != "rt-c" {
		t.Fatalf("saved %q, want the unsaved rt-b before its successor rt-c", saved)
	}
}

// A successful answer without an access token still rotated the chain: its
// refresh token is kept, not lost with the malformed answer.
func TestMalformedAnswerKeepsTheRotatedToken(t *testing.T) {
	rs, srv := newRotatingServer(t, "rt-0")
	chain := NewRefreshChain("rt-0", false, nil)
	c := NewChecker(refreshTarget(srv.URL), WithRefreshChain(chain))
	rs.noAccess.Store(true)
	if res := c.Check(context.Background()); res.Outcome != OutcomeMalformedResponse {
		t.Fatalf("answer without access_token: %s, want malformed_response", res.Outcome)
	}
	rs.noAccess.Store(false)
	if res := c.Check(context.Background()); res.Outcome != OutcomeOK {
		t.Fatalf("refresh after a malformed answer: %s %s", res.Outcome, res.Explanation)
	}
}

// A chain whose stored state could not be read sends nothing.
func TestBrokenChainSendsNothing(t *testing.T) {
	rs, srv := newRotatingServer(t, "rt-0")
	c := NewChecker(refreshTarget(srv.URL), WithRefreshChain(BrokenRefreshChain(errors.New("store unreadable"))))
	res := c.Check(context.Background())
	if res.Outcome != OutcomeInternalError || rs.n.Load() != 0 {
		t.Fatalf("broken chain: outcome %s, %d refreshes sent; want internal_error and none", res.Outcome, rs.n.Load())
	}
}

// The login gate is asked right before the token request; its refusal
// stops the check with nothing sent.
func TestLoginGate(t *testing.T) {
	rs, srv := newRotatingServer(t, "rt-0")
	refused := errors.New("budget spent")
	asked := 0
	c := NewChecker(refreshTarget(srv.URL), WithLoginGate(func(context.Context) error { asked++; return refused }))
	res := c.Check(context.Background())
	if !errors.Is(res.Deferred, refused) || asked != 1 || rs.n.Load() != 0 {
		t.Fatalf("deferred %v, gate asked %d times, %d sent; want the refusal, 1, 0", res.Deferred, asked, rs.n.Load())
	}
}

func TestRetryAfterWait(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		header string
		want   time.Duration
	}{
		{"", 0}, {"120", 2 * time.Minute}, {"0", 0}, {"-5", 0}, {"soon", 0},
		{"999999999", maxRetryAfter},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	} {
		h := http.Header{}
		if tc.header != "" {
			h.Set("Retry-After", tc.header)
		}
		if got := retryAfterWait(h, now); got != tc.want {
			t.Errorf("Retry-After %q: %s, want %s", tc.header, got, tc.want)
		}
	}
}
