// Package orgsim simulates one Salesforce org, its OAuth 2.0 authorization
// server and enough of its resource server, over real HTTP. The demo, the
// tests of package checks and the benchmarks use it to exercise every path
// tokenwatch watches, Salesforce's quirks and injected faults included.
//
// What it copies from Salesforce, and the choices made where Salesforce's
// behaviour is not documented:
//
//   - Password-grant tokens are session ids. Introspection shows them only to
//     an app with "Introspect All Tokens", as token_type "sid" with null scope
//     and client_id; everyone else gets {"active":false}.
//   - Sessions time out after inactivity. A resource call (userinfo, the
//     identity URL, /services/data/...) with a live token records activity,
//     but, as Salesforce does, only once half the timeout has passed since
//     the activity last recorded: a call in the first half moves nothing.
//     Introspection records nothing. The timeout is fixed when the token is
//     issued: changing an app's timeout affects new tokens only.
//   - The token endpoint answers with Salesforce's own error texts: a login
//     beyond LoginRateLimit is invalid_grant "login rate exceeded"; client
//     credentials at login.salesforce.com (Options.LoginHost) is invalid_grant
//     "request not supported on this domain"; a sandbox (Options.Sandbox)
//     refuses the production audience.
//   - Introspection needs the caller's consumer secret (or a client
//     assertion): a client_id alone is refused with 401.
//   - userinfo refuses (403) a token whose scope grants no access to the
//     identity service (none of id, openid, profile, email, address, phone,
//     full); /services/data/ needs api (or full): a live token without it
//     gets the 401 INVALID_SESSION_ID "This session is not valid for use
//     with the REST API" that a dead one gets too. /limits needs View Setup
//     and Configuration (User.NoViewSetup: 403 INSUFFICIENT_ACCESS), and
//     every REST answer carries Sforce-Limit-Info: api-usage=USED/MAX.
//   - Token responses never carry expires_in; issued_at is a string of epoch
//     milliseconds; signature is Base64(HMAC-SHA256(id + issued_at, secret)).
//   - userinfo with a dead token answers 401, WWW-Authenticate
//     `Bearer error="invalid_token"` and the plain-text body Bad_OAuth_Token.
//     /services/data/ answers 401 with a JSON array (INVALID_SESSION_ID); the
//     identity URL answers 403 with a one-line plain-text body.
//   - Revoking an unknown or dead token answers 400 invalid_token, unlike
//     RFC 7009. Revoking a refresh token revokes its whole chain.
//   - A missing client_id is treated as an unknown one (invalid_client_id).
//   - OAuth parameters are read from the form body only, never from the query
//     string, where credentials do not belong; revoke by GET is the exception.
//   - The HTTP Date header follows Options.Clock (plus any Fault.DateSkew), so
//     a client comparing it to its own clock sees the simulated server's time.
package orgsim

import (
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultOrgID is the org id of an Org whose Options name none.
const DefaultOrgID = "00D000000000001EAA"

// Salesforce's org-wide session timeout default.
const defaultSessionTimeout = 2 * time.Hour

// Errors of the administrative methods.
var (
	ErrUnknownApp  = errors.New("orgsim: no connected app with this client id")
	ErrUnknownUser = errors.New("orgsim: no user with this username")
)

// Options configure an Org. The zero value is a usable org.
type Options struct {
	// OrgID is the 18-character org id; DefaultOrgID when empty. Give each
	// Org of one process its own.
	OrgID string
	// Clock is the org's notion of now; time.Now when nil. It drives token
	// expiry and the HTTP Date header.
	Clock func() time.Time
	// DefaultSessionTimeout applies when an app sets none (Salesforce org default 2h).
	DefaultSessionTimeout time.Duration
	// IdentityHost, when set, is the scheme+host used in the `id` identity URL (e.g. to mimic
	// test.salesforce.com differing from instance_url); default: the org's own URL.
	IdentityHost string
	// PasswordFlowBlocked mimics orgs created after Summer '23: password grant -> invalid_grant "authentication failure".
	PasswordFlowBlocked bool
	// Sandbox makes the org a sandbox: jwt_bearer assertions must name
	// https://test.salesforce.com (or the org's own URL) as aud, and
	// https://login.salesforce.com is refused, as a sandbox does.
	Sandbox bool
	// LoginHost makes the org answer as login.salesforce.com or
	// test.salesforce.com do rather than as a My Domain: the client
	// credentials flow is refused with "request not supported on this domain".
	LoginHost bool
	// LoginRateLimit: max token requests per user per hour (0 = unlimited); beyond it answer rate-limited.
	// The hour is a fixed window starting at the user's first counted request.
	LoginRateLimit int
	// Logger receives the HTTP server's own errors (failed TLS handshakes and
	// the like) at debug level; nil discards them. Tokens are never logged.
	Logger *slog.Logger
}

// App is a connected app.
type App struct {
	ClientID, ClientSecret string
	// IntrospectAll is the "Introspect All Tokens" checkbox.
	IntrospectAll bool
	// SessionTimeout is the connected app's Timeout Value; 0 means the org default.
	SessionTimeout time.Duration
	// CertificateKey is the key of the uploaded certificate: it verifies
	// jwt_bearer assertions and private_key_jwt client assertions.
	CertificateKey *rsa.PublicKey
	// RunAsUser is the client credentials integration user; "" answers
	// "no client credentials user enabled".
	RunAsUser string
	// PreApproved lists the usernames pre-authorized for jwt_bearer.
	PreApproved []string
	// RefreshTokenRotation makes every refresh return a new refresh token and
	// retire the old one; reusing a retired one kills the chain.
	RefreshTokenRotation bool
	// Scope is reported for non-password flows; "api" when empty.
	Scope string
	// Public apps need no client secret (auth method none).
	Public bool
	// RefreshTokenPolicy is the app's refresh token policy; the zero value
	// is "valid until revoked".
	RefreshTokenPolicy RefreshTokenPolicy
}

// RefreshTokenPolicy is a connected app's Refresh Token Policy: a refresh
// token dies a fixed time after it was issued, or after a period without
// use. Zero durations do not apply.
type RefreshTokenPolicy struct {
	ExpireAfter, ExpireIfUnused time.Duration
}

// User is an org user. The password grant expects Password followed by SecurityToken.
type User struct {
	Username, Password, SecurityToken string
	// Frozen users cannot obtain tokens ("inactive user").
	Frozen bool
	// IPRestricted refuses the user's logins as a profile's login IP
	// ranges or login hours do ("IP restricted or invalid login hours").
	IPRestricted bool
	// NoViewSetup marks a user without the View Setup and Configuration
	// permission, as least-privilege integration users are: the REST API's
	// /limits refuses them (403 INSUFFICIENT_ACCESS) though their token works.
	NoViewSetup bool
}

// Org is one simulated Salesforce org (one My Domain). It is safe for
// concurrent use; several can run in one process.
type Org struct {
	orgID   string
	orgID15 string // session ids and API URLs use the 15-character form
	clock   func() time.Time
	opts    Options
	handler http.Handler
	// counters has one entry per Endpoint except EndpointAll; the map itself
	// is never written after New.
	counters map[Endpoint]*atomic.Int64
	// dataCalls feeds the Remaining figure of /limits.
	dataCalls       atomic.Int64
	passwordBlocked atomic.Bool
	// inactive marks the org locked, closed or suspended (SetInactive).
	inactive atomic.Bool
	// done is closed by Close so that injected latency does not hold it up.
	done chan struct{}
	url  atomic.Pointer[string]

	srvMu  sync.Mutex
	srv    *server
	closed bool

	faultMu sync.Mutex
	faults  map[Endpoint]*Fault

	mu        sync.Mutex
	apps      map[string]*App
	users     map[string]*user // by username
	userIDs   map[string]*user // by user id
	tokens    map[string]*token
	logins    map[string]*loginWindow
	userSeq   int
	lastPurge time.Time
}

type user struct {
	User
	id string
}

// New returns an Org that is not listening yet: call Start or StartTLS, or
// mount Handler on a server of your own.
func New(opts Options) *Org {
	if opts.OrgID == "" {
		opts.OrgID = DefaultOrgID
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.DefaultSessionTimeout <= 0 {
		opts.DefaultSessionTimeout = defaultSessionTimeout
	}
	o := &Org{
		orgID:    opts.OrgID,
		orgID15:  opts.OrgID,
		clock:    opts.Clock,
		opts:     opts,
		counters: make(map[Endpoint]*atomic.Int64),
		done:     make(chan struct{}),
		faults:   make(map[Endpoint]*Fault),
		apps:     make(map[string]*App),
		users:    make(map[string]*user),
		userIDs:  make(map[string]*user),
		tokens:   make(map[string]*token),
		logins:   make(map[string]*loginWindow),
	}
	if len(o.orgID15) > 15 {
		o.orgID15 = o.orgID15[:15]
	}
	o.passwordBlocked.Store(opts.PasswordFlowBlocked)
	for _, e := range []Endpoint{EndpointToken, EndpointIntrospect, EndpointRevoke, EndpointUserinfo, EndpointResource, EndpointDiscovery} {
		o.counters[e] = new(atomic.Int64)
	}
	o.handler = o.routes()
	return o
}

// OrgID returns the 18-character org id.
func (o *Org) OrgID() string { return o.orgID }

// Handler serves all endpoints. Mounted on a server of your own, the org
// takes its URL from each request's Host.
func (o *Org) Handler() http.Handler { return o.handler }

// URL returns the base URL once started, "" before.
func (o *Org) URL() string {
	if u := o.url.Load(); u != nil {
		return *u
	}
	return ""
}

// Start listens on a loopback port over plain HTTP.
func (o *Org) Start() error { return o.start(false) }

// StartTLS listens on a loopback port over HTTPS with a self-signed
// certificate valid for 127.0.0.1; clients trust it through Certificate or Client.
func (o *Org) StartTLS() error { return o.start(true) }

func (o *Org) start(useTLS bool) error {
	o.srvMu.Lock()
	defer o.srvMu.Unlock()
	if o.closed {
		return errors.New("orgsim: start: org is closed")
	}
	if o.srv != nil {
		return errors.New("orgsim: start: already started")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("orgsim: start: listen on loopback: %w", err)
	}
	errLog := log.New(io.Discard, "", 0)
	if o.opts.Logger != nil {
		errLog = slog.NewLogLogger(o.opts.Logger.Handler(), slog.LevelDebug)
	}
	srv, err := serve(l, o.handler, useTLS, errLog)
	if err != nil {
		_ = l.Close()
		return fmt.Errorf("orgsim: start: %w", err)
	}
	o.srv = srv
	u := srv.url
	o.url.Store(&u)
	return nil
}

// Close stops the server, ending any injected latency, and waits for
// requests in flight. The org cannot be started again.
func (o *Org) Close() {
	o.srvMu.Lock()
	defer o.srvMu.Unlock()
	if o.closed {
		return
	}
	o.closed = true
	close(o.done)
	if o.srv != nil {
		o.srv.close()
	}
}

// Certificate returns the certificate served after StartTLS, nil otherwise.
func (o *Org) Certificate() *x509.Certificate {
	o.srvMu.Lock()
	defer o.srvMu.Unlock()
	if o.srv == nil {
		return nil
	}
	return o.srv.cert
}

// Client returns an HTTP client that trusts the org's certificate; nil
// before Start.
func (o *Org) Client() *http.Client {
	o.srvMu.Lock()
	defer o.srvMu.Unlock()
	if o.srv == nil {
		return nil
	}
	return o.srv.client
}

// AddApp adds a connected app, or replaces the one with the same ClientID.
func (o *Org) AddApp(a App) {
	a.PreApproved = slices.Clone(a.PreApproved)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.apps[a.ClientID] = &a
}

// AddUser adds a user and returns its 18-character user id. Adding an
// existing username updates that user and keeps its id.
func (o *Org) AddUser(u User) (userID string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if old, ok := o.users[u.Username]; ok {
		old.User = u
		return old.id
	}
	o.userSeq++
	// 15 digits have no upper-case letters, so the checksum suffix of the
	// 18-character form is "AAA".
	nu := &user{User: u, id: fmt.Sprintf("005%012dAAA", o.userSeq)}
	o.users[u.Username] = nu
	o.userIDs[nu.id] = nu
	return nu.id
}

// SetFrozen freezes or unfreezes a user. Freezing blocks new logins; like
// Salesforce it does not end existing sessions (see RevokeUserSessions).
func (o *Org) SetFrozen(username string, frozen bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if u, ok := o.users[username]; ok {
		u.Frozen = frozen
	}
}

// SetIntrospectAll ticks or clears "Introspect All Tokens"; it applies to the
// next introspection. Unknown client ids are ignored.
func (o *Org) SetIntrospectAll(clientID string, on bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if a, ok := o.apps[clientID]; ok {
		a.IntrospectAll = on
	}
}

// SetSessionTimeout changes an app's Timeout Value for tokens issued from
// now on. Unknown client ids are ignored.
func (o *Org) SetSessionTimeout(clientID string, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if a, ok := o.apps[clientID]; ok {
		a.SessionTimeout = d
	}
}

// SetInactive locks (or unlocks) the whole org, as a suspended or closed
// org is: every token request answers inactive_org.
func (o *Org) SetInactive(inactive bool) { o.inactive.Store(inactive) }

// SetPasswordFlowBlocked changes Options.PasswordFlowBlocked at run time,
// as an admin would in Setup.
func (o *Org) SetPasswordFlowBlocked(blocked bool) { o.passwordBlocked.Store(blocked) }

// IssueRefreshToken returns a refresh token as if the user had approved the
// app in a web flow: the seed of the refresh_token grant.
func (o *Org) IssueRefreshToken(clientID, username string) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	app, ok := o.apps[clientID]
	if !ok {
		return "", fmt.Errorf("issue refresh token for %q: %w", clientID, ErrUnknownApp)
	}
	u, ok := o.users[username]
	if !ok {
		return "", fmt.Errorf("issue refresh token for %q: %w", username, ErrUnknownUser)
	}
	return o.newRefreshLocked(o.clock(), app, u, newFamily()), nil
}

// RevokeUserSessions ends every access token (session) of the user, as an
// admin removing sessions does: they die before their exp. Refresh tokens
// survive and can mint new sessions.
func (o *Org) RevokeUserSessions(username string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.clock()
	for _, t := range o.tokens {
		if !t.refresh && t.username == username && t.revokedAt.IsZero() {
			t.revokedAt = now
		}
	}
}

// Requests returns how many requests reached the endpoint (all endpoints for
// EndpointAll), faulted ones included.
func (o *Org) Requests(e Endpoint) int {
	if e == EndpointAll {
		var n int64
		for _, c := range o.counters {
			n += c.Load()
		}
		return int(n)
	}
	if c, ok := o.counters[e]; ok {
		return int(c.Load())
	}
	return 0
}

// baseURL is the org's URL: the listener's when started, else the request's host.
func (o *Org) baseURL(r *http.Request) string {
	if u := o.URL(); u != "" {
		return u
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (o *Org) identityURL(r *http.Request, userID string) string {
	host := o.opts.IdentityHost
	if host == "" {
		host = o.baseURL(r)
	}
	return host + "/id/" + o.orgID + "/" + userID
}
