package agent

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/configs"
	"github.com/tokenwatch/tokenwatch/internal/store"
)

// What the agent keeps in the store (--storage.path), so that a restart
// neither breaks a refresh token chain, nor forgets the last result of an
// org and its backoff, nor loses the alert state (alertstate.go).

// storedRefreshToken is a refresh token chain after a rotation. It is keyed
// by the digest of the configured refresh token the chain descends from, so
// an org renamed, moved to another URL, or removed and added again finds its
// chain, and a new configured token starts a chain of its own.
type storedRefreshToken struct {
	Token   string    `json:"token"`
	Org     string    `json:"org"`
	Rotated time.Time `json:"rotated"`
}

// storedResult is an org's last result and backoff.
type storedResult struct {
	Result      *checks.Result `json:"result"`
	Rejections  int            `json:"rejections,omitempty"`
	NextAttempt time.Time      `json:"next_attempt,omitzero"`
	// Login digests what the logins were made with: a restart with other
	// credentials (the fix, perhaps) does not inherit the backoff.
	Login string `json:"login_sha256,omitempty"`
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// loginDigest digests what an org logs in with and where, secrets included.
func loginDigest(o configs.Org) string {
	keyDigest := func(k crypto.Signer) string {
		if k == nil {
			return ""
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return "unmarshalable"
		}
		return digest(string(der))
	}
	return digest(strings.Join([]string{o.URL, o.Endpoints.Token, o.DiscoveryURL, o.Client.ID, o.Client.Secret.Reveal(),
		o.Client.AuthMethod, keyDigest(o.Client.PrivateKey), o.Grant.Type, o.Grant.Username, o.Grant.Password.Reveal(),
		keyDigest(o.Grant.PrivateKey), o.Grant.Audience, o.Grant.RefreshToken.Reveal(), o.Grant.Scope}, "\x00"))
}

// chainLocked returns the refresh token chain of a refresh_token org, nil
// for other grants. One chain per configured refresh token, for the life of
// the process: every checker that ever sends that token's successors shares
// it, so a refresh in flight on a checker a reload replaced or removed
// finishes, and saves its rotated token, before another starts. A new chain
// starts from the store's rotated token when there is one, else from the
// configured token. Called with applyMu held (a.chains is Apply's).
func (a *Agent) chainLocked(o configs.Org) *checks.RefreshChain {
	if o.Grant.Type != checks.GrantRefreshToken {
		return nil
	}
	key := digest(o.Grant.RefreshToken.Reveal())
	if c, ok := a.chains[key]; ok {
		return c
	}
	name := o.Name
	save := func(next checks.Secret) error {
		err := a.opts.Store.Put(store.RefreshTokens, key, storedRefreshToken{
			Token: next.Reveal(), Org: name, Rotated: a.opts.Clock().UTC()})
		if err != nil {
			a.opts.Instruments.StoreFailed()
			a.logger.Error("saving the rotated refresh token failed; it is kept in memory and saved again before the next refresh",
				"org", name, "err", err)
		}
		return err
	}
	var rec storedRefreshToken
	found, err := a.opts.Store.Get(store.RefreshTokens, key, &rec)
	var chain *checks.RefreshChain
	switch {
	case err != nil:
		// The configured token may have been rotated away long ago: sending
		// it could end the chain. Refuse until the store can be read.
		a.logger.Error("reading the stored refresh token failed; the org's refreshes wait for the store", "org", o.Name, "err", err)
		return checks.BrokenRefreshChain(fmt.Errorf("reading its rotated refresh token from the state store failed: %w", err))
	case found && rec.Token != "":
		a.logger.Info("using the refresh token of the last rotation, from the store", "org", o.Name,
			"rotated", rec.Rotated.Format(time.RFC3339))
		chain = checks.NewRefreshChain(checks.Secret(rec.Token), true, save)
	default:
		if a.storedChainOf(o.Name) {
			a.logger.Warn("configured refresh token changed; using it instead of the stored one", "org", o.Name)
		}
		chain = checks.NewRefreshChain(checks.Secret(o.Grant.RefreshToken.Reveal()), false, save)
	}
	a.chains[key] = chain
	return chain
}

// storedChainOf reports whether the store holds a chain of org that
// descends from another configured token. The index is read once per Apply
// (Apply resets it), only when some org has no chain of its own.
func (a *Agent) storedChainOf(org string) bool {
	if a.chainOrgs == nil {
		a.chainOrgs = map[string]bool{}
		err := a.opts.Store.Each(store.RefreshTokens, func(_ string, raw []byte) error {
			var rec storedRefreshToken
			if json.Unmarshal(raw, &rec) == nil {
				a.chainOrgs[rec.Org] = true
			}
			return nil
		})
		if err != nil {
			a.logger.Warn("reading the stored refresh tokens failed", "err", err)
		}
	}
	return a.chainOrgs[org]
}

// restoreLocked gives a job the last result and backoff its org had before
// a restart, marked as loaded. Apply calls it, with applyMu held, on a job
// not yet published.
func (a *Agent) restoreLocked(j *orgJob) {
	var rec storedResult
	found, err := a.opts.Store.Get(store.Results, j.org.Name, &rec)
	if err != nil {
		a.logger.Warn("reading the stored result failed", "org", j.org.Name, "err", err)
		return
	}
	if !found || rec.Result == nil {
		return
	}
	rec.Result.Loaded = true
	j.last = rec.Result
	if rec.Login == loginDigest(j.org) {
		j.rejections, j.nextAttempt = rec.Rejections, rec.NextAttempt
	} else {
		// Other credentials than those rejected: the change may be the fix.
		j.last.NextAttempt = time.Time{}
	}
}

// saveResult stores an org's last result and backoff.
// saveResult stores the result of j's check, unless j was removed or
// replaced meanwhile: checked under a.mu, as Apply removes orgs (and their
// records) under it, so a late result cannot outlive its org's removal.
func (a *Agent) saveResult(j *orgJob, res *checks.Result, rejections int) {
	if a.state == nil {
		return
	}
	raw, err := json.Marshal(storedResult{Result: res, Rejections: rejections, NextAttempt: res.NextAttempt, Login: j.login})
	if err != nil {
		a.logger.Warn("encoding the last result failed", "org", j.org.Name, "err", err)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.orgs[j.org.Name] == j {
		a.state.put(store.Results, j.org.Name, raw)
	}
}

// forget drops what the store holds of a removed org, but its refresh
// token: a chain whose org comes back must not start from a retired token.
func (a *Agent) forget(org string) { a.state.delete(store.Results, org) }

// pruneResults drops the stored results of orgs not configured (or not in
// this shard) at start; their alerts are resolved by the alerter.
func (a *Agent) pruneResults(keep map[string]bool) {
	var gone []string
	err := a.state.each(store.Results, func(org string, _ []byte) error {
		if !keep[org] {
			gone = append(gone, org)
		}
		return nil
	})
	if err != nil {
		a.logger.Warn("reading the stored results failed", "err", err)
	}
	for _, org := range gone {
		a.forget(org)
	}
}

// noInstruments stands in when no Instruments are given.
type noInstruments struct{}

func (noInstruments) CheckStarted(time.Duration) {}
func (noInstruments) CheckLate(time.Duration)    {}
func (noInstruments) CheckFinished()             {}
func (noInstruments) LoginSent()                 {}
func (noInstruments) LoginDeferred(string)       {}
func (noInstruments) StoreFailed()               {}
