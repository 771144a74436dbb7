package agent

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/configs"
)

// Doing no harm to the account watched: an org whose login was rejected
// backs off before it logs in again, and every identity (token host and
// user) has a budget of logins per hour, shared by its orgs and /probe.
// Salesforce allows 3,600 logins per user per hour, locks users after
// repeated failures and can block the source address.

// rejectedLogin reports whether an outcome means the server refused the
// login itself, so that logging in again soon would only add failures.
func rejectedLogin(o checks.Outcome) bool {
	switch o {
	case checks.OutcomeClientRejected, checks.OutcomeGrantRejected, checks.OutcomeRateLimited,
		checks.OutcomeRefreshTokenRetired:
		return true
	}
	return false
}

// jitter spreads the waits of orgs rejected together by up to this fraction either way.
const jitter = 0.2

// backoffWait is the wait after the n-th consecutive rejected login:
// b.Initial doubling up to b.Max, jittered, and at least what the server's
// Retry-After asked for.
func backoffWait(b configs.Backoff, n int, retryAfter time.Duration) time.Duration {
	if b.Initial <= 0 {
		b.Initial = configs.DefaultBackoffInitial
	}
	if b.Max < b.Initial {
		b.Max = max(b.Initial, configs.DefaultBackoffMax)
	}
	wait := b.Initial
	for i := 1; i < n && wait < b.Max; i++ {
		wait *= 2
	}
	wait = min(wait, b.Max)
	wait = time.Duration(float64(wait) * (1 - jitter + 2*jitter*rand.Float64())) //nolint:gosec // jitter, not a secret
	return max(wait, retryAfter)
}

// loginBudget counts the logins of every identity over the last hour. At
// most half of an identity's budget may go to /probe, so that /probe can
// never starve the scheduled checks.
type loginBudget struct {
	mu    sync.Mutex
	limit int
	// all and probes hold each identity's login times of the last hour.
	all, probes map[string]*window
}

func newLoginBudget() *loginBudget {
	return &loginBudget{limit: configs.DefaultLoginBudget, all: map[string]*window{}, probes: map[string]*window{}}
}

func (b *loginBudget) setLimit(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n <= 0 {
		n = configs.DefaultLoginBudget
	}
	b.limit = n
}

func (b *loginBudget) limitNow() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.limit
}

// take records a login of identity at now, unless the identity already
// logged in limit times in the hour before now, or probe is set and /probe
// already took half of that: then it reports false.
func (b *loginBudget) take(identity string, now time.Time, probe bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	all := windowOf(b.all, identity)
	if all.count(now) >= b.limit {
		return false
	}
	if probe {
		p := windowOf(b.probes, identity)
		if p.count(now) >= max(b.limit/2, 1) {
			return false
		}
		p.add(now)
	}
	all.add(now)
	return true
}

func windowOf(m map[string]*window, identity string) *window {
	w := m[identity]
	if w == nil {
		w = &window{}
		m[identity] = w
	}
	return w
}

// window holds event times (Unix nanoseconds) of the last hour, oldest
// first; it grows with use, not with the limit.
type window struct{ times []int64 }

func (w *window) count(now time.Time) int {
	t := now.UnixNano() - int64(time.Hour)
	cut := 0
	for cut < len(w.times) && w.times[cut] <= t {
		cut++
	}
	if cut == len(w.times) {
		w.times = nil // a fresh slice, so the old one is freed
	} else {
		w.times = w.times[cut:]
	}
	return len(w.times)
}

func (w *window) add(now time.Time) { w.times = append(w.times, now.UnixNano()) }
