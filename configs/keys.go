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

// TLS is an org's client TLS settings. File paths are absolute after loading.
type TLS struct {
	CAFile     string
	CertFile   string
	KeyFile    string
	ServerName string
	// InsecureSkipVerify turns off certificate checks; for test servers only.
	InsecureSkipVerify bool
}

// Build returns the client TLS configuration. It never returns a nil config
// without an error, so callers need no special case for "nothing set".
// A CA file replaces the system roots rather than adding to them, so an org
// pinned to a private CA trusts nothing else.
func (t TLS) Build() (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // an explicit per-org opt-in
	}
	if t.CAFile != "" {
		pool, err := loadCertPool(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, field, err := loadKeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.%s: %w", field, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
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

func (r *reader) tls(s *section) TLS {
	t := TLS{
		CAFile:     r.resolve(s.str("ca_file")),
		CertFile:   r.resolve(s.str("cert_file")),
		KeyFile:    r.resolve(s.str("key_file")),
		ServerName: s.str("server_name"),
	}
	t.InsecureSkipVerify, _ = s.boolean("insecure_skip_verify")
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
