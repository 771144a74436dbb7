package orgsim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"sync"
	"time"
)

// server is the org's own loopback HTTP(S) server. It does what
// httptest.Server did for the org, without pulling net/http/httptest into
// the binary whose demo serves simulated orgs: Close waits for the requests
// in flight and closes idle and never-used connections at once.
type server struct {
	http     *http.Server
	listener net.Listener
	url      string
	// cert is the served certificate and client a client trusting it; cert
	// is nil over plain HTTP.
	cert   *x509.Certificate
	client *http.Client

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]http.ConnState
	// wg counts the serving loop and every open connection.
	wg sync.WaitGroup
}

// serve starts serving h on l, over TLS with a new self-signed certificate
// for the loopback addresses when useTLS is set.
func serve(l net.Listener, h http.Handler, useTLS bool, errLog *log.Logger) (*server, error) {
	s := &server{conns: map[net.Conn]http.ConnState{}}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	scheme := "http"
	if useTLS {
		cert, leaf, err := selfSignedCertificate()
		if err != nil {
			return nil, err
		}
		// HTTP/1.1 only, as httptest serves: the hang-up fault hijacks
		// the connection, which HTTP/2 cannot.
		l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
		pool := x509.NewCertPool()
		pool.AddCert(leaf)
		transport.TLSClientConfig = &tls.Config{RootCAs: pool}
		transport.ForceAttemptHTTP2 = false
		s.cert = leaf
		scheme = "https"
	}
	s.listener = l
	s.url = scheme + "://" + l.Addr().String()
	s.client = &http.Client{Transport: transport}
	s.http = &http.Server{Handler: h, ConnState: s.track, ErrorLog: errLog, ReadHeaderTimeout: time.Minute}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.http.Serve(l)
	}()
	return s, nil
}

// track follows each connection's state, for Close.
func (s *server) track(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st {
	case http.StateNew:
		s.wg.Add(1)
		s.conns[c] = st
		if s.closed {
			// A dial that lost the race with Close: it will never be used.
			_ = c.Close()
		}
	case http.StateActive:
		if _, ok := s.conns[c]; ok {
			s.conns[c] = st
		}
	case http.StateIdle:
		if _, ok := s.conns[c]; ok {
			s.conns[c] = st
		}
		if s.closed {
			_ = c.Close()
		}
	case http.StateHijacked, http.StateClosed:
		if _, ok := s.conns[c]; ok {
			delete(s.conns, c)
			s.wg.Done()
		}
	}
}

// close stops accepting, closes the connections that are not serving a
// request and waits for those that are.
func (s *server) close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		_ = s.listener.Close()
		s.http.SetKeepAlivesEnabled(false)
		for c, st := range s.conns {
			if st == http.StateIdle || st == http.StateNew {
				_ = c.Close()
			}
		}
	}
	s.mu.Unlock()
	if t, ok := s.client.Transport.(*http.Transport); ok {
		t.CloseIdleConnections()
	}
	s.wg.Wait()
}

// selfSignedCertificate makes a certificate for 127.0.0.1, ::1 and
// localhost that signs itself, so that a client trusts it by adding it to
// its root pool.
func selfSignedCertificate() (tls.Certificate, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("orgsim: certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("orgsim: certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"orgsim"}, CommonName: "127.0.0.1"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("orgsim: certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("orgsim: certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf, nil
}
