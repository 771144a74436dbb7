package checks

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"
)

// RefreshChain is the current refresh token of one org (grant.type
// refresh_token). With rotation every refresh returns a new refresh token and
// retires the one sent, and presenting a retired one can end the whole chain
// (Salesforce revokes the token family). So a chain has one owner at a time:
// a refresh holds it from before its request is sent until the rotated token
// is saved, and every checker of the org (the one a reload replaces and the
// one that replaces it) shares the same chain instead of copying its token.
type RefreshChain struct {
	// owner is held by the refresh in flight; a channel so waiting honours ctx.
	owner chan struct{}
	save  func(Secret) error

	mu      sync.Mutex
	token   Secret
	rotated bool
	// retired holds digests of the tokens this chain rotated away from.
	retired map[[sha256.Size]byte]bool
	// unsaved is set while the current token's save failed; the next
	// refresh, or Save, tries again first.
	unsaved bool
	// broken, when set, refuses every refresh: the chain's state could not
	// be read, and the configured token may have been retired long ago.
	broken error
	// issuedAt is when the current token was issued, known once this
	// process saw it come from a rotation; usedAt its last successful
	// refresh. Zero when unknown. They date it for a refresh token policy.
	issuedAt, usedAt time.Time
}

// BrokenRefreshChain returns a chain that refuses to refresh, saying why:
// for an org whose stored refresh token could not be read.
func BrokenRefreshChain(err error) *RefreshChain {
	rc := NewRefreshChain("", false, nil)
	rc.broken = err
	return rc
}

// NewRefreshChain starts a chain at token. rotated says the token came from a
// rotation (kept in the store) rather than from the configuration. save, when
// set, must store a rotated token durably: it is called, and has returned,
// before the new token or the access token that came with it is used.
func NewRefreshChain(token Secret, rotated bool, save func(Secret) error) *RefreshChain {
	return &RefreshChain{owner: make(chan struct{}, 1), save: save, token: token, rotated: rotated,
		retired: map[[sha256.Size]byte]bool{}}
}

// Token is the refresh token the next refresh will send.
func (rc *RefreshChain) Token() Secret {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.token
}

// acquire takes the chain for one refresh; release gives it back.
func (rc *RefreshChain) acquire(ctx context.Context) error {
	select {
	case rc.owner <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (rc *RefreshChain) release() { <-rc.owner }

// rotate makes next the current token, saving it first. A save that fails
// still moves the chain on in memory (the old token is dead at the server
// either way) and returns the error for the caller to report.
func (rc *RefreshChain) rotate(next Secret) error {
	var err error
	if rc.save != nil {
		err = rc.save(next)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.token != "" {
		rc.retired[sha256.Sum256([]byte(rc.token.Reveal()))] = true
	}
	rc.token, rc.rotated, rc.unsaved = next, true, err != nil
	return err
}

// Save retries a failed save of the current token; nil when there is
// nothing to save. Refreshes call it first, the agent at shutdown.
func (rc *RefreshChain) Save() error {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !rc.unsaved || rc.save == nil {
		return nil
	}
	err := rc.save(rc.token)
	rc.unsaved = err != nil
	return err
}

// knownRetired reports whether a refusal of sent means the chain was broken
// rather than a bad configured token: sent came from a rotation, or this chain
// had already rotated away from it.
func (rc *RefreshChain) knownRetired(sent Secret) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return (rc.rotated && sent == rc.token) || rc.retired[sha256.Sum256([]byte(sent.Reveal()))]
}

// used records a successful refresh at now; rotated says it returned the
// new current token, issued at now.
func (rc *RefreshChain) used(now time.Time, rotated bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.usedAt = now
	if rotated {
		rc.issuedAt = now
	}
}

// Expiry is when the current refresh token expires under p: the earlier of
// its last use plus ExpireIfUnused and its issue plus ExpireAfter, each
// counted only when known (a token from the configuration has no known
// issue time until it is rotated). Zero when neither applies.
func (rc *RefreshChain) Expiry(p RefreshTokenPolicy) time.Time {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var exp time.Time
	earlier := func(from time.Time, d time.Duration) {
		if from.IsZero() || d <= 0 {
			return
		}
		if t := from.Add(d); exp.IsZero() || t.Before(exp) {
			exp = t
		}
	}
	earlier(rc.usedAt, p.ExpireIfUnused)
	earlier(rc.issuedAt, p.ExpireAfter)
	return exp
}
