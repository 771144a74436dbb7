package checks_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/internal/fakeclock"
)

// shortLivedServer issues tokens that live three seconds on the test's clock,
// as ORY Hydra does with a short client lifespan: introspection answers
// inactive and userinfo 401 once a token's exp has passed.
type shortLivedServer struct {
	*httptest.Server
	clock *fakeclock.Clock
	// tick, when set, moves the clock on after each introspection answer, so
	// a token can expire between the introspect and probe steps of one check.
	tick time.Duration

	mu      sync.Mutex
	minted  int
	exp     map[string]time.Time
	lateAsk int // introspection or userinfo requests about a token past its exp
}

const shortLifespan = 3 * time.Second

func newShortLivedServer(t *testing.T, clk *fakeclock.Clock, tick time.Duration) *shortLivedServer {
	t.Helper()
	s := &shortLivedServer{clock: clk, tick: tick, exp: map[string]time.Time{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.minted++
		tok := fmt.Sprintf("short-lived-token-%d", s.minted)
		s.exp[tok] = s.clock.Now().Add(shortLifespan)
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"bearer","expires_in":%d}`, tok, int(shortLifespan.Seconds()))
	})
	mux.HandleFunc("POST /introspect", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		exp, alive := s.alive(r.FormValue("token"))
		if alive {
			fmt.Fprintf(w, `{"active":true,"client_id":"short","exp":%d,"iat":%d}`, exp.Unix(), exp.Add(-shortLifespan).Unix())
		} else {
			fmt.Fprint(w, `{"active":false}`)
		}
		s.clock.Advance(s.tick)
	})
	mux.HandleFunc("GET /userinfo", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, alive := s.alive(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")); !alive {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token",error_description="Token expired."`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, `{"sub":"short"}`)
	})
	mux.HandleFunc("POST /revoke", func(w http.ResponseWriter, r *http.Request) {})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// alive reports whether a token is within its life, counting late asks.
func (s *shortLivedServer) alive(tok string) (time.Time, bool) {
	exp, ok := s.exp[tok]
	if ok && !s.clock.Now().Before(exp) {
		s.lateAsk++
	}
	return exp, ok && s.clock.Now().Before(exp)
}

func (s *shortLivedServer) counts() (minted, lateAsk int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.minted, s.lateAsk
}

// TestReuseReplacesAKeptTokenAtItsExp: in token_mode reuse a kept token that
// reaches its exp has ended normally. The check says so, mints a new token and
// stays healthy, whether the exp passed between checks or during one.
func TestReuseReplacesAKeptTokenAtItsExp(t *testing.T) {
	cases := []struct {
		name string
		// pause is the time between the first and the second check.
		pause time.Duration
		// tick moves the clock on after each introspection answer.
		tick time.Duration
		// wantLateAsks is how many requests name the expired token.
		wantLateAsks int
	}{
		// Known to be past exp before the check: nothing is asked about the old token.
		{name: "exp passed between checks", pause: 4 * time.Second, wantLateAsks: 0},
		// Introspection still says active, then the token expires and userinfo refuses it.
		{name: "exp passes during the check", pause: 2500 * time.Millisecond, tick: time.Second, wantLateAsks: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := fakeclock.New(time.Now().UTC().Truncate(time.Second))
			srv := newShortLivedServer(t, clk, 0)
			tg := checks.Target{
				Name: "short", Provider: checks.ProviderGeneric, Timeout: 2 * time.Second,
				Endpoints: checks.Endpoints{Token: srv.URL + "/token", Introspection: srv.URL + "/introspect",
					Revocation: srv.URL + "/revoke", Userinfo: srv.URL + "/userinfo"},
				Client:    checks.Client{ID: "short", Secret: ccSecret, AuthMethod: checks.AuthClientSecretBasic},
				Grant:     checks.Grant{Type: checks.GrantClientCredentials},
				Probe:     checks.ProbeUserinfo,
				TokenMode: checks.TokenModeReuse,
			}
			c := checks.NewChecker(tg, checks.WithClock(clk.Now))
			defer c.Close(context.Background())

			first := c.Check(context.Background())
			if first.Outcome != checks.OutcomeOK || !first.Token.Minted {
				t.Fatalf("first check: %s minted=%v: %s", first.Outcome, first.Token.Minted, first.Explanation)
			}
			clk.Advance(tc.pause)
			srv.mu.Lock()
			srv.tick = tc.tick
			srv.mu.Unlock()
			second := c.Check(context.Background())
			minted, late := srv.counts()
			if second.Outcome != checks.OutcomeOK || !second.Token.Minted || minted != 2 {
				t.Fatalf("check after the kept token's exp: %s minted=%v (%d tokens issued): %s",
					second.Outcome, second.Token.Minted, minted, second.Explanation)
			}
			want := "The kept token ended at its exp (" + first.Token.Expiry.Format(time.RFC3339) + ")"
			if !strings.HasPrefix(second.Explanation, want) {
				t.Errorf("explanation %q, want it to start with %q", second.Explanation, want)
			}
			if !second.Token.Expiry.After(first.Token.Expiry) {
				t.Errorf("reported expiry %s, want the new token's, after %s", second.Token.Expiry, first.Token.Expiry)
			}
			if late != tc.wantLateAsks {
				t.Errorf("%d requests named the expired token, want %d", late, tc.wantLateAsks)
			}
		})
	}
}
