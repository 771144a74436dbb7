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

// loggedIn reports whether a check sent a token request.
func loggedIn(res *checks.Result) bool {
	st := res.Step(checks.StepToken)
	return st != nil && !st.Skipped && st.Outcome != checks.OutcomeInsecureEndpoint && st.Outcome != checks.OutcomeInternalError
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
	wait = time.Duration(float64(wait) * (1 - jitter + 2*jitter*rand.Float64()))
	return max(wait, retryAfter)
}

// loginBudget counts the logins of every identity over the last hour.
type loginBudget struct {
	mu    sync.Mutex
	limit int
	// sent holds each identity's login times (Unix nanoseconds) of the last
	// hour, oldest first; it grows with use, not with the limit.
	sent map[string][]int64
}

func newLoginBudget() *loginBudget {
	return &loginBudget{limit: configs.DefaultLoginBudget, sent: map[string][]int64{}}
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
// logged in limit times in the hour before now: then it reports false.
func (b *loginBudget) take(identity string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := now.UnixNano()
	times := b.sent[identity]
	cut := 0
	for cut < len(times) && times[cut] <= t-int64(time.Hour) {
		cut++
	}
	times = times[cut:]
	if len(times) >= b.limit {
		b.sent[identity] = times
		return false
	}
	if len(times) == 0 {
		// A fresh slice, so the dropped prefix of the old one is freed.
		times = nil
	}
	b.sent[identity] = append(times, t)
	return true
}
