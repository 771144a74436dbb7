package configs

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	promconfig "github.com/prometheus/common/config"
	"github.com/robfig/cron/v3"

	"github.com/tokenwatch/tokenwatch/checks"
)

func (r *reader) org(s *section, index int, g Global, firstIndex map[string]int) Org {
	o := Org{
		Target: checks.Target{
			Name:         s.str("name"),
			Provider:     s.str("provider"),
			URL:          s.str("url"),
			DiscoveryURL: s.str("discovery_url"),
			Endpoints: checks.Endpoints{
				Token:         s.str("token_url"),
				Introspection: s.str("introspection_url"),
				Revocation:    s.str("revocation_url"),
				Userinfo:      s.str("userinfo_url"),
			},
			Probe:     s.str("probe"),
			TokenMode: s.str("token_mode"),
		},
		Schedule: s.str("schedule"),
	}
	r.checkName(s, index, o.Name, firstIndex)

	if o.Provider == "" && !r.probs.has(s.key("provider")) {
		o.Provider = checks.ProviderSalesforce
	}
	switch o.Provider {
	case checks.ProviderSalesforce:
		if o.URL == "" {
			r.probs.add(s.key("url"), "required for provider salesforce (the My Domain base URL, e.g. https://acme.my.salesforce.com)")
		}
	case checks.ProviderGeneric:
		if o.DiscoveryURL == "" && o.Endpoints.Token == "" {
			r.probs.add(s.key("discovery_url"), "required for provider generic unless token_url is set "+
				"(the RFC 8414 or OpenID discovery document, e.g. https://idp.example.com/.well-known/openid-configuration)")
		}
	default:
		r.probs.add(s.key("provider"), "unknown provider (one of salesforce, generic)")
	}
	for _, u := range []struct{ key, value string }{
		{"url", o.URL}, {"discovery_url", o.DiscoveryURL}, {"token_url", o.Endpoints.Token},
		{"introspection_url", o.Endpoints.Introspection}, {"revocation_url", o.Endpoints.Revocation}, {"userinfo_url", o.Endpoints.Userinfo},
	} {
		if u.value != "" {
			r.checkURL(s.key(u.key), u.value)
		}
	}

	if o.Schedule == "" {
		o.Schedule = g.Schedule
	} else {
		r.checkSchedule(s.key("schedule"), o.Schedule)
	}
	o.Timeout = g.Timeout
	if d, ok := s.duration("timeout"); ok {
		o.Timeout = d
		checkTimeout(&r.probs, s.key("timeout"), d)
	}

	// The HTTP client first: tls_client_auth needs to know whether a
	// certificate is set.
	o.HTTPClient = r.orgHTTPClient(s)
	grantType := s.sub("grant").str("type")
	o.Client = r.client(s.sub("client"), o.Provider, grantType, o.HTTPClient.TLSConfig)
	o.Grant = r.grant(s.sub("grant"), o.Provider)
	o.Introspection = r.introspection(s.sub("introspection"), o.Provider, o.HTTPClient.TLSConfig)

	switch o.Probe {
	case "":
		o.Probe = checks.ProbeUserinfo
	case checks.ProbeUserinfo, checks.ProbeNone:
	default:
		if strings.Contains(o.Probe, "://") {
			r.checkURL(s.key("probe"), o.Probe)
		} else {
			r.probs.add(s.key("probe"), "must be userinfo, none, or an https URL called with the token")
		}
	}

	switch o.TokenMode {
	case "":
		o.TokenMode = checks.TokenModeFresh
	case checks.TokenModeFresh, checks.TokenModeReuse:
	default:
		r.probs.add(s.key("token_mode"), "unknown mode (one of fresh, reuse)")
	}

	if o.Provider == checks.ProviderSalesforce {
		r.salesforceHosts(s, &o)
	}
	o.VerifySignature = r.verifySignature(s, o)
	o.Labels = r.labels(s.sub("labels"))
	o.Expect = r.expect(s.sub("expect"))
	o.Metrics = r.metrics(s.sub("metrics"), g.Metrics)
	s.done()
	return o
}

func (r *reader) checkName(s *section, index int, name string, firstIndex map[string]int) {
	path := s.key("name")
	switch {
	case name == "":
		r.probs.add(path, "required (a unique name; it becomes the org label)")
	case !validOrgName(name):
		r.probs.add(path, "only letters, digits, '.', '_' and '-' are allowed, starting with a letter or digit")
	default:
		if first, seen := firstIndex[name]; seen {
			r.probs.add(path, "duplicate name %q (first used by orgs[%d]); names must be unique", name, first)
			return
		}
		firstIndex[name] = index
	}
}

// validOrgName matches ^[A-Za-z0-9][A-Za-z0-9._-]*$: the name is a label
// value, a URL query parameter and a shard key, so it stays plain.
func validOrgName(name string) bool {
	for i, c := range name {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return name != ""
}

// checkURL accepts absolute http(s) URLs. Plain http only reaches loopback
// hosts because client secrets, passwords and tokens travel in the requests.
func (r *reader) checkURL(path, raw string) {
	u := r.absoluteURL(path, raw, "set them under client or grant", ", e.g. https://idp.example.com/path")
	if u == nil {
		return
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
	case "http":
		if !checks.IsLoopback(u.Hostname()) {
			r.probs.add(path, "plain http is allowed only to loopback hosts (localhost, 127.0.0.0/8, ::1) because credentials are sent; use https")
		}
	default:
		r.probs.add(path, "the scheme is not allowed; use https")
	}
}

// absoluteURL parses raw and reports, under path, a URL that is unparsable,
// carries credentials (where says where they belong instead) or is not
// absolute (hint ends that message). It returns nil after reporting.
func (r *reader) absoluteURL(path, raw, where, hint string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the whole URL, which may carry a password.
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		r.probs.add(path, "not a valid URL: %s", urlProblem(err))
		return nil
	}
	if u.User != nil {
		r.probs.add(path, "must not contain credentials (user:password@); %s", where)
		return nil
	}
	if u.Scheme == "" || u.Host == "" {
		r.probs.add(path, "must be an absolute URL with scheme and host%s", hint)
		return nil
	}
	return u
}

// scheduleParser is the one cron parser setup: five fields, descriptors
// such as @hourly and @every, and a CRON_TZ= or TZ= prefix.
var scheduleParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule parses a schedule as the agent runs it; validation uses it
// too, so what loads is what runs.
func ParseSchedule(spec string) (cron.Schedule, error) { return scheduleParser.Parse(spec) }

// checkSchedule accepts what ParseSchedule accepts, but @every below 1s.
func (r *reader) checkSchedule(path, spec string) {
	if _, err := ParseSchedule(spec); err != nil {
		r.probs.add(path, "invalid schedule: %s (e.g. \"@every 1m\" or \"*/5 * * * *\")", scheduleProblem(spec, err))
		return
	}
	// cron silently turns "@every 0s" or "@every -1m" into every second,
	// which would hammer the authorization server.
	body := spec
	if strings.HasPrefix(body, "TZ=") || strings.HasPrefix(body, "CRON_TZ=") {
		_, body, _ = strings.Cut(body, " ")
	}
	if every, ok := strings.CutPrefix(strings.TrimSpace(body), "@every "); ok {
		if d, err := time.ParseDuration(strings.TrimSpace(every)); err == nil && d < time.Second {
			r.probs.add(path, "@every interval must be at least 1s, got %s", d)
		}
	}
}

func checkTimeout(probs *problems, path string, d time.Duration) {
	if d <= 0 || d > MaxTimeout {
		probs.add(path, "must be more than 0s and at most 5m, got %s", d)
	}
}

// secret reads a credential given inline, as ${NAME} from the environment,
// or from fileKey. set reports whether the user configured one at all, even
// when it failed to resolve, so no second "required" problem follows.
func (r *reader) secret(s *section, key, fileKey string) (value checks.Secret, file string, set bool) {
	inline := s.str(key)
	file = r.resolve(s.str(fileKey))
	set = inline != "" || file != "" || r.probs.has(s.key(key)) || r.probs.has(s.key(fileKey))
	switch {
	case inline != "" && file != "":
		r.probs.add(s.key(fileKey), "set either %s or %s, not both", key, fileKey)
	case inline != "":
		name, isRef, ok := envReference(inline)
		switch {
		case !isRef:
			value = checks.Secret(inline)
		case !ok:
			r.probs.add(s.key(key), "${...} must name an environment variable made of letters, digits and _")
		default:
			v, found := r.env[name]
			switch {
			case !found:
				r.probs.add(s.key(key), "environment variable %s is not set", name)
			case v == "":
				r.probs.add(s.key(key), "environment variable %s is empty", name)
			default:
				value = checks.Secret(v)
			}
		}
	case file != "":
		value = r.readSecretFile(s.key(fileKey), file)
	}
	return value, file, set
}

// envReference recognises a value that is exactly ${NAME}. isRef is true
// for anything shaped like ${...}; ok is true when NAME is a valid name.
func envReference(v string) (name string, isRef, ok bool) {
	inner, hasPrefix := strings.CutPrefix(v, "${")
	name, hasSuffix := strings.CutSuffix(inner, "}")
	if !hasPrefix || !hasSuffix {
		return "", false, false
	}
	return name, true, validIdentifier(name)
}

// validIdentifier matches ^[a-zA-Z_][a-zA-Z0-9_]*$, the shape of environment
// variable names and of Prometheus label names.
func validIdentifier(s string) bool {
	for i, c := range s {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return s != ""
}

func (r *reader) readSecretFile(path, file string) checks.Secret {
	b, err := readFile(file)
	if err != nil {
		r.probs.add(path, "%v", err)
		return ""
	}
	// Editors and `echo` end files with a newline that is not part of the secret.
	v := string(b)
	if trimmed, ok := strings.CutSuffix(v, "\r\n"); ok {
		v = trimmed
	} else {
		v = strings.TrimSuffix(v, "\n")
	}
	if v == "" {
		r.probs.add(path, "file %s is empty", file)
	}
	return checks.Secret(v)
}

func (r *reader) client(s *section, provider, grantType string, t promconfig.TLSConfig) checks.Client {
	c := checks.Client{
		ID:         s.str("id"),
		AuthMethod: s.str("auth_method"),
		KeyID:      s.str("key_id"),
	}
	var hasSecret bool
	c.Secret, c.SecretFile, hasSecret = r.secret(s, "secret", "secret_file")
	c.PrivateKeyFile = r.resolve(s.str("private_key_file"))
	if c.PrivateKeyFile != "" {
		c.PrivateKey = r.privateKey(s.key("private_key_file"), c.PrivateKeyFile)
	}
	s.done()

	if c.ID == "" {
		r.probs.add(s.key("id"), "required (the OAuth client id; for Salesforce the connected app's consumer key)")
	}
	if c.AuthMethod == "" && !r.probs.has(s.key("auth_method")) {
		c.AuthMethod = defaultAuthMethod(provider, grantType, hasSecret, c.PrivateKeyFile != "")
	}
	switch c.AuthMethod {
	case checks.AuthClientSecretBasic, checks.AuthClientSecretPost:
		if !hasSecret {
			r.probs.add(s.key("secret"), "required for auth_method %s (set secret, secret: ${ENV_VAR} or secret_file)", c.AuthMethod)
		}
	case checks.AuthPrivateKeyJWT:
		if c.PrivateKeyFile == "" {
			r.probs.add(s.key("private_key_file"), "required for auth_method private_key_jwt (a PEM RSA or EC private key)")
		}
	case checks.AuthTLSClientAuth:
		if (t.CertFile == "" && t.Cert == "") || (t.KeyFile == "" && t.Key == "") {
			r.probs.add(s.key("auth_method"), "tls_client_auth needs the org's tls.cert_file and tls.key_file (the client certificate)")
		}
	case checks.AuthNone:
	default:
		r.probs.add(s.key("auth_method"), "unknown method (one of client_secret_basic, client_secret_post, private_key_jwt, tls_client_auth, none)")
	}
	return c
}

// defaultAuthMethod follows what each provider's token endpoint expects: a
// client with only a private key signs assertions, a jwt_bearer grant without
// client credentials needs none (the signed assertion is the credential, as
// in Salesforce's JWT bearer flow), Salesforce documents credentials in the
// body, and RFC 6749 §2.3.1 makes Basic the baseline.
func defaultAuthMethod(provider, grantType string, hasSecret, hasKey bool) string {
	switch {
	case hasKey && !hasSecret:
		return checks.AuthPrivateKeyJWT
	case grantType == checks.GrantJWTBearer && !hasSecret:
		return checks.AuthNone
	case provider == checks.ProviderSalesforce:
		return checks.AuthClientSecretPost
	default:
		return checks.AuthClientSecretBasic
	}
}

func (r *reader) grant(s *section, provider string) checks.Grant {
	g := checks.Grant{
		Type:     s.str("type"),
		Username: s.str("username"),
		KeyID:    s.str("key_id"),
		Audience: s.str("audience"),
		Scope:    s.str("scope"),
	}
	var hasPassword, hasRefreshToken bool
	g.Password, g.PasswordFile, hasPassword = r.secret(s, "password", "password_file")
	g.RefreshToken, g.RefreshTokenFile, hasRefreshToken = r.secret(s, "refresh_token", "refresh_token_file")
	g.PrivateKeyFile = r.resolve(s.str("private_key_file"))
	if g.PrivateKeyFile != "" {
		g.PrivateKey = r.privateKey(s.key("private_key_file"), g.PrivateKeyFile)
	}
	r.signingCertificate(s, &g)
	g.RefreshTokenPolicy = r.refreshTokenPolicy(s, g.Type)
	s.done()

	switch g.Type {
	case "":
		r.probs.add(s.key("type"), "required (one of password, client_credentials, jwt_bearer, refresh_token)")
	case checks.GrantPassword:
		if g.Username == "" {
			r.probs.add(s.key("username"), "required for grant type password")
		}
		if !hasPassword {
			r.probs.add(s.key("password"), "required for grant type password (set password, password: ${ENV_VAR} or password_file; "+
				"for Salesforce, the password followed by the security token)")
		}
	case checks.GrantClientCredentials:
	case checks.GrantJWTBearer:
		if g.Username == "" {
			r.probs.add(s.key("username"), "required for grant type jwt_bearer (the user the token is issued for)")
		}
		if g.PrivateKeyFile == "" {
			r.probs.add(s.key("private_key_file"), "required for grant type jwt_bearer (the PEM private key whose certificate the server trusts)")
		}
		if provider == checks.ProviderSalesforce {
			// An empty audience is derived from url (salesforceAudience).
			if _, isRSA := g.PrivateKey.(*rsa.PrivateKey); g.PrivateKey != nil && !isRSA {
				r.probs.add(s.key("private_key_file"), "Salesforce accepts only RS256 assertions; use an RSA key")
			}
		}
	case checks.GrantRefreshToken:
		if !hasRefreshToken {
			r.probs.add(s.key("refresh_token"), "required for grant type refresh_token (set refresh_token, refresh_token: ${ENV_VAR} or refresh_token_file)")
		}
	default:
		r.probs.add(s.key("type"), "unknown grant type (one of password, client_credentials, jwt_bearer, refresh_token)")
	}
	return g
}

func (r *reader) introspection(s *section, provider string, t promconfig.TLSConfig) checks.Introspection {
	in := checks.Introspection{TokenTypeHint: s.str("token_type_hint")}
	if cs := s.sub("client"); cs.present {
		c := r.client(cs, provider, "", t)
		in.Client = &c
	}
	s.done()
	switch in.TokenTypeHint {
	case "":
		in.TokenTypeHint = checks.HintAccessToken
	case checks.HintAccessToken, checks.HintRefreshToken:
	default:
		r.probs.add(s.key("token_type_hint"), "must be access_token or refresh_token")
	}
	return in
}

// verifySignature defaults to true for Salesforce orgs whose client has a
// secret: the signature is an HMAC keyed with it, so without one there is
// nothing to verify with.
func (r *reader) verifySignature(s *section, o Org) bool {
	want, set := s.boolean("verify_signature")
	noSecret := o.Client.Secret == "" &&
		!r.probs.has(s.key("client.secret")) && !r.probs.has(s.key("client.secret_file"))
	switch {
	case !set:
		return o.Provider == checks.ProviderSalesforce && o.Client.Secret != ""
	case want && o.Provider == checks.ProviderGeneric:
		r.probs.add(s.key("verify_signature"), "only provider salesforce signs token responses; remove verify_signature or set it to false")
	case want && noSecret:
		r.probs.add(s.key("verify_signature"), "needs client.secret (Salesforce signs token responses with it); set the secret or verify_signature: false")
	}
	return want
}

func (r *reader) labels(s *section) map[string]string {
	if !s.present {
		return nil
	}
	out := make(map[string]string, len(s.m))
	for _, name := range s.keys() {
		value := s.str(name)
		path := s.key(name)
		switch {
		case !validIdentifier(name):
			r.probs.add(path, "invalid label name (must match ^[a-zA-Z_][a-zA-Z0-9_]*$)")
		case strings.HasPrefix(name, "__"):
			r.probs.add(path, "label names starting with __ are reserved for Prometheus")
		case reservedLabel(name):
			r.probs.add(path, "%q is set by tokenwatch itself; choose another label name", name)
		default:
			out[name] = value
		}
	}
	return out
}

// reservedLabel names the labels tokenwatch puts on metrics and alerts; an
// org label with one of these names would clash with them.
func reservedLabel(name string) bool {
	switch name {
	case "org", "provider", "grant", "outcome", "step", "phase",
		"alertname", "reason", "severity", "instance", "job":
		return true
	}
	return false
}

func (r *reader) expect(s *section) checks.Expectations {
	e := checks.Expectations{
		ScopeIncludes: s.strings("scope_includes"),
		Username:      s.str("username"),
		ClientID:      s.str("client_id"),
	}
	if d, ok := s.duration("min_lifetime"); ok {
		if d < 0 {
			r.probs.add(s.key("min_lifetime"), "must not be negative, got %s", d)
		} else {
			e.MinLifetime = d
		}
	}
	s.done()
	return e
}

// MaxSecretFileBytes bounds a secret, key or certificate file: such files
// are small, and a path to /dev/zero or a huge log must not exhaust memory.
const MaxSecretFileBytes = 64 << 10

// readFile reads a secret, key or certificate file named in the
// configuration; the error names the file and never its content.
func readFile(path string) ([]byte, error) {
	return readBounded(path, MaxSecretFileBytes)
}

// readBounded reads a regular file of at most limit bytes. It opens the file
// without blocking and checks what it opened, so a named pipe, a device
// (/dev/zero) or a directory is refused at once instead of wedging or
// exhausting the process, even if the path changes between a check and the
// read.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		// Without the path: one that cannot be opened may be a secret typed
		// into a *_file key. The field path says which file it is.
		return nil, fmt.Errorf("cannot read: %w", withoutPath(err))
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("cannot read %s: not a regular file (%s); name a file", path, fileKind(info.Mode()))
	}
	if info.Size() > limit {
		return nil, fmt.Errorf("cannot read %s: %d bytes, more than the %d allowed; name the file that holds only this value",
			path, info.Size(), limit)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("cannot read %s: more than the %d bytes allowed", path, limit)
	}
	return b, nil
}

// fileKind names what a non-regular file is, in the user's words.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	default:
		return "not a plain file"
	}
}
