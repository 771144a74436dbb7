// Command fakeoauth is a minimal, fast OAuth 2.0 server for the scale
// benchmark (bench/scale): the client credentials grant, RFC 7662
// introspection, userinfo and RFC 7009 revocation, with an optional injected
// latency per endpoint. It shares no code with tokenwatch or
// internal/orgsim, listens on loopback only, and counts what it sees, so the
// benchmark can tell, from outside the daemon, when every org was checked and
// how regularly.
//
//	fakeoauth -listen 127.0.0.1:0 -latency 50ms -secret s
//
// It prints its base URL (http://127.0.0.1:PORT) on the first line of
// standard output. Endpoints:
//
//	POST /token       grant_type=client_credentials, client_secret_basic or _post; any client id, the one secret
//	POST /introspect  token=...; client authentication as above
//	GET  /userinfo    Authorization: Bearer ...
//	POST /revoke      token=...; client authentication as above
//	GET  /count       finished checks (revocations answered) and the time, as two numbers
//	GET  /stats       JSON: counts per endpoint, connections, per-client regularity (see stats)
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const nShards = 64

type tokenRec struct {
	client string
	iat    time.Time
	exp    time.Time
}

// clientRec is what the server saw of one client id (one org).
type clientRec struct {
	firstRevoke time.Time
	lastRevoke  time.Time
	lastToken   time.Time
	tokens      int
	revokes     int
}

type shard struct {
	mu      sync.Mutex
	tokens  map[string]tokenRec
	clients map[string]*clientRec
	// intervals between consecutive token requests of one client, with the
	// time of the later one.
	intervals []interval
}

type interval struct {
	at time.Time
	d  time.Duration
}

// handled keeps the last handling times of one endpoint (injected latency
// included), to tell the server's own overshoot from the client's.
type handled struct {
	mu  sync.Mutex
	buf []time.Duration
	n   int
}

func (h *handled) add(d time.Duration) {
	h.mu.Lock()
	if len(h.buf) < 200000 {
		h.buf = append(h.buf, d)
	} else {
		h.buf[h.n%len(h.buf)] = d
	}
	h.n++
	h.mu.Unlock()
}

func (h *handled) median() float64 {
	h.mu.Lock()
	c := slices.Clone(h.buf)
	h.mu.Unlock()
	if len(c) == 0 {
		return 0
	}
	slices.Sort(c)
	return c[len(c)/2].Seconds()
}

type server struct {
	secret  string
	ttl     time.Duration
	latency map[string]time.Duration
	shards  [nShards]shard
	count   map[string]*atomic.Int64
	errors  map[string]*atomic.Int64
	took    map[string]*handled
	conns   atomic.Int64
	maxConn atomic.Int64
	start   time.Time
}

var endpoints = []string{"token", "introspect", "userinfo", "revoke"}

func newServer(secret string, ttl time.Duration, latency map[string]time.Duration) *server {
	s := &server{secret: secret, ttl: ttl, latency: latency, start: time.Now(),
		count: map[string]*atomic.Int64{}, errors: map[string]*atomic.Int64{}, took: map[string]*handled{}}
	for i := range s.shards {
		s.shards[i].tokens = map[string]tokenRec{}
		s.shards[i].clients = map[string]*clientRec{}
	}
	for _, e := range endpoints {
		s.count[e], s.errors[e], s.took[e] = &atomic.Int64{}, &atomic.Int64{}, &handled{}
	}
	return s
}

func shardOf(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % nShards)
}

// wrap counts and delays one endpoint.
func (s *server) wrap(name string, method string, h func(http.ResponseWriter, *http.Request) bool) http.HandlerFunc {
	lat := s.latency[name]
	return func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		if r.Method != method {
			w.Header().Set("Allow", method)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			s.errors[name].Add(1)
			return
		}
		if lat > 0 {
			time.Sleep(lat - time.Since(t0))
		}
		s.count[name].Add(1)
		if !h(w, r) {
			s.errors[name].Add(1)
		}
		s.took[name].add(time.Since(t0))
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func oauthError(w http.ResponseWriter, status int, code string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="fakeoauth"`)
	}
	writeJSON(w, status, map[string]string{"error": code})
}

// client authenticates the request's client (client_secret_basic or
// client_secret_post) and returns its id, or "".
func (s *server) client(r *http.Request) string {
	if id, secret, ok := r.BasicAuth(); ok {
		if secret == s.secret && id != "" {
			return id
		}
		return ""
	}
	if id := r.PostForm.Get("client_id"); id != "" && r.PostForm.Get("client_secret") == s.secret {
		return id
	}
	return ""
}

func randomToken(client string) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "fa." + hex.EncodeToString(b) + "." + client
}

func (s *server) handleToken(w http.ResponseWriter, r *http.Request) bool {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request")
		return false
	}
	id := s.client(r)
	if id == "" {
		oauthError(w, http.StatusUnauthorized, "invalid_client")
		return false
	}
	if r.PostForm.Get("grant_type") != "client_credentials" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type")
		return false
	}
	now := time.Now()
	tok := randomToken(id)
	ts := &s.shards[shardOf(tok)]
	ts.mu.Lock()
	ts.tokens[tok] = tokenRec{client: id, iat: now, exp: now.Add(s.ttl)}
	ts.mu.Unlock()
	cs := &s.shards[shardOf(id)]
	cs.mu.Lock()
	c := cs.clients[id]
	if c == nil {
		c = &clientRec{}
		cs.clients[id] = c
	}
	if !c.lastToken.IsZero() {
		cs.intervals = append(cs.intervals, interval{at: now, d: now.Sub(c.lastToken)})
	}
	c.lastToken = now
	c.tokens++
	cs.mu.Unlock()
	resp := map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": int(s.ttl.Seconds())}
	if sc := r.PostForm.Get("scope"); sc != "" {
		resp["scope"] = sc
	}
	writeJSON(w, http.StatusOK, resp)
	return true
}

func (s *server) lookup(tok string) (tokenRec, bool) {
	ts := &s.shards[shardOf(tok)]
	ts.mu.Lock()
	rec, ok := ts.tokens[tok]
	ts.mu.Unlock()
	if ok && time.Now().After(rec.exp) {
		return rec, false
	}
	return rec, ok
}

func (s *server) handleIntrospect(w http.ResponseWriter, r *http.Request) bool {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request")
		return false
	}
	if s.client(r) == "" {
		oauthError(w, http.StatusUnauthorized, "invalid_client")
		return false
	}
	rec, ok := s.lookup(r.PostForm.Get("token"))
	if !ok {
		writeJSON(w, http.StatusOK, map[string]any{"active": false})
		return true
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"active": true, "client_id": rec.client, "sub": rec.client, "token_type": "Bearer",
		"iat": rec.iat.Unix(), "exp": rec.exp.Unix(),
	})
	return true
}

func (s *server) handleUserinfo(w http.ResponseWriter, r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="fakeoauth"`)
		oauthError(w, http.StatusUnauthorized, "invalid_token")
		return false
	}
	rec, ok := s.lookup(tok)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		oauthError(w, http.StatusUnauthorized, "invalid_token")
		return false
	}
	writeJSON(w, http.StatusOK, map[string]any{"sub": rec.client})
	return true
}

func (s *server) handleRevoke(w http.ResponseWriter, r *http.Request) bool {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request")
		return false
	}
	id := s.client(r)
	if id == "" {
		oauthError(w, http.StatusUnauthorized, "invalid_client")
		return false
	}
	tok := r.PostForm.Get("token")
	ts := &s.shards[shardOf(tok)]
	ts.mu.Lock()
	delete(ts.tokens, tok)
	ts.mu.Unlock()
	now := time.Now()
	cs := &s.shards[shardOf(id)]
	cs.mu.Lock()
	c := cs.clients[id]
	if c == nil {
		c = &clientRec{}
		cs.clients[id] = c
	}
	if c.firstRevoke.IsZero() {
		c.firstRevoke = now
	}
	c.lastRevoke = now
	c.revokes++
	cs.mu.Unlock()
	w.WriteHeader(http.StatusOK)
	return true
}

// sweep drops tokens that expired without being revoked.
func (s *server) sweep() {
	for range time.Tick(time.Minute) {
		now := time.Now()
		for i := range s.shards {
			sh := &s.shards[i]
			sh.mu.Lock()
			for k, v := range sh.tokens {
				if now.After(v.exp) {
					delete(sh.tokens, k)
				}
			}
			sh.mu.Unlock()
		}
	}
}

// Stats is the answer of /stats. Times are Unix seconds (float).
type Stats struct {
	Now      float64          `json:"now"`
	Requests map[string]int64 `json:"requests"`
	Errors   map[string]int64 `json:"errors"`
	// HandledMedian is the median time the server took per endpoint,
	// injected latency included (the last 200,000 requests).
	HandledMedian map[string]float64 `json:"handled_median_seconds"`
	// Conns is the number of open client connections now; MaxConns the most at once.
	Conns    int64 `json:"conns"`
	MaxConns int64 `json:"max_conns"`
	// Clients seen at the token endpoint, and those with at least one
	// revocation (a finished check).
	Clients        int `json:"clients"`
	ClientsChecked int `json:"clients_checked"`
	// LastFirstCheck is when the last client to finish its first check did
	// so; FirstCheck when the first did.
	FirstCheck     float64 `json:"first_check"`
	LastFirstCheck float64 `json:"last_first_check"`
	// Staleness is now minus the oldest last revocation over checked clients.
	Staleness float64 `json:"staleness_seconds"`
	// Intervals between consecutive token requests of one client since
	// ?since= (Unix seconds): how regularly each org is checked.
	Intervals struct {
		N   int     `json:"n"`
		Min float64 `json:"min"`
		P01 float64 `json:"p01"`
		P50 float64 `json:"p50"`
		P99 float64 `json:"p99"`
		Max float64 `json:"max"`
	} `json:"intervals"`
	// TokensPerClient: fewest and most token requests of one client since the start.
	TokensMin int `json:"tokens_min"`
	TokensMax int `json:"tokens_max"`
}

func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

func (s *server) stats(w http.ResponseWriter, r *http.Request) {
	var since time.Time
	if v := r.URL.Query().Get("since"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			http.Error(w, "since: "+err.Error(), http.StatusBadRequest)
			return
		}
		since = time.Unix(0, int64(f*1e9))
	}
	now := time.Now()
	st := Stats{Now: unix(now), Requests: map[string]int64{}, Errors: map[string]int64{}, HandledMedian: map[string]float64{},
		Conns: s.conns.Load(), MaxConns: s.maxConn.Load(), TokensMin: math.MaxInt}
	for _, e := range endpoints {
		st.Requests[e] = s.count[e].Load()
		st.Errors[e] = s.errors[e].Load()
		st.HandledMedian[e] = s.took[e].median()
	}
	var first, lastFirst, oldest time.Time
	var ds []time.Duration
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for _, c := range sh.clients {
			st.Clients++
			st.TokensMin = min(st.TokensMin, c.tokens)
			st.TokensMax = max(st.TokensMax, c.tokens)
			if c.firstRevoke.IsZero() {
				continue
			}
			st.ClientsChecked++
			if first.IsZero() || c.firstRevoke.Before(first) {
				first = c.firstRevoke
			}
			if c.firstRevoke.After(lastFirst) {
				lastFirst = c.firstRevoke
			}
			if oldest.IsZero() || c.lastRevoke.Before(oldest) {
				oldest = c.lastRevoke
			}
		}
		for _, iv := range sh.intervals {
			if !iv.at.Before(since) {
				ds = append(ds, iv.d)
			}
		}
		sh.mu.Unlock()
	}
	if st.Clients == 0 {
		st.TokensMin = 0
	}
	st.FirstCheck, st.LastFirstCheck = unix(first), unix(lastFirst)
	if !oldest.IsZero() {
		st.Staleness = now.Sub(oldest).Seconds()
	}
	if len(ds) > 0 {
		slices.Sort(ds)
		q := func(p float64) float64 { return ds[min(len(ds)-1, int(p*float64(len(ds))))].Seconds() }
		st.Intervals.N = len(ds)
		st.Intervals.Min, st.Intervals.Max = ds[0].Seconds(), ds[len(ds)-1].Seconds()
		st.Intervals.P01, st.Intervals.P50, st.Intervals.P99 = q(0.01), q(0.5), q(0.99)
	}
	writeJSON(w, http.StatusOK, st)
}

// raiseFileLimit lifts this process's open-file limit as far as it may, so
// that the fake server is never the one that runs out of descriptors.
func raiseFileLimit() {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return
	}
	want := syscall.Rlimit{Cur: 1 << 20, Max: 1 << 20}
	if l.Max > want.Max {
		want = syscall.Rlimit{Cur: l.Max, Max: l.Max}
	}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) != nil { // not root: up to the hard limit
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: l.Max, Max: l.Max})
	}
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("fakeoauth: ")
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	secret := flag.String("secret", "bench-secret", "the client secret every client id must present")
	ttl := flag.Duration("ttl", time.Hour, "access token lifetime (expires_in, exp)")
	idle := flag.Duration("idle-timeout", 10*time.Minute, "how long an idle client connection is kept: longer than the daemon's, so the client decides")
	all := flag.Duration("latency", 0, "latency injected on every endpoint, e.g. 50ms")
	per := map[string]*time.Duration{}
	for _, e := range endpoints {
		per[e] = flag.Duration("latency."+e, -1, "latency of the "+e+" endpoint (default: -latency)")
	}
	flag.Parse()
	host, _, err := net.SplitHostPort(*listen)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		log.Fatalf("-listen %q: loopback addresses only", *listen)
	}
	latency := map[string]time.Duration{}
	for _, e := range endpoints {
		latency[e] = *all
		if *per[e] >= 0 {
			latency[e] = *per[e]
		}
	}
	raiseFileLimit()
	s := newServer(*secret, *ttl, latency)
	go s.sweep()
	mux := http.NewServeMux()
	mux.HandleFunc("/token", s.wrap("token", http.MethodPost, s.handleToken))
	mux.HandleFunc("/introspect", s.wrap("introspect", http.MethodPost, s.handleIntrospect))
	mux.HandleFunc("/userinfo", s.wrap("userinfo", http.MethodGet, s.handleUserinfo))
	mux.HandleFunc("/revoke", s.wrap("revoke", http.MethodPost, s.handleRevoke))
	mux.HandleFunc("/count", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "%d %.6f\n", s.count["revoke"].Load(), unix(time.Now()))
	})
	mux.HandleFunc("/stats", s.stats)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: *idle,
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				n := s.conns.Add(1)
				for {
					m := s.maxConn.Load()
					if n <= m || s.maxConn.CompareAndSwap(m, n) {
						break
					}
				}
			case http.StateClosed, http.StateHijacked:
				s.conns.Add(-1)
			}
		}}
	fmt.Printf("http://%s\n", ln.Addr())
	os.Stdout.Sync()
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
