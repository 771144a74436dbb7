package configs

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/tokenwatch/tokenwatch/checks"
)

// Salesforce's fixed jwt_bearer audiences (docs/salesforce.md).
const (
	// DefaultSalesforceAudience is the aud of production orgs.
	DefaultSalesforceAudience = "https://login.salesforce.com"
	// SandboxSalesforceAudience is the aud of sandboxes.
	SandboxSalesforceAudience = "https://test.salesforce.com"
)

// SalesforceAudience is the jwt_bearer aud Salesforce expects for an org at
// base (the org's url): https://test.salesforce.com for a sandbox or scratch
// org (test.salesforce.com, *.sandbox.my.salesforce.com,
// *.scratch.my.salesforce.com, and the legacy cs instance hosts),
// https://login.salesforce.com for production (login.salesforce.com,
// *.my.salesforce.com, and the other *.salesforce.com instance hosts), and
// the URL itself for anything else: an Experience Cloud site (*.my.site.com,
// a custom domain) is its own audience, written as Salesforce shows it (host
// in lower case, no default port, no trailing slash).
func SalesforceAudience(base string) string {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return DefaultSalesforceAudience
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	switch {
	case salesforceSandboxHost(host):
		return SandboxSalesforceAudience
	case host == "salesforce.com" || strings.HasSuffix(host, ".salesforce.com"):
		return DefaultSalesforceAudience
	}
	hostport := host
	if p := u.Port(); p != "" && !(u.Scheme == "https" && p == "443") && !(u.Scheme == "http" && p == "80") {
		hostport = net.JoinHostPort(host, p)
	} else if strings.Contains(host, ":") {
		hostport = "[" + host + "]" // an IPv6 address
	}
	return strings.TrimRight(u.Scheme+"://"+hostport+u.EscapedPath(), "/")
}

// salesforceSandboxHost reports whether host (lower case) is a sandbox's or
// a scratch org's: test.salesforce.com, an enhanced sandbox or scratch My
// Domain, or a legacy cs instance (csNN.salesforce.com, with or without a
// My Domain before it).
func salesforceSandboxHost(host string) bool {
	if host == "test.salesforce.com" || strings.HasSuffix(host, ".sandbox.my.salesforce.com") ||
		strings.HasSuffix(host, ".scratch.my.salesforce.com") {
		return true
	}
	rest, ok := strings.CutSuffix(host, ".salesforce.com")
	if !ok {
		return false
	}
	rest = strings.TrimSuffix(rest, ".my")
	if i := strings.LastIndexByte(rest, '.'); i >= 0 {
		rest = rest[i+1:]
	}
	digits, ok := strings.CutPrefix(rest, "cs")
	return ok && digits != "" && strings.Trim(digits, "0123456789") == ""
}

// salesforceLoginHost reports whether host is one of Salesforce's shared
// login hosts, which do not name an org.
func salesforceLoginHost(host string) bool {
	host = strings.ToLower(host)
	return host == "login.salesforce.com" || host == "test.salesforce.com"
}

// salesforceHosts checks what each grant needs of a Salesforce org's hosts,
// and derives the jwt_bearer audience from url when none is set.
func (r *reader) salesforceHosts(s *section, o *Org) {
	if o.Grant.Type == checks.GrantClientCredentials && !r.probs.has(s.key("url")) {
		tokenURL, key := o.URL, "url"
		if o.Endpoints.Token != "" {
			tokenURL, key = o.Endpoints.Token, "token_url"
		}
		if u, err := url.Parse(tokenURL); err == nil && salesforceLoginHost(u.Hostname()) {
			r.probs.add(s.key(key), "the client credentials flow is not supported on %s (Salesforce answers invalid_grant "+
				"\"request not supported on this domain\"): use your My Domain URL, e.g. https://MYDOMAIN.my.salesforce.com "+
				"or, for a sandbox, https://MYDOMAIN--NAME.sandbox.my.salesforce.com (Setup > My Domain)", u.Hostname())
		}
	}
	if o.Grant.Type == checks.GrantJWTBearer && o.Grant.Audience == "" && o.URL != "" {
		o.Grant.Audience = SalesforceAudience(o.URL)
	}
}

// salesforceIntrospectionWarnings names the Salesforce orgs whose
// introspecting client has no secret: Salesforce's introspection endpoint
// authenticates the connected app by consumer key and secret, so such an
// org's introspection will be unauthorized on every check. A JWT-bearer
// org may well have no secret: the flow does not need one.
func salesforceIntrospectionWarnings(orgs []Org) []string {
	var out []string
	for i, o := range orgs {
		if o.Provider != checks.ProviderSalesforce {
			continue
		}
		cl, key := o.Client, "client"
		if o.Introspection.Client != nil {
			cl, key = *o.Introspection.Client, "introspection.client"
		}
		if cl.Secret != "" || cl.PrivateKey != nil || cl.AuthMethod == checks.AuthTLSClientAuth {
			continue
		}
		if key == "client" {
			key = "introspection.client"
		}
		out = append(out, fmt.Sprintf("orgs[%d].%s: the introspecting client (%s) has no secret, and Salesforce's "+
			"introspection endpoint authenticates the connected app with its consumer key and secret: introspection "+
			"will be unauthorized (introspection_unauthorized) on every check; set client.secret, or introspection.client "+
			"with the id and secret of an app that may introspect this token", i, key, cl.ID))
	}
	return out
}

// signingCertificate reads grant.certificate_file, the certificate uploaded
// to the connected app for the jwt_bearer key, and checks that it belongs
// to grant.private_key_file.
func (r *reader) signingCertificate(s *section, g *checks.Grant) {
	g.CertificateFile = r.resolve(s.str("certificate_file"))
	if g.CertificateFile == "" {
		return
	}
	path := s.key("certificate_file")
	if g.Type != checks.GrantJWTBearer {
		r.probs.add(path, "only for grant type jwt_bearer (the certificate of grant.private_key_file uploaded to the app); remove it")
		return
	}
	b, err := readFile(g.CertificateFile)
	if err != nil {
		r.probs.add(path, "%v", err)
		return
	}
	cert, err := parseCertificate(b)
	if err != nil {
		r.probs.add(path, "cannot use %s: %v", g.CertificateFile, err)
		return
	}
	if g.PrivateKey != nil {
		pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !pub.Equal(g.PrivateKey.Public()) {
			r.probs.add(path, "the certificate in %s does not match grant.private_key_file: name the certificate made "+
				"from that key, the one uploaded to the connected app", g.CertificateFile)
			return
		}
	}
	g.CertificateNotAfter = cert.NotAfter.UTC()
}

// parseCertificate reads the first certificate in PEM data.
func parseCertificate(data []byte) (*x509.Certificate, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM certificate found (expected BEGIN CERTIFICATE)")
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("not a valid certificate: %w", err)
		}
		return cert, nil
	}
}

// refreshTokenPolicy reads grant.refresh_token_policy: the connected app's
// Refresh Token Policy, so tokenwatch can tell when the refresh token in use
// will expire under it. Durations take Prometheus units (90d, 1y, 12h).
func (r *reader) refreshTokenPolicy(s *section, grantType string) checks.RefreshTokenPolicy {
	ps := s.sub("refresh_token_policy")
	var p checks.RefreshTokenPolicy
	if !ps.present {
		return p
	}
	read := func(k string) time.Duration {
		v := ps.str(k)
		if v == "" {
			return 0
		}
		d, err := model.ParseDuration(v)
		if err != nil {
			r.probs.add(ps.key(k), "invalid duration (e.g. 90d, 1y, 12h)")
			return 0
		}
		if d <= 0 {
			r.probs.add(ps.key(k), "must be more than 0 (leave it out for a token valid until revoked)")
		}
		return time.Duration(d)
	}
	p.ExpireAfter = read("expire_after")
	p.ExpireIfUnused = read("expire_if_unused")
	ps.done()
	if grantType != checks.GrantRefreshToken {
		r.probs.add(s.key("refresh_token_policy"), "only for grant type refresh_token; remove it")
	}
	return p
}
