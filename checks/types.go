package checks

import (
	"crypto"
	"fmt"
	"time"
)

// Secret holds a credential. It prints as <secret> in every format verb and
// in JSON so that a Target or a struct holding one can be logged safely; the
// value is reached only through Reveal.
type Secret string

// Reveal returns the secret's value. Call it only where the value is sent.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "<secret>"
}

// GoString implements fmt.GoStringer so %#v does not print the value either.
func (s Secret) GoString() string { return s.String() }

// Format prints <secret> whatever the verb, so %d or %x cannot show the value either.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = fmt.Fprint(f, s.String()) }

// MarshalText keeps the value out of JSON, YAML and text encodings.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Providers.
const (
	ProviderSalesforce = "salesforce"
	ProviderGeneric    = "generic"
)

// Grant types (config `grant.type`).
const (
	GrantPassword          = "password"
	GrantClientCredentials = "client_credentials"
	GrantJWTBearer         = "jwt_bearer"
	GrantRefreshToken      = "refresh_token"
)

// Client authentication methods (config `client.auth_method`).
const (
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
	AuthPrivateKeyJWT     = "private_key_jwt"
	AuthTLSClientAuth     = "tls_client_auth"
	AuthNone              = "none"
)

// Token modes (config `token_mode`).
const (
	TokenModeFresh = "fresh"
	TokenModeReuse = "reuse"
)

// Probe settings (config `probe`); anything else is a URL.
const (
	ProbeUserinfo = "userinfo"
	ProbeNone     = "none"
)

// Token type hints of introspection (config `introspection.token_type_hint`).
const (
	HintAccessToken  = "access_token"
	HintRefreshToken = "refresh_token"
)

// Client is an OAuth client: its id and how it authenticates.
type Client struct {
	ID         string
	Secret     Secret
	AuthMethod string
	// PrivateKey signs the RFC 7523 §2.2 client assertion for private_key_jwt.
	PrivateKey crypto.Signer
	// KeyID, when set, goes into the assertion's `kid` header.
	KeyID string
	// SecretFile and PrivateKeyFile say where Secret and PrivateKey were
	// read from (absolute paths); empty when given inline.
	SecretFile, PrivateKeyFile string
}

// Grant says how a token is obtained.
type Grant struct {
	Type     string
	Username string
	// Password is, for Salesforce, the password with the security token appended.
	Password Secret
	// PrivateKey signs the RFC 7523 §2.1 assertion of the jwt_bearer grant.
	PrivateKey crypto.Signer
	KeyID      string
	// Audience is the jwt_bearer assertion's `aud`; the token URL when empty.
	Audience     string
	RefreshToken Secret
	Scope        string
	// PasswordFile, PrivateKeyFile and RefreshTokenFile say where those
	// were read from (absolute paths); empty when given inline.
	PasswordFile, PrivateKeyFile, RefreshTokenFile string
	// CertificateFile is the certificate uploaded to the connected app for
	// PrivateKey (jwt_bearer), and CertificateNotAfter its expiry: the day
	// the flow stops working. Zero when not configured.
	CertificateFile     string
	CertificateNotAfter time.Time
	// RefreshTokenPolicy is the connected app's refresh token policy as the
	// configuration states it (grant.refresh_token_policy).
	RefreshTokenPolicy RefreshTokenPolicy
}

// RefreshTokenPolicy says when the server lets a refresh token expire: a
// fixed time after it was issued, or after a period without use. Zero
// durations do not apply.
type RefreshTokenPolicy struct {
	ExpireAfter, ExpireIfUnused time.Duration
}

// Endpoints are explicit URLs; empty ones come from the provider preset or discovery.
type Endpoints struct {
	Token         string
	Introspection string
	Revocation    string
	Userinfo      string
}

// Introspection configures the RFC 7662 call.
type Introspection struct {
	// Client, when non-nil, introspects instead of the org's own client.
	Client        *Client
	TokenTypeHint string
}

// Expectations are auth-regression checks on the token's facts.
type Expectations struct {
	MinLifetime   time.Duration
	ScopeIncludes []string
	Username      string
	ClientID      string
}

// Target is everything needed to check one org. It is built from the
// configuration by the agent; checks never reads configuration files.
type Target struct {
	Name          string
	Provider      string
	URL           string // salesforce base URL
	DiscoveryURL  string
	Endpoints     Endpoints
	Timeout       time.Duration
	Client        Client
	Grant         Grant
	Introspection Introspection
	// Probe is ProbeUserinfo, ProbeNone or a URL called with the token as Bearer.
	Probe           string
	TokenMode       string
	VerifySignature bool
	Labels          map[string]string
	Expect          Expectations
}

// Info identifies an org to the exporters, without credentials.
type Info struct {
	Name     string
	Provider string
	Grant    string
	Labels   map[string]string
	// StepHistograms and Phases are the org's metrics settings (config
	// metrics.step_histograms and metrics.phases, set by configs'
	// Org.Info): expose its per-step histograms, and the phases of its
	// last check. Settings, not identity: never stored.
	StepHistograms bool `json:"-"`
	Phases         bool `json:"-"`
}

// OrgState is one configured org and its last result, as the agent
// publishes them and the exporters read them.
type OrgState struct {
	Info Info
	// Last is the org's last result: nil until its first check finished,
	// or a result read back from the state store (Last.Loaded) until then.
	// A published result is never modified.
	Last *Result
}

// Info returns the exporter-facing identity of the target.
func (t *Target) Info() Info {
	return Info{Name: t.Name, Provider: t.Provider, Grant: t.Grant.Type, Labels: t.Labels}
}

// Step names one HTTP exchange of a check (the `step` label).
type Step string

// Steps, in the order a check runs them.
const (
	StepToken      Step = "token"
	StepIntrospect Step = "introspect"
	StepProbe      Step = "probe"
	StepRevoke     Step = "revoke"
)

// AllSteps lists the steps in check order.
var AllSteps = []Step{StepToken, StepIntrospect, StepProbe, StepRevoke}

// Phases are httptrace timings of one request. On a reused keep-alive
// connection Resolve, Connect and TLS are zero.
type Phases struct {
	Resolve    time.Duration `json:"resolve_seconds"`
	Connect    time.Duration `json:"connect_seconds"`
	TLS        time.Duration `json:"tls_seconds"`
	Processing time.Duration `json:"processing_seconds"`
	Transfer   time.Duration `json:"transfer_seconds"`
}

// PhaseNames lists the phase label values in order.
var PhaseNames = []string{"resolve", "connect", "tls", "processing", "transfer"}

// Values returns the phases in PhaseNames order.
func (p Phases) Values() []time.Duration {
	return []time.Duration{p.Resolve, p.Connect, p.TLS, p.Processing, p.Transfer}
}

// StepResult is what one step sent and saw. It never holds a credential or a token.
type StepResult struct {
	Step Step `json:"step"`
	// Method and URL of the request; the URL has no query string or userinfo.
	Method string `json:"method"`
	URL    string `json:"url"`
	// Sent lists the parameter names sent (values withheld), e.g. grant_type=password, client_id, client_secret.
	Sent []string `json:"sent,omitempty"`
	// Status is the HTTP status, 0 when no response arrived.
	Status   int           `json:"status"`
	Duration time.Duration `json:"duration_seconds"`
	Phases   Phases        `json:"phases"`
	// Outcome is this step's own classification; OutcomeOK when it did its part.
	Outcome Outcome `json:"outcome"`
	// Detail is a short, credential-free description: an OAuth error code and
	// description, a transport error, or what was learned.
	Detail string `json:"detail,omitempty"`
	// Skipped is true for a step that was not run (no endpoint, probe none, reuse mode).
	Skipped bool `json:"skipped,omitempty"`
}

// Signature states of the Salesforce token response signature.
const (
	SignatureNotChecked = "not_checked"
	SignatureAbsent     = "absent"
	SignatureValid      = "valid"
	SignatureMismatch   = "mismatch"
)

// TokenFacts are what the check learned about the token. Times are zero when unknown.
type TokenFacts struct {
	// Minted is true when this check obtained the token; false when a kept token was reused.
	Minted    bool      `json:"minted"`
	IssuedAt  time.Time `json:"issued_at,omitzero"`
	Expiry    time.Time `json:"expiry,omitzero"`
	NotBefore time.Time `json:"not_before,omitzero"`
	// ExpirySource says where Expiry came from: introspection, expires_in or jwt.
	ExpirySource string `json:"expiry_source,omitempty"`
	Scope        string `json:"scope,omitempty"`
	Username     string `json:"username,omitempty"`
	Subject      string `json:"subject,omitempty"`
	ClientID     string `json:"client_id,omitempty"`
	// TokenType as introspection reported it (Salesforce: "sid" for session ids), else from the token response.
	TokenType   string `json:"token_type,omitempty"`
	InstanceURL string `json:"instance_url,omitempty"`
	Signature   string `json:"signature"`
	// Active is the introspection answer; nil when introspection gave none.
	Active *bool `json:"active,omitempty"`
	// ClockSkew is server time (HTTP Date of the token response) minus local time.
	ClockSkew time.Duration `json:"clock_skew_seconds,omitzero"`
}

// Lifetime is exp - iat, zero when either is unknown.
func (f TokenFacts) Lifetime() time.Duration {
	if f.IssuedAt.IsZero() || f.Expiry.IsZero() {
		return 0
	}
	return f.Expiry.Sub(f.IssuedAt)
}

// Result is the whole outcome of one check of one org.
type Result struct {
	Org      string        `json:"org"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration_seconds"`
	Outcome  Outcome       `json:"outcome"`
	// Explanation says what was seen, in words, with numbers.
	Explanation string `json:"explanation"`
	// Fix says what to change; empty when healthy.
	Fix   string       `json:"fix,omitempty"`
	Steps []StepResult `json:"steps"`
	Token TokenFacts   `json:"token"`
	// TLSCertExpiry is the earliest NotAfter among certificates presented; zero over plain http.
	TLSCertExpiry time.Time `json:"tls_cert_expiry,omitzero"`
	// APIRequests is the org's daily API allowance from the REST API's
	// /limits, when the check probed it (Salesforce, a token without an
	// identity scope); nil otherwise.
	APIRequests *APIRequests `json:"api_requests,omitempty"`
	// SigningCertExpiry is the NotAfter of grant.certificate_file, the
	// certificate of the jwt_bearer signing key; zero when none is configured.
	SigningCertExpiry time.Time `json:"signing_cert_expiry,omitzero"`
	// RefreshTokenExpiry is when the refresh token in use expires under
	// grant.refresh_token_policy; zero when no policy is configured.
	RefreshTokenExpiry time.Time `json:"refresh_token_expiry,omitzero"`
	// RetryAfter is what the token endpoint's Retry-After header asked for; zero when absent.
	RetryAfter time.Duration `json:"-"`
	// Loaded marks a result read back from the state store at start, shown
	// until the org's first check after the start.
	Loaded bool `json:"loaded,omitempty"`
	// NextAttempt is when a login is tried again while the org backs off
	// after a rejected login; zero when it does not back off.
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// Deferred is the login gate's refusal (see WithLoginGate): the check
	// stopped before its token request and says nothing about the org.
	Deferred error `json:"-"`
}

// Success reports whether the check was healthy.
func (r *Result) Success() bool { return r.Outcome == OutcomeOK }

// FailedStep is the first step that ran and did not do its part; "" when
// none did (a healthy check, or one that failed before any request or on
// what the answers said, such as an expectation). It is the step label of
// tokenwatch_check_outcome, and decides the alert of a failure that no
// alert names by its outcome.
func (r *Result) FailedStep() Step {
	for _, s := range r.Steps {
		if !s.Skipped && s.Outcome != "" && s.Outcome != OutcomeOK {
			return s.Step
		}
	}
	return ""
}

// Step returns the result of the named step, or nil when the check did not get that far.
func (r *Result) Step(s Step) *StepResult {
	for i := range r.Steps {
		if r.Steps[i].Step == s {
			return &r.Steps[i]
		}
	}
	return nil
}

// redactedKey stands in for a private key when a Client or Grant is printed,
// which would otherwise show the key's numbers.
type redactedKey struct{}

func (redactedKey) String() string { return "<private key>" }

func keyForPrinting(k crypto.Signer) any {
	if k == nil {
		return nil
	}
	return redactedKey{}
}

// Format prints the client with its private key withheld.
func (c Client) Format(f fmt.State, verb rune) {
	type client struct {
		ID         string
		Secret     Secret
		AuthMethod string
		PrivateKey any
		KeyID      string
	}
	fmt.Fprintf(f, fmt.FormatString(f, verb), client{c.ID, c.Secret, c.AuthMethod, keyForPrinting(c.PrivateKey), c.KeyID})
}

// Format prints the grant with its private key withheld.
func (g Grant) Format(f fmt.State, verb rune) {
	type grant struct {
		Type, Username string
		Password       Secret
		PrivateKey     any
		KeyID          string
		Audience       string
		RefreshToken   Secret
		Scope          string
	}
	fmt.Fprintf(f, fmt.FormatString(f, verb), grant{g.Type, g.Username, g.Password, keyForPrinting(g.PrivateKey), g.KeyID, g.Audience, g.RefreshToken, g.Scope})
}
