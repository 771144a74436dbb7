package checks_test

import (
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tokenwatch/tokenwatch/checks"
)

// Canaries of the echo table: each with characters that URL encoding and
// base64 change, one non-ASCII (case changes its bytes), none with a plain
// word in it (see TestRedactKeepsWords).
const (
	echoID       = "echo-client:1"
	echoSecret   = "CANARY-S3CR3T+/=cl13nt~7f3a"
	echoPassword = "CANARY pw:ÜnÏ/9b&x"
	echoRefresh  = "CANARY-RT.abc_123-r3fr3sh"
	echoAccess   = "CANARY-AT-00D5e0000009Zb!AQ4AQH3cjv"
)

// secretForms lists what must not survive of secret: its forms (as is,
// base64 in both alphabets padded or not, URL-encoded both ways, upper and
// lower case) and, from each, every fragment of checks.MinFragment bytes.
// It is written apart from the redactor, from the words.
func secretForms(secret string) (forms, fragments []string) {
	forms = []string{secret, strings.ToUpper(secret), strings.ToLower(secret),
		url.QueryEscape(secret), url.PathEscape(secret)}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		forms = append(forms, enc.EncodeToString([]byte(secret)))
	}
	for _, f := range forms {
		for i := 0; i+checks.MinFragment <= len(f); i++ {
			fragments = append(fragments, f[i:i+checks.MinFragment])
		}
	}
	return forms, fragments
}

// basicForms is Basic base64(id:secret) as clients send it, both ways.
func basicForms(id, secret string) []string {
	return []string{
		base64.StdEncoding.EncodeToString([]byte(id + ":" + secret)),
		base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id) + ":" + url.QueryEscape(secret))),
	}
}

// leaks returns the forms and fragments of the secrets found in text, in
// any letter case.
func leaks(text string, secrets ...string) []string {
	lower := strings.ToLower(text)
	var found []string
	for _, s := range secrets {
		forms, fragments := secretForms(s)
		for _, f := range append(forms, fragments...) {
			if strings.Contains(lower, strings.ToLower(f)) {
				found = append(found, f)
			}
		}
	}
	return found
}

// around puts s in the middle of a text at offset at (filler before), with
// more filler after, the way an echo sits in an error description.
func around(s string, at int) string {
	return strings.Repeat("x", at) + s + " and then some more words that follow it"
}

// The 17 "the server echoes the secret back" cases of issue 11, each
// through what the check does with such a text: cut it to the length its
// place allows (200 for an error description or a WWW-Authenticate header,
// 120 for a body, 80 for an HTML title, 40 for Retry-After) and redact it.
// Today's code cut first and then replaced the plain secrets only.
func TestRedactEchoCases(t *testing.T) {
	secrets := []string{echoSecret, echoPassword, echoRefresh, echoAccess}
	newRedactor := func() *checks.Redactor {
		r := checks.NewRedactor(echoPassword, echoRefresh, echoAccess)
		r.AddBasic(echoID, echoSecret)
		return r
	}
	unknownBearer := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJvdGhlciJ9.c2lnbmF0dXJlLW9mLWFub3RoZXI"
	unknownBasic := base64.StdEncoding.EncodeToString([]byte("someone:else-entirely"))
	cases := []struct {
		name string
		text string
		cut  int      // 0: not cut
		also []string // other values that must not survive
	}{
		{"plain", "invalid_client: bad secret " + echoSecret + " for " + echoID, 0, nil},
		{"cut at 200 inside the secret", around(echoSecret, 190), 200, nil},
		{"cut at 120 inside the password", around(echoPassword, 112), 120, nil},
		{"cut at 80 inside the refresh token", around(echoRefresh, 70), 80, nil},
		{"cut at 40 inside the access token", around(echoAccess, 28), 40, nil},
		{"base64 of id:secret", "Authorization: Basic " + basicForms(echoID, echoSecret)[0] + " refused", 0, basicForms(echoID, echoSecret)},
		{"base64 of urlencoded id:secret, cut", around(basicForms(echoID, echoSecret)[1], 180), 200, basicForms(echoID, echoSecret)},
		{"base64 of the secret", "got " + base64.StdEncoding.EncodeToString([]byte(echoPassword)) + " and " +
			base64.RawURLEncoding.EncodeToString([]byte(echoSecret)), 0, nil},
		{"query-escaped", "POST body was client_secret=" + url.QueryEscape(echoSecret) + "&password=" + url.QueryEscape(echoPassword), 0, nil},
		{"path-escaped, in a redirect URL", "redirecting to https://idp.example/login/" + url.PathEscape(echoPassword) + "/" + url.PathEscape(echoRefresh), 0, nil},
		{"upper-cased", "INVALID GRANT FOR " + strings.ToUpper(echoPassword) + " AND " + strings.ToUpper(echoRefresh), 0, nil},
		{"lower-cased", "refresh token " + strings.ToLower(echoRefresh) + " revoked; secret " + strings.ToLower(echoSecret), 0, nil},
		{"fragment at the start", "secret begins CANARY-S3C and is wrong", 0, []string{"CANARY-S3C"}},
		{"fragment in the middle", "token ends in abc_123-r3f, expired", 0, []string{"abc_123-r3f"}},
		{"unknown Bearer credential", "Authorization: Bearer " + unknownBearer + " is not valid", 0, []string{unknownBearer[:20], unknownBearer[30:50]}},
		{"unknown Basic credential", `header "Basic ` + unknownBasic + `" was refused`, 0, []string{unknownBasic[:12]}},
		{"Bearer credential cut at 256", strings.Repeat("y", 240) + "Bearer " + echoAccess + "-more", 256, nil},
	}
	if len(cases) != 17 {
		t.Fatalf("%d cases, want the issue's 17", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRedactor()
			var got string
			if tc.cut > 0 {
				got = r.Cut(tc.text, tc.cut)
				if most := tc.cut + len("...") + len(checks.Redacted); len(got) > most {
					t.Errorf("cut to %d bytes, want at most %d", len(got), most)
				}
			} else {
				got = r.Text(tc.text)
			}
			if found := leaks(got, secrets...); len(found) > 0 {
				t.Errorf("leaks %q in %q", found, got)
			}
			for _, v := range tc.also {
				if strings.Contains(strings.ToLower(got), strings.ToLower(v)) {
					t.Errorf("leaks %q in %q", v, got)
				}
			}
			if !strings.Contains(got, checks.Redacted) {
				t.Errorf("no redaction mark in %q", got)
			}
		})
	}
}

// Redaction leaves what is not a secret alone: auth-params of challenges,
// the words around the secrets, short values, and the plain words a secret
// happens to contain when they stand alone.
func TestRedactKeepsTheRest(t *testing.T) {
	r := checks.NewRedactor("CANARY-SECRET+/=client~7f3a", "abc", "summer")
	for _, tc := range []struct{ in, want string }{
		{`Bearer realm="api", error="invalid_token", error_description="expired"`, `Bearer realm="api", error="invalid_token", error_description="expired"`},
		{`Basic realm="idp"`, `Basic realm="idp"`},
		{"Bearer token required", "Bearer token required"},
		{"client_secret_basic is configured", "client_secret_basic is configured"},
		{"abc is too short to redact", "abc is too short to redact"},
		{"answered 401: invalid_client (bad CANARY-SECRET+/=client~7f3a)", "answered 401: invalid_client (bad " + checks.Redacted + ")"},
		{"check the client secret", "check the client secret"},
		{"Secret rejected", "Secret rejected"},
		// Not plain words: capitals, digits or joined to more of the secret.
		{"SECRET rejected", checks.Redacted + " rejected"},
		{"client~7f rejected", checks.Redacted + " rejected"},
		{"CANARY-SECRET rejected", checks.Redacted + " rejected"},
		{"the client is clients", "the client is clients"},
		{"password-grant and client_secret_basic", "password-grant and client_secret_basic"},
		{"x-client~7f3a", "x-" + checks.Redacted},
		// A whole secret is redacted even when it is a plain word.
		{"password summer was wrong", "password " + checks.Redacted + " was wrong"},
		{"Summer", checks.Redacted},
		{"Bearer abc.def-ghi_jkl==, more", "Bearer " + checks.Redacted + ", more"},
		{"authorization=Basic+dXNlcjpwYXNzd29yZA%3D%3D", "authorization=Basic+" + checks.Redacted + "%3D%3D"},
	} {
		if got := r.Text(tc.in); got != tc.want {
			t.Errorf("Text(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Server text reaches terminals, logs and pages: no control or escape
// character survives, and none can hide a secret.
func TestRedactStripsControlsAndEscapes(t *testing.T) {
	r := checks.NewRedactor(echoSecret)
	for _, tc := range []struct{ in, want string }{
		{"ok\x1b[2J\x1b[H\x1b]0;pwned\x07verdict: HEALTHY", "okverdict: HEALTHY"},
		{"title\x1b]2;fake title\x1b\\ end", "title end"},
		{"line one\nverdict: HEALTHY\r\n", "line one verdict: HEALTHY  "},
		{"bell\x07 nul\x00 del\x7f c1\u0085\u009b31m csi", "bell nul del c1 csi"},
		{"bidi \u202eevil\u202c zero\u200bwidth", "bidi evil zerowidth"},
		{"bad utf8 \xff\xfe end", "bad utf8 \ufffd\ufffd end"},
		{"hidden CANARY-\x1b[0mS3CR3T+/=cl\u200b13nt~7f3a here", "hidden " + checks.Redacted + " here"},
		{"tab\tseparated", "tab separated"},
	} {
		if got := r.Text(tc.in); got != tc.want {
			t.Errorf("Text(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	var nilRedactor *checks.Redactor
	if got := nilRedactor.Cut("\x1b[31mred\x1b[0m Bearer abcdefghij", 100); got != "red Bearer "+checks.Redacted {
		t.Errorf("nil redactor: %q", got)
	}
}

func TestRedactCut(t *testing.T) {
	r := checks.NewRedactor(echoSecret)
	if got := r.Cut("short", 10); got != "short" {
		t.Errorf("Cut(short) = %q", got)
	}
	if got := r.Cut("0123456789abc", 10); got != "0123456789..." {
		t.Errorf("Cut = %q", got)
	}
	// A mark is never cut in half, and a character never split.
	if got := r.Cut("abcd "+echoSecret+" tail", 8); got != "abcd "+checks.Redacted+"..." {
		t.Errorf("Cut inside a mark = %q", got)
	}
	if got := r.Cut("ééééé", 3); got != "é..." {
		t.Errorf("Cut inside a character = %q", got)
	}
	// A long body: only its start is redacted and kept.
	long := strings.Repeat("z", 100) + echoSecret + strings.Repeat("z", 1<<20)
	if got := r.Cut(long, 110); len(got) > 110+len(checks.Redacted)+3 || strings.Contains(got, "CANARY") {
		t.Errorf("Cut(long) = %q", got)
	}
}

// FuzzRedact: whatever the secret and the text around it, no whole form of
// the secret (as is, in any case, base64, URL-encoded) survives Text or
// Cut, nor does a control character, and nothing panics.
func FuzzRedact(f *testing.F) {
	f.Add("CANARY-S3CR3T+/=cl13nt~7f3a", "before ", " after", 40)
	f.Add("pässwörd-9", "\x1b[31m", "\n", 5)
	f.Add("abcd", "Bearer ", "", 0)
	f.Fuzz(func(t *testing.T, secret, before, after string, n int) {
		if len(secret) < checks.MinFragment || strings.ContainsAny(secret, "<>") || !utf8.ValidString(secret) {
			return
		}
		r := checks.NewRedactor(secret)
		forms, _ := secretForms(secret)
		for _, form := range forms {
			text := before + form + after
			for _, got := range []string{r.Text(text), r.Cut(text, n%512)} {
				for _, f := range forms {
					if strings.Contains(strings.ToLower(got), strings.ToLower(f)) {
						t.Fatalf("form %q of %q survives in %q", f, secret, got)
					}
				}
				for _, c := range got {
					if c < 0x20 || c == 0x7f || c >= 0x80 && c <= 0x9f {
						t.Fatalf("control character %U survives in %q", c, got)
					}
				}
			}
		}
	})
}

// Nothing to redact: the text comes back as is, without allocating.
func TestRedactCleanTextDoesNotAllocate(t *testing.T) {
	r := checks.NewRedactor(echoSecret, echoPassword, echoRefresh, echoAccess)
	text := "Token obtained, introspection active, resource call accepted; expires 2026-01-02T15:04:05Z (in 1h59m0s, from introspection)."
	if n := testing.AllocsPerRun(100, func() { _ = r.Text(text) }); n != 0 {
		t.Errorf("%v allocations per clean text", n)
	}
}

// BenchmarkRedact measures what redaction costs a check: the secrets of
// the check (a JWT access token, on top of the target's client secret,
// password and refresh token, which a checker computes once) and the
// texts of a healthy result ("check"); the same with every secret computed
// anew ("new"); one clean text ("text").
func BenchmarkRedact(b *testing.B) {
	jwt := "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0." + base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat(`{"sub":"svc","scope":"api web"}`, 10))) +
		"." + base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("s", 256)))
	res := checks.Result{
		Explanation: "Token obtained, introspection active, resource call accepted; expires 2026-01-02T15:04:05Z (in 1h59m0s, from introspection).",
		Steps: []checks.StepResult{
			{URL: "https://acme.my.salesforce.com/services/oauth2/token", Detail: "token obtained (token_type Bearer, no expires_in, issued_at 1767225600123)"},
			{URL: "https://acme.my.salesforce.com/services/oauth2/introspect", Detail: "answered active: true (exp 2026-01-02T15:04:05Z, token_type access_token)"},
			{URL: "https://acme.my.salesforce.com/services/oauth2/userinfo", Detail: "answered 200: the token works"},
			{URL: "https://acme.my.salesforce.com/services/oauth2/revoke", Detail: "answered 200: revoked"},
		},
		Token: checks.TokenFacts{Scope: "api web refresh_token", Username: "integration@acme.example", Subject: "005000000000001", ClientID: "3MVG9abc", TokenType: "access_token"},
	}
	tg := checks.Target{Client: checks.Client{ID: echoID, Secret: echoSecret}, Grant: checks.Grant{Password: echoPassword, RefreshToken: echoRefresh}}
	b.Run("check", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			secrets := []string{echoSecret, echoPassword, echoRefresh, jwt}
			r := checks.NewCheckRedactorForTest(&tg, &secrets)
			out := res
			out.Steps = append([]checks.StepResult(nil), res.Steps...)
			r.Result(&out)
			checks.ReleaseRedactorForTest(r)
		}
	})
	b.Run("new", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r := checks.NewRedactor(echoPassword, echoRefresh, jwt)
			r.AddBasic(echoID, echoSecret)
			out := res
			out.Steps = append([]checks.StepResult(nil), res.Steps...)
			r.Result(&out)
		}
	})
	b.Run("text", func(b *testing.B) {
		r := checks.NewRedactor(echoPassword, echoRefresh, jwt)
		r.AddBasic(echoID, echoSecret)
		b.ReportAllocs()
		b.SetBytes(int64(len(res.Explanation)))
		for b.Loop() {
			_ = r.Text(res.Explanation)
		}
	})
}
