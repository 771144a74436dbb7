package checks_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/checks"
)

// roundTripFunc answers requests in memory, so a fuzz target can put any
// host, port and scheme in a URL without a listener for each.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// answer is a response to r with the given status, headers and body.
func answer(r *http.Request, status int, header http.Header, body string) *http.Response {
	if header == nil {
		header = http.Header{}
	}
	return &http.Response{StatusCode: status, Status: strconv.Itoa(status) + " " + http.StatusText(status),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: header, Request: r,
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}
}

// discoveryURLs are the documents FuzzDiscovery serves, on a default port,
// an explicit one and a loopback plain-http one.
var discoveryURLs = []string{
	"https://idp.example/.well-known/openid-configuration",
	"https://IdP.example:8443/realms/fz/.well-known/oauth-authorization-server",
	"http://127.0.0.1:4444/.well-known/openid-configuration",
}

// origin is a URL's scheme, host and port (the default one when absent),
// in lower case.
func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Hostname()) + ":" + port
}

// FuzzDiscovery serves a fuzzed discovery document (RFC 8414 / OpenID
// Connect: status, Content-Type, Location, body) and answers every other
// request as a healthy server would. Whatever the document says, no request
// (the credentials of the token, introspection and revocation requests, the
// token of the probe) leaves the document's origin, the check ends in a
// documented outcome other than an internal error, and no text of its
// Result holds the client secret or a control character the document sent.
// (It found that a redirect with an unreadable Location read connect_error.)
func FuzzDiscovery(f *testing.F) {
	documented := documentedOutcomes(f)
	doc := func(base string) string {
		return `{"issuer":"` + base + `","token_endpoint":"` + base + `/oauth2/token","introspection_endpoint":"` + base +
			`/oauth2/introspect","revocation_endpoint":"` + base + `/oauth2/revoke","userinfo_endpoint":"` + base + `/userinfo","jwks_uri":"` + base + `/jwks"}`
	}
	f.Add(uint8(0), 200, "application/json", "", doc("https://idp.example"))
	f.Add(uint8(1), 200, "application/json; charset=utf-8", "", doc("https://idp.example:8443/realms/fz"))
	f.Add(uint8(2), 200, "application/json", "", doc("http://127.0.0.1:4444"))
	f.Add(uint8(0), 200, "application/json", "", doc("https://idp.example:444"))
	f.Add(uint8(0), 200, "application/json", "", doc("https://idp.example@evil.example"))
	f.Add(uint8(0), 200, "application/json", "", `{"token_endpoint":"//evil.example/token","userinfo_endpoint":"/userinfo"}`)
	f.Add(uint8(0), 302, "", "/.well-known/openid-configuration/", "")
	f.Add(uint8(0), 404, "text/html", "", "<html>Not Found</html>")
	f.Add(uint8(0), 200, "application/json", "", `{"token_endpoint":null,"issuer":["x"]}`)
	f.Add(uint8(0), 200, "application/json", "", `{"token_endpoint":"https://idp.example/t\u0000\u001b]0;x\u0007"}`)
	f.Fuzz(func(t *testing.T, which uint8, status int, contentType, location, body string) {
		docURL := discoveryURLs[int(which)%len(discoveryURLs)]
		base, _ := url.Parse(docURL)
		var mu sync.Mutex
		var strays []string
		tokenAsked := false
		rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			var form url.Values
			if r.Body != nil {
				sent, _ := io.ReadAll(r.Body)
				form, _ = url.ParseQuery(string(sent))
			}
			mu.Lock()
			defer mu.Unlock()
			if origin(r.URL) != origin(base) {
				strays = append(strays, r.Method+" "+r.URL.Redacted())
			}
			switch {
			case r.Method == http.MethodGet && r.Header.Get("Authorization") == "":
				h := http.Header{}
				if contentType != "" {
					h.Set("Content-Type", contentType)
				}
				if location != "" {
					h.Set("Location", location)
				}
				return answer(r, fuzzStatus(status), h, body), nil
			case r.Method == http.MethodGet:
				return answer(r, 200, nil, `{"sub":"fz"}`), nil
			case form.Get("grant_type") != "":
				tokenAsked = true
				return answer(r, 200, nil, `{"access_token":"fz-at-1","token_type":"Bearer","expires_in":3600}`), nil
			default:
				return answer(r, 200, nil, `{"active":true,"exp":4102444800}`), nil
			}
		})
		tg := checks.Target{Name: "fz-discovery", Provider: checks.ProviderGeneric, DiscoveryURL: docURL, Timeout: time.Second,
			Client: checks.Client{ID: fzClientID, Secret: fzSecret, AuthMethod: checks.AuthClientSecretBasic},
			Grant:  checks.Grant{Type: checks.GrantClientCredentials}, Probe: checks.ProbeUserinfo, TokenMode: checks.TokenModeFresh}
		res := checks.NewChecker(tg, checks.WithTransport(rt)).Check(context.Background())
		mu.Lock()
		defer mu.Unlock()
		if len(strays) > 0 {
			t.Errorf("requests left the document's origin %s: %q", origin(base), strays)
		}
		if !documented[res.Outcome] {
			t.Errorf("outcome %q is not a documented one", res.Outcome)
		}
		if res.Outcome == checks.OutcomeInternalError {
			t.Errorf("%s from a discovery document: %s", res.Outcome, res.Explanation)
		}
		// Without a token request, the document could not be read: it was
		// refused, or was a redirect (one with a Location no client can
		// follow is a redirect too, not a network failure).
		if !tokenAsked && res.Outcome != checks.OutcomeDiscoveryFailed && res.Outcome != checks.OutcomeRedirect {
			t.Errorf("outcome %s without a token request: %s", res.Outcome, res.Explanation)
		}
		assertNoEcho(t, res, []string{fzSecret})
	})
}
