// Package checks does the OAuth work of one org: obtain a token, introspect
// it (RFC 7662), confirm it with a resource call, revoke it, and turn what
// was seen into a bounded outcome with an explanation and a fix. It knows
// nothing of Prometheus, schedules or alerts.
package checks

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultTimeout applies to each request when the target sets none.
const DefaultTimeout = 10 * time.Second

// discoveryTTL is how long a discovery document is trusted before it is read again.
const discoveryTTL = time.Hour

// Checker checks one org. It keeps the org's keep-alive HTTP client, the
// discovered endpoints and, in token_mode reuse, the kept token. Check calls
// are serialized, so a scheduled run and an on-demand probe never overlap.
type Checker struct {
	target  Target
	client  *http.Client
	now     func() time.Time
	timeout time.Duration

	// busy serializes checks; unlike a mutex, waiting for it honours ctx.
	busy chan struct{}
	// preset is the target's endpoints as configured (presetEndpoints).
	preset Endpoints
	// discovered endpoints and when they were read.
	discovered   Endpoints
	discoveredAt time.Time
	// chain holds the org's current refresh token (grant.type refresh_token).
	chain *RefreshChain
	// kept is the token reused across checks in token_mode reuse; keeping
	// mirrors kept != nil for readers outside a check.
	kept    *keptToken
	keeping atomic.Bool
	// certExpiry collects the earliest certificate expiry during one check.
	certExpiry time.Time
	// apiMax is the org's daily API allowance (DailyApiRequests.Max) the
	// last /limits answer gave; 0 when none did. A later "TotalRequests
	// Limit exceeded" answer means none of it remains.
	apiMax int64
	// loginGate, when set, is asked right before each token request.
	loginGate func(context.Context) error
	// urls caches the parsed endpoint URLs (endpointURL).
	urls map[string]endpoint
	// signer is the HMAC keyed by the client secret that verifySignature uses.
	signer hash.Hash
	// red redacts the texts of the check running (newCheckRedactor); nil
	// between checks.
	red *Redactor
}

type keptToken struct {
	access string
	facts  TokenFacts
}

// Option configures a Checker.
type Option func(*Checker)

// WithHTTPClient replaces the org's HTTP client (tests).
func WithHTTPClient(c *http.Client) Option { return func(ch *Checker) { ch.client = c } }

// WithTransport sends the org's requests over rt, e.g. one built from the
// org's HTTP client settings (TLS, proxy); the checker keeps its own
// redirect policy on top (see NewHTTPClient).
func WithTransport(rt http.RoundTripper) Option {
	return func(ch *Checker) { ch.client = NewHTTPClient(rt) }
}

// WithClock replaces time.Now for token facts and assertion times.
func WithClock(now func() time.Time) Option { return func(ch *Checker) { ch.now = now } }

// NewChecker prepares the checks of one org.
func NewChecker(t Target, opts ...Option) *Checker {
	c := &Checker{target: t, now: time.Now, timeout: t.Timeout, busy: make(chan struct{}, 1), preset: presetEndpoints(&t)}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	for _, o := range opts {
		o(c)
	}
	if c.client == nil {
		c.client = NewHTTPClient(nil)
	}
	if c.chain == nil {
		c.chain = NewRefreshChain(t.Grant.RefreshToken, false, nil)
	}
	return c
}

// WithRefreshChain makes the checker use chain for its refresh token instead
// of a chain of its own started at the configured token: the agent shares one
// chain between the checkers an org has over reloads, and keeps it in its store.
func WithRefreshChain(chain *RefreshChain) Option {
	return func(ch *Checker) { ch.chain = chain }
}

// WithLoginGate makes the checker ask gate right before it sends a token
// request (a login); an error stops the check there, with nothing sent, and
// is returned as the Result's Deferred. The agent's login budget is such a gate.
func WithLoginGate(gate func(context.Context) error) Option {
	return func(ch *Checker) { ch.loginGate = gate }
}

// RefreshToken is the refresh token the next refresh_token grant will use.
func (c *Checker) RefreshToken() Secret { return c.chain.Token() }

// Target returns the target the checker was built from.
func (c *Checker) Target() Target { return c.target }

// Close revokes a kept token (token_mode reuse) and drops idle connections.
func (c *Checker) Close(ctx context.Context) {
	select {
	case c.busy <- struct{}{}:
	case <-ctx.Done():
		c.client.CloseIdleConnections()
		return
	}
	defer func() { <-c.busy }()
	if c.kept != nil {
		if ep, err := c.endpoints(ctx); err == nil && ep.Revocation != "" {
			c.revoke(ctx, ep, c.kept.access)
		}
		c.kept = nil
		c.keeping.Store(false)
	}
	c.client.CloseIdleConnections()
}

// WillLogIn reports whether the next check will request a token: always,
// except in token_mode reuse while a token is kept (which is only replaced,
// within that check, once it dies).
func (c *Checker) WillLogIn() bool { return !c.keeping.Load() }

// run is the state of one check in progress.
type run struct {
	res     *Result
	secrets []string
	ep      Endpoints
	// keptEnded is set when a kept token reached the end of its life in this
	// check (token_mode reuse); keptExpiry is its exp, zero when unknown.
	keptEnded  bool
	keptExpiry time.Time
}

func (r *run) add(sr StepResult) *StepResult {
	if r.res.Steps == nil {
		r.res.Steps = make([]StepResult, 0, len(AllSteps))
	}
	r.res.Steps = append(r.res.Steps, sr)
	return &r.res.Steps[len(r.res.Steps)-1]
}

// Check runs the whole check once and returns its Result. It never panics
// and never returns a nil Result; ctx bounds the whole check.
func (c *Checker) Check(ctx context.Context) (res *Result) {
	start := c.now()
	select {
	case c.busy <- struct{}{}:
	case <-ctx.Done():
		return &Result{Org: c.target.Name, Start: start, Outcome: OutcomeTimeout, Token: TokenFacts{Signature: SignatureNotChecked},
			Explanation: "Another check of this org was still running when this one's deadline passed.",
			Fix:         c.fixFor(OutcomeTimeout)}
	}
	defer func() { <-c.busy }()
	began := time.Now()
	r := &run{res: &Result{Org: c.target.Name, Start: start, Token: TokenFacts{Signature: SignatureNotChecked}}}
	r.secrets = append(r.secrets, c.target.Client.Secret.Reveal(), c.target.Grant.Password.Reveal(),
		c.target.Grant.RefreshToken.Reveal(), c.RefreshToken().Reveal())
	if ic := c.target.Introspection.Client; ic != nil {
		r.secrets = append(r.secrets, ic.Secret.Reveal())
	}
	c.certExpiry = time.Time{}
	// Every text of the check is redacted, where it is cut and at the end.
	c.red = newCheckRedactor(&c.target, &r.secrets)
	defer func() {
		if p := recover(); p != nil {
			r.res.Outcome = OutcomeInternalError
			r.res.Explanation = fmt.Sprintf("the check stopped on an internal error (%T); please report it", p)
			r.res.Fix = "This is a tokenwatch bug; run `tokenwatch diagnose` and report the output."
		}
		r.res.Duration = time.Since(began)
		r.res.TLSCertExpiry = c.certExpiry
		r.res.SigningCertExpiry = c.target.Grant.CertificateNotAfter
		if p := c.target.Grant.RefreshTokenPolicy; c.target.Grant.Type == GrantRefreshToken && p != (RefreshTokenPolicy{}) {
			r.res.RefreshTokenExpiry = c.chain.Expiry(p)
		}
		if r.res.Deferred == nil {
			r.res.Explanation += orgWarnings(r.res, c.now())
		}
		c.keeping.Store(c.kept != nil)
		c.red.Result(r.res)
		c.red.release()
		c.red = nil
		res = r.res
	}()
	c.check(ctx, r)
	return r.res
}

func (c *Checker) check(ctx context.Context, r *run) {
	ep, err := c.endpoints(ctx)
	if err != nil {
		e := asClassified(err, OutcomeDiscoveryFailed)
		c.conclude(r, e.outcome, "Reading the discovery document failed: "+e.detail+".", "")
		return
	}
	r.ep = ep

	if c.target.TokenMode == TokenModeReuse && c.kept != nil {
		if exp := c.kept.facts.Expiry; !exp.IsZero() && !c.now().Before(exp) {
			// Past its exp the kept token has ended as issued: asking the server
			// about it tells nothing new and would race its expiry. Replace it.
			r.keptEnded, r.keptExpiry, c.kept = true, exp, nil
		} else if c.checkKept(ctx, r) {
			return
		}
	}
	c.checkFresh(ctx, r)
	if r.keptEnded {
		ended := "The kept token stopped working and its exp was never known, so that counts as its normal end"
		if !r.keptExpiry.IsZero() {
			ended = "The kept token ended at its exp (" + r.keptExpiry.Format(time.RFC3339) + "), as tokens do"
		}
		r.res.Explanation = ended + "; a new one was requested. " + r.res.Explanation
	}
}

// checkKept checks the kept token. It reports false when the token died of
// old age, so the caller mints a new one in the same check.
func (c *Checker) checkKept(ctx context.Context, r *run) bool {
	k := c.kept
	r.secrets = append(r.secrets, k.access)
	r.res.Token = k.facts
	r.res.Token.Minted = false
	r.res.Token.Active = nil
	r.add(StepResult{Step: StepToken, Outcome: OutcomeOK, Skipped: true,
		Detail: "reusing the token kept since " + k.facts.IssuedAt.Format(time.RFC3339) + " (token_mode reuse)"})
	in := c.introspect(ctx, r, k.access)
	pr := c.probe(ctx, r, k.access)
	// A refusal once exp has passed is the token expiring during this check,
	// even if introspection, a moment earlier, still said active.
	expired := !k.facts.Expiry.IsZero() && !c.now().Before(k.facts.Expiry)
	if tokenDead(in, pr) || (expired && pr.witness == witnessRefused) {
		c.kept = nil
		if !k.facts.Expiry.IsZero() && c.now().Before(k.facts.Expiry.Add(-30*time.Second)) {
			c.conclude(r, OutcomeTokenInvalidatedEarly, fmt.Sprintf(
				"The kept token stopped working %s before the exp (%s) that introspection last reported: "+
					"it was revoked or its session ended early.", k.facts.Expiry.Sub(c.now()).Round(time.Second), k.facts.Expiry.Format(time.RFC3339)), "")
			return true
		}
		// Died of old age: start over with a new token and show that check.
		r.res.Steps = nil
		r.res.Token = TokenFacts{Signature: SignatureNotChecked}
		r.keptEnded, r.keptExpiry = true, k.facts.Expiry
		return false
	}
	if in != nil && in.active {
		c.kept.facts = r.res.Token
	}
	r.add(StepResult{Step: StepRevoke, Outcome: OutcomeOK, Skipped: true, Detail: "token kept for reuse (token_mode reuse)"})
	c.verdict(r, in, pr)
	return true
}

func (c *Checker) checkFresh(ctx context.Context, r *run) {
	tok, ok := c.obtain(ctx, r)
	if !ok {
		return
	}
	in := c.introspect(ctx, r, tok.accessToken)
	pr := c.probe(ctx, r, tok.accessToken)
	if c.target.TokenMode == TokenModeReuse && !tokenDead(in, pr) && pr.witness != witnessRefused {
		c.kept = &keptToken{access: tok.accessToken, facts: r.res.Token}
		r.add(StepResult{Step: StepRevoke, Outcome: OutcomeOK, Skipped: true, Detail: "token kept for reuse (token_mode reuse)"})
	} else if r.ep.Revocation == "" {
		r.add(StepResult{Step: StepRevoke, Outcome: OutcomeOK, Skipped: true,
			Detail: "no revocation endpoint known; the minted token lives until it expires"})
	} else {
		r.add(c.revoke(ctx, r.ep, tok.accessToken))
	}
	c.verdict(r, in, pr)
}

// obtain runs the token step and records the token facts.
func (c *Checker) obtain(ctx context.Context, r *run) (*tokenResponse, bool) {
	var sentRefresh Secret
	if c.target.Grant.Type == GrantRefreshToken {
		// One refresh of a chain at a time, from before it is sent until the
		// rotated token is saved: a second one would send the retired token.
		if err := c.chain.acquire(ctx); err != nil {
			c.conclude(r, OutcomeTimeout, "Another check of this org's refresh token chain was still running when this one's deadline passed.", "")
			return nil, false
		}
		defer c.chain.release()
		if c.chain.broken != nil {
			c.conclude(r, OutcomeInternalError, "The refresh token was not sent: "+c.chain.broken.Error()+".",
				"Fix the state store (--storage.path) and restart; sending the configured refresh token instead could end a rotated chain.")
			return nil, false
		}
		// A rotated token whose save failed is saved first: sending its
		// successor's request with it unsaved would risk the chain on a crash.
		_ = c.chain.Save()
		if ctx.Err() == nil {
			// Once sent, a refresh runs to its own timeout: the server may
			// rotate the token, and a cancelled read would lose the new one.
			ctx = context.WithoutCancel(ctx)
		}
		sentRefresh = c.chain.Token()
		r.secrets = append(r.secrets, sentRefresh.Reveal())
	}
	rq, err := c.tokenRequest(r.ep.Token, sentRefresh)
	if err != nil {
		r.add(StepResult{Step: StepToken, Method: http.MethodPost, URL: displayURL(r.ep.Token), Outcome: OutcomeInternalError, Detail: err.Error()})
		c.conclude(r, OutcomeInternalError, "Building the token request failed: "+err.Error()+".", "")
		return nil, false
	}
	if a := rq.form.Get("assertion"); a != "" {
		r.secrets = append(r.secrets, a)
	}
	if a := rq.form.Get("client_assertion"); a != "" {
		r.secrets = append(r.secrets, a)
	}
	if c.loginGate != nil {
		if err := c.loginGate(ctx); err != nil {
			r.res.Deferred = err
			return nil, false
		}
	}
	resp, sr, err := c.do(ctx, rq)
	step := r.add(sr)
	if err != nil {
		e := asClassified(err, OutcomeConnectError)
		c.conclude(r, e.outcome, "The token request failed: "+e.detail+".", "")
		return nil, false
	}
	skew := serverSkew(resp, c.now())
	r.res.Token.ClockSkew = skew
	r.res.RetryAfter = retryAfterWait(resp.header, c.now())
	if e := classifyHTTP(resp); e != nil {
		step.Outcome, step.Detail = e.outcome, e.detail
		c.conclude(r, e.outcome, "The token endpoint "+e.detail+".", "")
		return nil, false
	}
	if oe := resp.oauthError(); oe != nil || resp.status >= 400 {
		o := c.classifyTokenError(resp.status, oe, skew)
		if o == OutcomeGrantRejected && oe != nil && oe.Code == "invalid_grant" && sentRefresh != "" && c.chain.knownRetired(sentRefresh) {
			o = OutcomeRefreshTokenRetired
		}
		detail := fmt.Sprintf("answered %d", resp.status)
		if oe != nil {
			detail += ": " + oe.String()
		}
		step.Outcome, step.Detail = o, detail
		c.conclude(r, o, "The token endpoint "+detail+".", tokenErrorFix(c.target, o, oe))
		return nil, false
	}
	tok, err := parseTokenResponse(resp.object())
	if tok != nil && tok.refreshToken != "" && sentRefresh != "" && Secret(tok.refreshToken) != sentRefresh {
		// Rotation: the sent token is dead now. The new one is saved before
		// anything else happens with this answer, even a malformed one.
		// A failed save is the saver's to report (the agent logs and counts
		// it) and is tried again before the next refresh.
		_ = c.chain.rotate(Secret(tok.refreshToken))
		r.secrets = append(r.secrets, tok.refreshToken)
	}
	if err != nil {
		step.Outcome, step.Detail = OutcomeMalformedResponse, err.Error()
		c.conclude(r, OutcomeMalformedResponse, fmt.Sprintf("The token endpoint answered %d but %s.", resp.status, err), "")
		return nil, false
	}
	if sentRefresh != "" {
		c.chain.used(c.now(), tok.refreshToken != "" && Secret(tok.refreshToken) != sentRefresh)
	}
	r.secrets = append(r.secrets, tok.accessToken, tok.refreshToken)
	f := &r.res.Token
	f.Minted = true
	f.TokenType = tok.tokenType
	f.Scope = tok.scope
	f.InstanceURL = tok.instanceURL
	f.IssuedAt = tok.issuedAt
	if f.IssuedAt.IsZero() {
		f.IssuedAt = c.now().UTC()
	}
	if tok.expiresIn > 0 {
		f.Expiry = f.IssuedAt.Add(tok.expiresIn)
		f.ExpirySource = "expires_in"
	}
	if claims, ok := jwtClaims(tok.accessToken); ok {
		if exp := epoch(claims, "exp"); !exp.IsZero() {
			f.Expiry, f.ExpirySource = exp, "jwt"
		}
		if iat := epoch(claims, "iat"); !iat.IsZero() {
			f.IssuedAt = iat
		}
		if f.Subject == "" {
			f.Subject = str(claims, "sub")
		}
	}
	if tok.id != "" && f.Subject == "" {
		f.Subject = tok.id
	}
	f.Signature = c.verifySignature(tok)
	step.Detail = "token obtained" + describeToken(tok)
	return tok, true
}

func describeToken(tok *tokenResponse) string {
	var parts []string
	if tok.tokenType != "" {
		parts = append(parts, "token_type "+tok.tokenType)
	}
	if tok.expiresInCapped {
		parts = append(parts, "expires_in absurdly large, counted as "+tok.expiresIn.String())
	} else if tok.expiresIn > 0 {
		parts = append(parts, "expires_in "+tok.expiresIn.String())
	} else {
		parts = append(parts, "no expires_in")
	}
	if tok.issuedAtRaw != "" {
		parts = append(parts, "issued_at "+tok.issuedAtRaw)
	}
	if tok.refreshToken != "" {
		parts = append(parts, "a new refresh token")
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// verifySignature checks Salesforce's HMAC-SHA256(id + issued_at) with the client secret.
func (c *Checker) verifySignature(tok *tokenResponse) string {
	if !c.target.VerifySignature || c.target.Client.Secret == "" {
		return SignatureNotChecked
	}
	if tok.signature == "" || tok.id == "" || tok.issuedAtRaw == "" {
		return SignatureAbsent
	}
	if c.signer == nil {
		c.signer = hmac.New(sha256.New, []byte(c.target.Client.Secret.Reveal()))
	}
	m := c.signer
	m.Reset()
	m.Write([]byte(tok.id))
	m.Write([]byte(tok.issuedAtRaw))
	var sum [sha256.Size]byte
	var want [44]byte // base64 of 32 bytes
	base64.StdEncoding.Encode(want[:], m.Sum(sum[:0]))
	if hmac.Equal(want[:], []byte(tok.signature)) {
		return SignatureValid
	}
	return SignatureMismatch
}

func (c *Checker) classifyTokenError(status int, oe *oauthError, skew time.Duration) Outcome {
	code, desc := "", ""
	if oe != nil {
		// "login rate exceeded" (Salesforce's answer), LOGIN_RATE_EXCEEDED
		// (its Login History) and REQUEST_LIMIT_EXCEEDED read alike.
		code, desc = oe.Code, strings.ReplaceAll(strings.ToUpper(oe.Description), "_", " ")
	}
	switch {
	case code == "rate_limit_exceeded" || strings.Contains(desc, "LOGIN RATE EXCEEDED") || strings.Contains(desc, "REQUEST LIMIT EXCEEDED"):
		return OutcomeRateLimited
	case code == "invalid_client" || code == "invalid_client_id" || code == "invalid_client_credentials":
		return OutcomeClientRejected
	case code == "" && status == http.StatusUnauthorized:
		return OutcomeClientRejected
	case code == "invalid_grant" && usesAssertion(c.target) && absDuration(skew) > maxSkew:
		return OutcomeClockSkew
	case code == "" && status >= 400:
		return OutcomeUnexpectedStatus
	}
	return OutcomeGrantRejected
}

const maxSkew = 60 * time.Second

func usesAssertion(t Target) bool {
	return t.Grant.Type == GrantJWTBearer || t.Client.AuthMethod == AuthPrivateKeyJWT
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// serverSkew compares the server's Date header with local time.
func serverSkew(resp *response, now time.Time) time.Duration {
	d, err := http.ParseTime(resp.header.Get("Date"))
	if err != nil {
		return 0
	}
	skew := d.Sub(now).Truncate(time.Second)
	if absDuration(skew) < 2*time.Second {
		return 0 // Date has one-second resolution
	}
	return skew
}

// introspect asks the introspection endpoint about the token. It returns nil
// when there is no answer to interpret (skipped or failed; the step says which).
func (c *Checker) introspect(ctx context.Context, r *run, token string) *introspection {
	if r.ep.Introspection == "" {
		r.add(StepResult{Step: StepIntrospect, Outcome: OutcomeOK, Skipped: true,
			Detail: "no introspection endpoint known (set introspection_url or discovery_url)"})
		return nil
	}
	cl := c.target.Client
	if c.target.Introspection.Client != nil {
		cl = *c.target.Introspection.Client
	}
	rq := request{step: StepIntrospect, method: http.MethodPost, url: r.ep.Introspection,
		form: newForm("token", token), sent: []string{"token"}, credentials: true}
	if h := c.target.Introspection.TokenTypeHint; h != "" {
		rq.form.Set("token_type_hint", h)
		rq.sent = append(rq.sent, "token_type_hint="+h)
	}
	if err := c.authenticate(&rq, &cl, r.ep.Token); err != nil {
		r.add(StepResult{Step: StepIntrospect, Method: http.MethodPost, URL: displayURL(r.ep.Introspection), Outcome: OutcomeInternalError, Detail: err.Error()})
		return nil
	}
	if a := rq.form.Get("client_assertion"); a != "" {
		r.secrets = append(r.secrets, a)
	}
	resp, sr, err := c.do(ctx, rq)
	step := r.add(sr)
	if err != nil {
		return nil
	}
	if e := classifyHTTP(resp); e != nil {
		step.Outcome, step.Detail = e.outcome, e.detail
		return nil
	}
	oe := resp.oauthError()
	switch {
	case resp.status == http.StatusUnauthorized || resp.status == http.StatusForbidden ||
		(oe != nil && (oe.Code == "invalid_client" || oe.Code == "invalid_client_id" || oe.Code == "unauthorized_client")):
		step.Outcome = OutcomeIntrospectionUnauthorized
		step.Detail = fmt.Sprintf("answered %d", resp.status)
		if oe != nil {
			step.Detail += ": " + oe.String()
		}
		return nil
	case oe != nil || resp.status >= 400:
		step.Outcome = OutcomeIntrospectionError
		step.Detail = fmt.Sprintf("answered %d", resp.status)
		if oe != nil {
			step.Detail += ": " + oe.String()
		}
		return nil
	}
	in, err := parseIntrospection(resp.object())
	if err != nil {
		step.Outcome, step.Detail = OutcomeMalformedResponse, fmt.Sprintf("answered %d but %s", resp.status, err)
		return nil
	}
	f := &r.res.Token
	active := in.active
	f.Active = &active
	if !in.active {
		step.Detail = `answered {"active": false}`
		return in
	}
	if !in.exp.IsZero() {
		f.Expiry, f.ExpirySource = in.exp, "introspection"
	}
	if !in.iat.IsZero() {
		f.IssuedAt = in.iat
	}
	f.NotBefore = in.nbf
	if in.scope != "" {
		f.Scope = in.scope
	}
	if in.username != "" {
		f.Username = in.username
	}
	if in.subject != "" {
		f.Subject = in.subject
	}
	if in.clientID != "" {
		f.ClientID = in.clientID
	}
	if in.tokenType != "" {
		f.TokenType = in.tokenType
	}
	step.Detail = "answered active: true" + describeIntrospection(in)
	return in
}

func describeIntrospection(in *introspection) string {
	var parts []string
	if !in.exp.IsZero() {
		parts = append(parts, "exp "+in.exp.Format(time.RFC3339))
	}
	if in.tokenType != "" {
		parts = append(parts, "token_type "+in.tokenType)
	}
	if in.scope == "" {
		parts = append(parts, "no scope")
	}
	if in.clientID == "" {
		parts = append(parts, "no client_id")
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// witness is the probe's answer about the token: the second witness.
type witness int

const (
	// witnessNone: no probe was made (probe: none, or no userinfo endpoint).
	witnessNone witness = iota
	// witnessAccepted: the resource accepted the token.
	witnessAccepted
	// witnessForbidden: the resource recognised the token but refused this call
	// (403 insufficient_scope): the token is alive.
	witnessForbidden
	// witnessRefused: the resource refused the token itself (401, or 403 as
	// Salesforce's identity URL answers a dead session): the token is dead.
	witnessRefused
	// witnessInconclusive: no usable answer (transport, 5xx, HTML, rate limit,
	// an unexpected status such as 404): nothing was learned about the token.
	witnessInconclusive
)

// probeResult is the probe step and what it says about the token.
type probeResult struct {
	StepResult
	witness witness
}

// probe calls the resource with the token as Bearer: the second witness.
func (c *Checker) probe(ctx context.Context, r *run, token string) probeResult {
	target := c.target.Probe
	switch target {
	case ProbeNone:
		return probeResult{*r.add(StepResult{Step: StepProbe, Outcome: OutcomeOK, Skipped: true, Detail: "probe: none"}), witnessNone}
	case ProbeUserinfo, "":
		if u := c.limitsURL(r); u != "" {
			return c.probeLimits(ctx, r, token, u)
		}
		if why := c.noWitness(r); why != "" {
			return probeResult{*r.add(StepResult{Step: StepProbe, Outcome: OutcomeOK, Skipped: true, Detail: why}), witnessNone}
		}
		target = r.ep.Userinfo
		if target == "" {
			return probeResult{*r.add(StepResult{Step: StepProbe, Outcome: OutcomeOK, Skipped: true,
				Detail: "no userinfo endpoint known (set userinfo_url or probe)"}), witnessNone}
		}
	}
	rq := request{step: StepProbe, method: http.MethodGet, url: target,
		header: http.Header{"Authorization": {"Bearer " + token}}, sent: []string{"Authorization: Bearer (the token)"}, credentials: true}
	resp, sr, err := c.do(ctx, rq)
	step := r.add(sr)
	if err != nil {
		return probeResult{*step, witnessInconclusive}
	}
	if e := classifyHTTP(resp); e != nil {
		step.Outcome, step.Detail = e.outcome, e.detail
		return probeResult{*step, witnessInconclusive}
	}
	if resp.status >= 400 {
		w := judgeRefusal(resp)
		step.Detail = fmt.Sprintf("answered %d", resp.status) + rejection(resp)
		switch w {
		case witnessInconclusive:
			step.Outcome = OutcomeUnexpectedStatus
			if oe := resp.oauthError(); oe != nil && strings.Contains(strings.ToUpper(oe.Code), "LIMIT_EXCEEDED") {
				step.Outcome = OutcomeRateLimited
			}
		default:
			step.Outcome = OutcomeResourceRejected
		}
		return probeResult{*step, w}
	}
	step.Detail = "answered " + strconv.Itoa(resp.status) + ": the token works"
	if m, err := resp.object(); err == nil {
		if u := str(m, "preferred_username"); u != "" && r.res.Token.Username == "" {
			r.res.Token.Username = u
		}
	}
	return probeResult{*step, witnessAccepted}
}

// judgeRefusal reads a 4xx answer of a resource (RFC 6750 §3.1 and Salesforce's forms).
func judgeRefusal(resp *response) witness {
	oe := resp.oauthError()
	challenge := strings.ToLower(resp.header.Get("WWW-Authenticate"))
	code := ""
	if oe != nil {
		code = strings.ToUpper(oe.Code)
	}
	switch {
	case strings.Contains(code, "LIMIT_EXCEEDED"):
		return witnessInconclusive // Salesforce REQUEST_LIMIT_EXCEEDED: says nothing about the token
	case strings.Contains(challenge, "insufficient_scope") || code == "INSUFFICIENT_SCOPE":
		return witnessForbidden
	case resp.status == http.StatusUnauthorized, resp.status == http.StatusForbidden:
		return witnessRefused
	}
	return witnessInconclusive
}

// rejection says why a resource refused a token, from WWW-Authenticate or the body.
func rejection(resp *response) string {
	if oe := resp.oauthError(); oe != nil {
		return ": " + oe.String()
	}
	if h := resp.header.Get("WWW-Authenticate"); h != "" {
		return ": WWW-Authenticate " + resp.red.Cut(h, 200)
	}
	if s := strings.TrimSpace(string(resp.body)); s != "" && !strings.ContainsAny(s, "\n{[<") {
		return ": " + resp.red.Cut(s, 120)
	}
	return ""
}

// tokenDead reports whether the witnesses agree the token no longer works:
// the resource refused it, or introspection said inactive with no resource
// call to contradict it.
func tokenDead(in *introspection, pr probeResult) bool {
	inactive := in != nil && !in.active
	return pr.witness == witnessRefused && (in == nil || inactive) || (inactive && pr.witness == witnessNone)
}

// revoke revokes the token (RFC 7009; Salesforce's variant answers 400 invalid_token for dead tokens).
func (c *Checker) revoke(ctx context.Context, ep Endpoints, token string) StepResult {
	rq := request{step: StepRevoke, method: http.MethodPost, url: ep.Revocation,
		form: newForm("token", token, "token_type_hint", "access_token"), sent: []string{"token", "token_type_hint=access_token"}, credentials: true}
	cl := c.target.Client
	if err := c.authenticate(&rq, &cl, ep.Token); err != nil {
		return StepResult{Step: StepRevoke, Method: http.MethodPost, URL: displayURL(ep.Revocation), Outcome: OutcomeInternalError, Detail: err.Error()}
	}
	resp, sr, err := c.do(ctx, rq)
	if err != nil {
		return sr
	}
	if e := classifyHTTP(resp); e != nil {
		sr.Outcome, sr.Detail = e.outcome, e.detail
		return sr
	}
	oe := resp.oauthError()
	switch {
	case resp.status < 300 && oe == nil:
		sr.Detail = "answered " + strconv.Itoa(resp.status) + ": revoked"
	case oe != nil && oe.Code == "invalid_token":
		// Salesforce answers 400 invalid_token for a token already dead, where RFC 7009 says 200.
		sr.Detail = fmt.Sprintf("answered %d invalid_token: the token was already invalid", resp.status)
	case oe != nil && oe.Code == "unsupported_token_type" && resp.status == http.StatusBadRequest && c.target.Provider == ProviderSalesforce:
		// Salesforce's answer for token kinds it does not revoke this way: a
		// note, not a failure; the token lives until its session ends.
		sr.Detail = fmt.Sprintf("answered %d: %s: the server does not revoke this kind of token here; "+
			"it lives until its session times out (a note, not a failure)", resp.status, oe)
	default:
		sr.Outcome = OutcomeRevokeFailed
		if resp.status == http.StatusUnauthorized || (oe != nil && strings.HasPrefix(oe.Code, "invalid_client")) {
			sr.Outcome = OutcomeClientRejected
		}
		sr.Detail = fmt.Sprintf("answered %d", resp.status)
		if oe != nil {
			sr.Detail += ": " + oe.String()
		}
	}
	return sr
}

// endpoints resolves the org's endpoints: explicit URLs win over the
// provider preset, which wins over discovery.
func (c *Checker) endpoints(ctx context.Context) (Endpoints, error) {
	t := &c.target
	ep := c.preset
	complete := ep.Token != "" && ep.Introspection != "" && ep.Revocation != "" && (ep.Userinfo != "" || t.Probe != ProbeUserinfo)
	if t.DiscoveryURL == "" || complete {
		if ep.Token == "" {
			return ep, classify(OutcomeDiscoveryFailed, "no token endpoint: set token_url or discovery_url")
		}
		return ep, nil
	}
	if c.discoveredAt.IsZero() || c.now().Sub(c.discoveredAt) > discoveryTTL {
		d, err := c.discover(ctx)
		if err != nil {
			return ep, err
		}
		c.discovered, c.discoveredAt = d, c.now()
	}
	fill(&ep.Token, c.discovered.Token)
	fill(&ep.Introspection, c.discovered.Introspection)
	fill(&ep.Revocation, c.discovered.Revocation)
	fill(&ep.Userinfo, c.discovered.Userinfo)
	if ep.Token == "" {
		return ep, classify(OutcomeDiscoveryFailed, "the discovery document at %s names no token_endpoint; set token_url", displayURL(t.DiscoveryURL))
	}
	return ep, nil
}

// presetEndpoints is the target's explicit URLs, completed by its provider preset.
func presetEndpoints(t *Target) Endpoints {
	ep := t.Endpoints
	if t.Provider == ProviderSalesforce && t.URL != "" {
		base := strings.TrimRight(t.URL, "/")
		fill(&ep.Token, base+"/services/oauth2/token")
		fill(&ep.Introspection, base+"/services/oauth2/introspect")
		fill(&ep.Revocation, base+"/services/oauth2/revoke")
		fill(&ep.Userinfo, base+"/services/oauth2/userinfo")
	}
	return ep
}

func fill(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

// discover reads an RFC 8414 / OpenID Connect discovery document.
func (c *Checker) discover(ctx context.Context) (Endpoints, error) {
	resp, _, err := c.do(ctx, request{step: "discovery", method: http.MethodGet, url: c.target.DiscoveryURL})
	where := displayURL(c.target.DiscoveryURL)
	if err != nil {
		e := asClassified(err, OutcomeDiscoveryFailed)
		return Endpoints{}, classify(e.outcome, "%s: %s", where, e.detail)
	}
	if e := classifyHTTP(resp); e != nil {
		return Endpoints{}, classify(OutcomeDiscoveryFailed, "%s %s", where, e.detail)
	}
	if resp.status != http.StatusOK {
		return Endpoints{}, classify(OutcomeDiscoveryFailed, "%s answered %d", where, resp.status)
	}
	m, err := resp.object()
	if err != nil {
		return Endpoints{}, classify(OutcomeDiscoveryFailed, "%s: %s", where, err)
	}
	ep := Endpoints{
		Token:         str(m, "token_endpoint"),
		Introspection: str(m, "introspection_endpoint"),
		Revocation:    str(m, "revocation_endpoint"),
		Userinfo:      str(m, "userinfo_endpoint"),
	}
	// Credentials go to these endpoints: a document that sends them to
	// another origin (scheme, host and port: a tampered or mistaken document,
	// or another service on the same host) is not followed.
	base, _ := url.Parse(c.target.DiscoveryURL)
	for name, v := range map[string]string{"token_endpoint": ep.Token, "introspection_endpoint": ep.Introspection,
		"revocation_endpoint": ep.Revocation, "userinfo_endpoint": ep.Userinfo} {
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || !sameOrigin(u, base) {
			return Endpoints{}, classify(OutcomeDiscoveryFailed, "%s names %s on another host or port than the document (%s); "+
				"set the endpoint URL explicitly if that origin is intended", where, name, displayURL(v))
		}
	}
	return ep, nil
}

// sameOrigin compares scheme, host and port (RFC 6454), a missing port
// standing for the scheme's default.
func sameOrigin(a, b *url.URL) bool {
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		switch strings.ToLower(u.Scheme) {
		case "http":
			return "80"
		case "https":
			return "443"
		}
		return ""
	}
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}

func asClassified(err error, fallback Outcome) *classified {
	if e := (*classified)(nil); errors.As(err, &e) {
		return e
	}
	return &classified{outcome: fallback, detail: err.Error()}
}
