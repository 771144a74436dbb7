package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/configs"
	"github.com/tokenwatch/tokenwatch/internal/store"
)

// What the agent keeps in the store (--storage.path), so that a restart
// neither breaks a refresh token chain, nor forgets the last result of an
// org and its backoff, nor loses the alert state (alertstate.go).

// storedRefreshToken is an org's refresh token after a rotation.
type storedRefreshToken struct {
	Token string `json:"token"`
	// Configured is the digest of the configured refresh token the chain
	// descends from: when the configuration names another token, it wins.
	Configured string    `json:"configured_sha256"`
	Rotated    time.Time `json:"rotated"`
}

// storedResult is an org's last result and backoff.
type storedResult struct {
	Result      *checks.Result `json:"result"`
	Rejections  int            `json:"rejections,omitempty"`
	NextAttempt time.Time      `json:"next_attempt,omitzero"`
}

// chainHolder is an org's refresh token chain and what identifies it, so a
// reload that keeps the chain (same client, token endpoint and configured
// token) keeps the chain object, shared by the old and the new checker.
type chainHolder struct {
	key   string
	chain *checks.RefreshChain
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// chainKey identifies a refresh token chain: same grant, client, endpoints
// and configured token.
func chainKey(o configs.Org) string {
	return digest(o.Client.ID + "\x00" + o.URL + "\x00" + o.TokenURL + "\x00" + o.DiscoveryURL + "\x00" + o.Grant.RefreshToken.Reveal())
}

// chainLocked returns the refresh token chain of a refresh_token org: the
// one it had when the chain is unchanged, else one started from the store's
// rotated token when it descends from the configured one, else from the
// configured token. Other grants have none (nil).
func (a *Agent) chainLocked(o configs.Org) *checks.RefreshChain {
	if o.Grant.Type != checks.GrantRefreshToken {
		delete(a.chains, o.Name)
		return nil
	}
	key := chainKey(o)
	if h, ok := a.chains[o.Name]; ok && h.key == key {
		return h.chain
	}
	configured := digest(o.Grant.RefreshToken.Reveal())
	name := o.Name
	save := func(next checks.Secret) error {
		err := a.opts.Store.Put(store.RefreshTokens, name, storedRefreshToken{
			Token: next.Reveal(), Configured: configured, Rotated: a.opts.Clock().UTC()})
		if err != nil {
			a.opts.Instruments.StoreFailed()
			a.logger.Error("saving the rotated refresh token failed; it is kept in memory only", "org", name, "err", err)
		}
		return err
	}
	var chain *checks.RefreshChain
	var rec storedRefreshToken
	found, err := a.opts.Store.Get(store.RefreshTokens, o.Name, &rec)
	switch {
	case err != nil:
		a.logger.Error("reading the stored refresh token failed; using the configured one", "org", o.Name, "err", err)
	case found && rec.Configured == configured && rec.Token != "":
		a.logger.Info("using the refresh token of the last rotation, from the store", "org", o.Name,
			"rotated", rec.Rotated.Format(time.RFC3339))
		chain = checks.NewRefreshChain(checks.Secret(rec.Token), true, save)
	case found:
		a.logger.Warn("configured refresh token changed; using it instead of the stored one", "org", o.Name)
	}
	if chain == nil {
		chain = checks.NewRefreshChain(checks.Secret(o.Grant.RefreshToken.Reveal()), false, save)
	}
	a.chains[o.Name] = &chainHolder{key: key, chain: chain}
	return chain
}

// restoreLocked gives a job the last result and backoff its org had before
// a restart, marked as loaded.
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
	j.rejections, j.nextAttempt = rec.Rejections, rec.NextAttempt
}

// saveResult stores an org's last result and backoff.
func (a *Agent) saveResult(org string, res *checks.Result, rejections int) {
	if a.state == nil {
		return
	}
	raw, err := json.Marshal(storedResult{Result: res, Rejections: rejections, NextAttempt: res.NextAttempt})
	if err != nil {
		a.logger.Warn("encoding the last result failed", "org", org, "err", err)
		return
	}
	a.state.put(store.Results, org, raw)
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
func (noInstruments) CheckFinished()             {}
func (noInstruments) LoginSent()                 {}
func (noInstruments) LoginDeferred(string)       {}
func (noInstruments) StoreFailed()               {}
