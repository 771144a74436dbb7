package configs

import (
	"crypto"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Config is a loaded, defaulted and validated tokenwatch configuration.
type Config struct {
	Global Global
	Orgs   []Org
	// Alerting is always set: its thresholds have defaults even when the
	// file has no alerting section, and then there are no destinations.
	Alerting Alerting
}

// Global holds the settings every org inherits unless it overrides them.
type Global struct {
	// Schedule is a robfig/cron spec, e.g. "@every 1m" or "CRON_TZ=UTC */5 * * * *".
	Schedule string
	// Timeout bounds each HTTP request of a check.
	Timeout             time.Duration
	MaxConcurrentChecks int
	// LoginBudget is how many token requests an hour one identity (token
	// endpoint host and username, or client id) may make, shared by its orgs.
	LoginBudget int
	Backoff     Backoff
	Probe       Probe
}

// Backoff spaces the logins of an org whose login was rejected
// (client_rejected, grant_rejected, rate_limited, refresh_token_retired).
type Backoff struct {
	// Initial is the first wait; each further rejection doubles it, up to Max.
	Initial, Max time.Duration
}

// Probe bounds what /probe may do.
type Probe struct {
	// MaxAge: /probe answers the last result when it is younger than this.
	MaxAge time.Duration
	// MaxConcurrent checks run for /probe at once, apart from scheduled ones.
	MaxConcurrent int
	// Timeout bounds a /probe when Prometheus sends no scrape timeout header.
	Timeout time.Duration
}

// Org is one OAuth connection to check. Every field is defaulted: a consumer
// never has to repeat the defaulting rules.
type Org struct {
	Name     string
	Provider string
	// URL is the Salesforce base URL (My Domain); endpoints are derived from it.
	URL string
	// DiscoveryURL is the RFC 8414 / OpenID discovery document of a generic server.
	DiscoveryURL string
	// Explicit endpoints override derived or discovered ones; empty when not set.
	TokenURL         string
	IntrospectionURL string
	RevocationURL    string
	UserinfoURL      string
	Schedule         string
	Timeout          time.Duration
	Client           Client
	Grant            Grant
	Introspection    Introspection
	// Probe is "userinfo", "none" or a URL called with the token as Bearer.
	Probe     string
	TokenMode string
	// VerifySignature checks the Salesforce token response signature.
	VerifySignature bool
	TLS             TLS
	Labels          map[string]string
	Expect          Expect
}

// Client is an OAuth client and how it authenticates. *_file paths are
// absolute after loading; the secret and the private key are already read.
type Client struct {
	ID             string
	Secret         Secret
	SecretFile     string
	AuthMethod     string
	PrivateKeyFile string
	KeyID          string
	// PrivateKey is parsed from PrivateKeyFile when it is set.
	PrivateKey crypto.Signer
}

// Format prints the client with its private key withheld; Secret already
// redacts itself, a parsed RSA or EC key would otherwise print its numbers.
func (c Client) Format(f fmt.State, verb rune) {
	type client Client // drops the Format method so printing does not recurse
	p := client(c)
	p.PrivateKey = redactKey(c.PrivateKey)
	fmt.Fprintf(f, fmt.FormatString(f, verb), p)
}

// Grant says how the org's token is obtained.
type Grant struct {
	Type     string
	Username string
	// Password is, for Salesforce, the password with the security token appended.
	Password     Secret
	PasswordFile string
	// PrivateKeyFile holds the key that signs the jwt_bearer assertion.
	PrivateKeyFile string
	KeyID          string
	PrivateKey     crypto.Signer
	// Audience is the jwt_bearer assertion's aud.
	Audience         string
	RefreshToken     Secret
	RefreshTokenFile string
	Scope            string
}

// Format prints the grant with its private key withheld (see Client.Format).
func (g Grant) Format(f fmt.State, verb rune) {
	type grant Grant
	p := grant(g)
	p.PrivateKey = redactKey(g.PrivateKey)
	fmt.Fprintf(f, fmt.FormatString(f, verb), p)
}

// Introspection configures the RFC 7662 call.
type Introspection struct {
	// Client, when non-nil, introspects instead of the org's own client.
	Client        *Client
	TokenTypeHint string
}

// Expect lists auth-regression expectations on the token's facts; zero
// values mean "no expectation".
type Expect struct {
	MinLifetime   time.Duration
	ScopeIncludes []string
	Username      string
	ClientID      string
}

// Secret holds a credential. It prints as <secret> with every fmt verb and
// in text encodings so a Config can be logged; only Reveal gives the value.
type Secret string

// Reveal returns the secret's value. Call it only where the value is sent.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer; empty stays empty so "not set" is visible.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "<secret>"
}

// GoString implements fmt.GoStringer so %#v does not print the value either.
func (s Secret) GoString() string { return s.String() }

// MarshalText keeps the value out of JSON, YAML and text encodings.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Format covers the verbs Stringer does not, such as %x and %d.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = fmt.Fprint(f, s.String()) }

// Problem is one thing wrong with a configuration, at a field path such as
// "orgs[2].grant.password_file", or an environment variable name when the
// value came from one.
type Problem struct {
	Path    string
	Message string
}

// String renders the problem as "path: message".
func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Problems is every problem found in a configuration. Load and Parse return
// it as their error so a user can fix everything in one go.
type Problems []Problem

// Error lists every problem, one per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// redactedKey stands in for a private key when a struct is printed.
type redactedKey struct{}

func (redactedKey) Public() crypto.PublicKey { return nil }

func (redactedKey) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("redacted private key cannot sign")
}

func (redactedKey) String() string   { return "<private key>" }
func (redactedKey) GoString() string { return "<private key>" }

func redactKey(k crypto.Signer) crypto.Signer {
	if k == nil {
		return nil
	}
	return redactedKey{}
}
