package orgsim

import (
	"crypto/rand"
	"encoding/base64"
	"time"
)

const (
	// Dead tokens are kept a while so that late requests still meet the same
	// answers, then dropped so a long demo does not grow without bound.
	deadTokenRetention = 15 * time.Minute
	// Retired refresh tokens are kept longer: reusing one must still kill its
	// chain, which is the point of rotation.
	retiredRefreshRetention = 24 * time.Hour
	purgeEvery              = time.Minute
)

// passwordGrant marks session ids, the tokens only IntrospectAll apps may see.
const passwordGrant = "password"

// token is an access token (a session) or a refresh token.
type token struct {
	refresh  bool
	grant    string
	clientID string
	username string
	userID   string
	scope    string
	issued   time.Time
	// lastActivity and timeout make the sliding session: exp = lastActivity + timeout.
	lastActivity time.Time
	timeout      time.Duration
	// family groups a refresh token chain and the access tokens it minted;
	// "" for tokens from other grants.
	family    string
	revokedAt time.Time
	// retired refresh tokens were rotated out; presenting one kills the chain.
	retired bool
	// policy is the app's refresh token policy when the refresh token was
	// issued, and lastUsed the last refresh made with it.
	policy   RefreshTokenPolicy
	lastUsed time.Time
}

// expiry is the session's current exp; for a refresh token, when its
// app's refresh token policy ends it (zero: valid until revoked).
func (t *token) expiry() time.Time {
	if t.refresh {
		var exp time.Time
		if d := t.policy.ExpireAfter; d > 0 {
			exp = t.issued.Add(d)
		}
		if d := t.policy.ExpireIfUnused; d > 0 {
			if unused := t.lastUsed.Add(d); exp.IsZero() || unused.Before(exp) {
				exp = unused
			}
		}
		return exp
	}
	return t.lastActivity.Add(t.timeout)
}

// deadSince reports whether the token is dead at now, and since when.
func (t *token) deadSince(now time.Time) (time.Time, bool) {
	if !t.revokedAt.IsZero() {
		return t.revokedAt, true
	}
	if exp := t.expiry(); !exp.IsZero() && now.After(exp) {
		return exp, true
	}
	return time.Time{}, false
}

func (t *token) live(now time.Time) bool {
	_, dead := t.deadSince(now)
	return !dead
}

type loginWindow struct {
	start time.Time
	count int
}

// allowLoginLocked counts a token request for the user and reports whether
// it is within Options.LoginRateLimit.
func (o *Org) allowLoginLocked(username string, now time.Time) bool {
	limit := o.opts.LoginRateLimit
	if limit <= 0 {
		return true
	}
	w := o.logins[username]
	if w == nil || now.Sub(w.start) >= time.Hour {
		w = &loginWindow{start: now}
		o.logins[username] = w
	}
	if w.count >= limit {
		return false
	}
	w.count++
	return true
}

func (o *Org) timeoutLocked(app *App) time.Duration {
	if app.SessionTimeout > 0 {
		return app.SessionTimeout
	}
	return o.opts.DefaultSessionTimeout
}

func (o *Org) scopeOf(app *App) string {
	if app.Scope != "" {
		return app.Scope
	}
	return "api"
}

// newAccessLocked stores a new session and returns its id.
func (o *Org) newAccessLocked(now time.Time, app *App, u *user, grant, family string) string {
	o.purgeLocked(now)
	id := o.orgID15 + "!" + randomString(72)
	scope := ""
	if grant != passwordGrant {
		scope = o.scopeOf(app)
	}
	o.tokens[id] = &token{
		grant: grant, clientID: app.ClientID, username: u.Username, userID: u.id, scope: scope,
		issued: now, lastActivity: now, timeout: o.timeoutLocked(app), family: family,
	}
	return id
}

// newRefreshLocked stores a new refresh token in the family and returns it.
func (o *Org) newRefreshLocked(now time.Time, app *App, u *user, family string) string {
	o.purgeLocked(now)
	// Salesforce refresh tokens start with "5Aep".
	id := "5Aep861" + randomString(48)
	o.tokens[id] = &token{
		refresh: true, grant: "refresh_token", clientID: app.ClientID, username: u.Username, userID: u.id,
		scope: o.scopeOf(app), issued: now, lastActivity: now, family: family,
		policy: app.RefreshTokenPolicy, lastUsed: now,
	}
	return id
}

// revokeFamilyLocked kills a refresh chain and every access token it minted.
func (o *Org) revokeFamilyLocked(family string, now time.Time) {
	if family == "" {
		return
	}
	for _, t := range o.tokens {
		if t.family == family && t.revokedAt.IsZero() {
			t.revokedAt = now
		}
	}
}

// purgeLocked drops long-dead tokens, at most once per purgeEvery.
func (o *Org) purgeLocked(now time.Time) {
	if now.Sub(o.lastPurge) < purgeEvery {
		return
	}
	o.lastPurge = now
	for id, t := range o.tokens {
		since, dead := t.deadSince(now)
		if !dead {
			continue
		}
		keep := deadTokenRetention
		if t.retired {
			keep = retiredRefreshRetention
		}
		if now.Sub(since) > keep {
			delete(o.tokens, id)
		}
	}
}

// randomString returns n random bytes as unpadded URL-safe Base64.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails; see crypto/rand.Read
	return base64.RawURLEncoding.EncodeToString(b)
}

func newFamily() string { return randomString(12) }
