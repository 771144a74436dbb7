package configs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"

	promconfig "github.com/prometheus/common/config"
)

// privateKey loads the key at file, recording a problem at path when it
// cannot be used.
func (r *reader) privateKey(path, file string) crypto.Signer {
	b, err := readFile(file)
	if err != nil {
		r.probs.add(path, "%v", err)
		return nil
	}
	k, err := parsePrivateKey(b)
	if err != nil {
		r.probs.add(path, "cannot use %s: %v", file, err)
		return nil
	}
	return k
}

// parsePrivateKey reads the first private key in PEM data: PKCS#8, PKCS#1
// (RSA) or SEC 1 (EC). Other blocks, such as a certificate kept in the same
// file, are skipped. Errors describe the problem, never the key material.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM private key found (expected BEGIN PRIVATE KEY, BEGIN RSA PRIVATE KEY or BEGIN EC PRIVATE KEY)")
		}
		if block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] == "4,ENCRYPTED" {
			return nil, errors.New("the key is encrypted; store it unencrypted, e.g. openssl pkey -in KEY -out KEY.plain")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("invalid %s: %w", block.Type, err)
		}
		switch k := key.(type) {
		case *rsa.PrivateKey:
			return k, nil
		case *ecdsa.PrivateKey:
			return k, nil
		default:
			return nil, fmt.Errorf("unsupported key type %T; use an RSA or EC key", key)
		}
	}
}

// tlsConfig reads a tls: section (ca_file, cert_file, key_file,
// server_name, insecure_skip_verify, min_version) into the TLS settings of
// prometheus/common, which re-reads the files when they change, and checks
// the files now so that a problem carries its field path. A CA file replaces
// the system roots, so an org pinned to a private CA trusts nothing else.
func (r *reader) tlsConfig(s *section) promconfig.TLSConfig {
	t := promconfig.TLSConfig{
		CAFile:     r.resolve(s.str("ca_file")),
		CertFile:   r.resolve(s.str("cert_file")),
		KeyFile:    r.resolve(s.str("key_file")),
		ServerName: s.str("server_name"),
		MinVersion: tls.VersionTLS12,
	}
	t.InsecureSkipVerify, _ = s.boolean("insecure_skip_verify")
	if v := s.str("min_version"); v != "" {
		if n, ok := promconfig.TLSVersions[v]; ok && n >= tls.VersionTLS12 {
			t.MinVersion = n
		} else {
			r.probs.add(s.key("min_version"), "must be TLS12 or TLS13")
		}
	}
	s.done()

	if t.CAFile != "" {
		if _, err := loadCertPool(t.CAFile); err != nil {
			r.probs.add(s.key("ca_file"), "%v", err)
		}
	}
	if t.CertFile != "" || t.KeyFile != "" {
		if _, field, err := loadKeyPair(t.CertFile, t.KeyFile); err != nil {
			r.probs.add(s.key(field), "%v", err)
		}
	}
	return t
}

// orgHTTPClient reads how an org's endpoints are reached: tls and the
// proxy settings of prometheus/common (proxy_url, no_proxy,
// proxy_from_environment, proxy_connect_header). Without proxy_url, the
// proxy comes from the environment (HTTPS_PROXY, NO_PROXY) unless
// proxy_from_environment is false.
func (r *reader) orgHTTPClient(s *section) promconfig.HTTPClientConfig {
	c := promconfig.HTTPClientConfig{EnableHTTP2: true, TLSConfig: r.tlsConfig(s.sub("tls"))}
	c.ProxyConfig = r.proxy(s)
	return c
}

// proxy reads the proxy keys of a section that has them.
func (r *reader) proxy(s *section) promconfig.ProxyConfig {
	var p promconfig.ProxyConfig
	fromEnv, fromEnvSet := s.boolean("proxy_from_environment")
	if raw := s.str("proxy_url"); raw != "" {
		if u := r.absoluteURL(s.key("proxy_url"), raw, "set proxy_connect_header", ", e.g. http://proxy.example.com:3128"); u != nil {
			p.ProxyURL = promconfig.URL{URL: u}
		}
		if fromEnv {
			r.probs.add(s.key("proxy_from_environment"), "set either proxy_url or proxy_from_environment, not both")
		}
	} else {
		p.ProxyFromEnvironment = fromEnv || !fromEnvSet
	}
	p.NoProxy = s.str("no_proxy")
	if p.NoProxy != "" && p.ProxyURL.URL == nil {
		r.probs.add(s.key("no_proxy"), "needs proxy_url (with proxies from the environment, NO_PROXY says it)")
	}
	if hs := s.sub("proxy_connect_header"); hs.present {
		p.ProxyConnectHeader = promconfig.ProxyHeader{}
		for _, name := range hs.keys() {
			for _, v := range hs.strings(name) {
				p.ProxyConnectHeader[name] = append(p.ProxyConnectHeader[name], promconfig.Secret(v))
			}
		}
		if p.ProxyURL.URL == nil {
			r.probs.add(hs.path, "needs proxy_url")
		}
	}
	return p
}

// Transport builds the round tripper of the org's requests from its HTTP
// client settings (TLS files are re-read when they change); the checker
// puts its redirect policy on top. opts are prometheus/common's, e.g.
// config.WithIdleConnTimeout. Nothing in it is the org's own but its
// settings: orgs whose HTTPClient settings are equal may share one (the
// agent does, with a short idle timeout).
func (o Org) Transport(opts ...promconfig.HTTPClientOption) (http.RoundTripper, error) {
	rt, err := promconfig.NewRoundTripperFromConfig(o.HTTPClient, "tokenwatch", opts...)
	if err != nil {
		return nil, fmt.Errorf("org %s: http client: %w", o.Name, err)
	}
	return rt, nil
}
func loadCertPool(file string) (*x509.CertPool, error) {
	b, err := readFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("no PEM certificate found in %s", file)
	}
	return pool, nil
}

// loadKeyPair loads a client certificate and its key; field names the
// setting to fix when it fails.
func loadKeyPair(certFile, keyFile string) (cert tls.Certificate, field string, err error) {
	switch {
	case certFile == "":
		return cert, "cert_file", errors.New("required when tls.key_file is set (the client certificate)")
	case keyFile == "":
		return cert, "key_file", errors.New("required when tls.cert_file is set (the client certificate's private key)")
	}
	certPEM, err := readFile(certFile)
	if err != nil {
		return cert, "cert_file", err
	}
	keyPEM, err := readFile(keyFile)
	if err != nil {
		return cert, "key_file", err
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The tls package says which input failed ("certificate input",
		// "key input", "does not match"); its messages carry no key material.
		return cert, "cert_file", fmt.Errorf("cannot load the client certificate with tls.key_file %s: %w", keyFile, err)
	}
	return cert, "", nil
}

// redactHTTP returns c with every secret value replaced, for printing:
// prometheus/common's Secret hides itself in YAML and JSON, not with fmt.
func redactHTTP(c promconfig.HTTPClientConfig) promconfig.HTTPClientConfig {
	hide := func(s promconfig.Secret) promconfig.Secret {
		if s == "" {
			return ""
		}
		return "<secret>"
	}
	if c.BasicAuth != nil {
		b := *c.BasicAuth
		b.Password = hide(b.Password)
		c.BasicAuth = &b
	}
	if c.Authorization != nil {
		a := *c.Authorization
		a.Credentials = hide(a.Credentials)
		c.Authorization = &a
	}
	if c.OAuth2 != nil {
		o := *c.OAuth2
		o.ClientSecret = hide(o.ClientSecret)
		o.ClientCertificateKey = hide(o.ClientCertificateKey)
		c.OAuth2 = &o
	}
	c.BearerToken = hide(c.BearerToken)
	c.TLSConfig.Key = hide(c.TLSConfig.Key)
	if len(c.ProxyConnectHeader) > 0 {
		h := promconfig.ProxyHeader{}
		for name, vs := range c.ProxyConnectHeader {
			for range vs {
				h[name] = append(h[name], "<secret>")
			}
		}
		c.ProxyConnectHeader = h
	}
	if c.HTTPHeaders != nil {
		hs := promconfig.Headers{Headers: map[string]promconfig.Header{}}
		for name, h := range c.HTTPHeaders.Headers {
			secrets := make([]promconfig.Secret, len(h.Secrets))
			for i, s := range h.Secrets {
				secrets[i] = hide(s)
			}
			h.Secrets = secrets
			hs.Headers[name] = h
		}
		c.HTTPHeaders = &hs
	}
	return c
}

// Format prints the org with the secrets of its HTTP client settings
// withheld (its client and grant withhold their own).
func (o Org) Format(f fmt.State, verb rune) {
	type org Org // drops the Format method so printing does not recurse
	p := org(o)
	p.HTTPClient = redactHTTP(o.HTTPClient)
	fmt.Fprintf(f, fmt.FormatString(f, verb), p)
}

// Format prints the Alertmanager with its credentials withheld.
func (a Alertmanager) Format(f fmt.State, verb rune) {
	type alertmanager Alertmanager
	p := alertmanager(a)
	p.HTTPClient = redactHTTP(a.HTTPClient)
	fmt.Fprintf(f, fmt.FormatString(f, verb), p)
}

// Format prints the webhook with its credentials withheld.
func (w Webhook) Format(f fmt.State, verb rune) {
	type webhook Webhook
	p := webhook(w)
	p.HTTPClient = redactHTTP(w.HTTPClient)
	fmt.Fprintf(f, fmt.FormatString(f, verb), p)
}
