package checks

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The readers of answers scan a JSON object once and decode only the
// members asked for (jsonscan.go). These tests hold them to what decoding
// the whole body into map[string]any with json.Number gave, which is what
// they replaced: the reference implementations below are the old code.

func refObject(body []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		if len(bytes.TrimSpace(body)) == 0 {
			return nil, fmt.Errorf("empty body")
		}
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if m == nil {
		return nil, fmt.Errorf("JSON null instead of an object")
	}
	return m, nil
}

func refParseOAuthError(body []byte) *oauthError {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil
	}
	if body[0] == '[' {
		var arr []map[string]any
		if json.Unmarshal(body, &arr) == nil && len(arr) > 0 {
			code, _ := arr[0]["errorCode"].(string)
			msg, _ := arr[0]["message"].(string)
			if code != "" {
				return &oauthError{Code: code, Description: msg}
			}
		}
		return nil
	}
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return nil
	}
	code, _ := m["error"].(string)
	if code == "" {
		return nil
	}
	desc, _ := m["error_description"].(string)
	return &oauthError{Code: code, Description: desc}
}

func refStr(m map[string]any, key string) string {
	switch v := m[key].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	return ""
}

func refNumber(m map[string]any, key string) (float64, bool) {
	var s string
	switch v := m[key].(type) {
	case json.Number:
		s = v.String()
	case string:
		s = strings.TrimSpace(v)
	default:
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

func refBoolean(m map[string]any, key string) (bool, bool) {
	switch v := m[key].(type) {
	case bool:
		return v, true
	case string:
		b, err := strconv.ParseBool(v)
		return b, err == nil
	}
	return false, false
}

func refScope(m map[string]any, key string) string {
	switch v := m[key].(type) {
	case string:
		return v
	case []any:
		parts := make([]string, 0, len(v))
		for _, p := range v {
			if s, ok := p.(string); ok {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, " ")
	}
	return ""
}

func refEpoch(m map[string]any, key string) time.Time {
	f, ok := refNumber(m, key)
	if !ok || f <= 0 {
		return time.Time{}
	}
	if f > 1e12 {
		f /= 1000
	}
	if f >= maxEpoch {
		return time.Time{}
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC()
}

var jsonSeeds = []string{
	``, ` `, `null`, ` null `, `[]`, `"x"`, `12`, `{`, `}`, `{}`, ` {} trailing`, `{} {}`, "\f{}", "{}\f",
	`{"access_token":"00D!AQ.x","token_type":"Bearer","issued_at":"1700000000123","signature":"c2ln","id":"https://x/id/1/2","instance_url":"https://x"}`,
	`{"active":true,"scope":"api web","client_id":"c","username":"u@x","sub":"s","token_type":"access_token","exp":1700007200,"iat":1700000000,"nbf":1700000000}`,
	`{"active":"true","exp":"1700007200","iat":1.7e9,"scope":["a","b",3,null]}`,
	`{"active":false}`, `{"active":null}`, `{"active":"maybe"}`, `{"active":1}`,
	`{"error":"invalid_grant","error_description":"authentication failure"}`,
	`{"error":"invalid_client","error_description":null}`, `{"error":42}`, `{"error":""}`,
	`[{"errorCode":"INVALID_SESSION_ID","message":"Session expired or invalid"}]`, `[{"message":"x"}]`, `[1]`,
	`{"a":1,"a":2}`, `{"error":"x","error":"y"}`, `{"\u0065rror":"escaped key"}`, `{"error":"a","\u0065rror":"b"}`,
	`{"access_token":"t\"q\\\/\u00e9\ud83d\ude00"}`, "{\"access_token\":\"bad \xff utf8\"}", "{\"k\xff\":1}",
	`{"expires_in":3600}`, `{"expires_in":"3600"}`, `{"expires_in":" 3600 "}`, `{"expires_in":-1}`, `{"expires_in":1e400}`,
	`{"expires_in":"NaN"}`, `{"expires_in":"Infinity"}`, `{"expires_in":"0x10"}`, `{"exp":253402300799}`, `{"exp":1e13}`,
	`{"exp":-0}`, `{"exp":0.5}`, `{"exp":12345678901234567890}`, `{"exp":1700000000.25}`,
	`{"nested":{"error":"inner","a":[{"b":"}"}]},"error":"outer"}`, `{"s":"]}{["}`, `{"a":[1,{"b":[2,"\""]}],"c":true}`,
	`{"a":tru}`, `{"a":truee}`, `{"a":01}`, `{"a":1.}`, `{"a":-}`, `{"a" 1}`, `{"a":1,}`, `{,}`, `{"a":[}`, `{"a":{]}`,
	`{"a":"unterminated}`, `{"a":"ctl` + "\x01" + `"}`, ` { "a" : 1 , "b" : [ ] , "c" : { } } `, `{"a":1}x`, `{"a":1}]`,
	`{"preferred_username":"user@example.com","sub":"x","photos":{"picture":"https://x"},"urls":{"a":"b"},"active":true}`,
	`{"a":"\u00"}`, `{"a":"\u00zz"}`, `{"a":"\x"}`, `{"a":"\`, `{"a":"tab` + "\t" + `"}`, `{"a":"\/\b\f\n\r\t"}`,
	`{"a":-0.0e+0}`, `{"a":1E5}`, `{"a":1e}`, `{"a":.5}`, `{"a":+1}`, `{"a":[1 2]}`, `{"a":{"b"}}`, `{"a":{"b":}}`,
	`{"a":[],"b":{},"c":[{}],"d":null}`, `{"a":nul}`, `{"a":falsey}`, `{"a":"x"` + "\u2028" + `}`, "{\"a\":1}\x00",
	"\ufeff{}", "{\u00a0}", `{"a":1}` + "\n\t ", `{"error":"x"}` + "\u00a0", "\u00a0" + `{"error":"x"}`,
}

var jsonKeys = []string{"access_token", "refresh_token", "token_type", "scope", "id", "instance_url", "issued_at",
	"signature", "expires_in", "active", "client_id", "username", "sub", "exp", "iat", "nbf", "error",
	"error_description", "preferred_username", "a", "b", "s", "nested", "k\ufffd", "missing"}

func compareJSON(t *testing.T, body []byte) {
	t.Helper()
	o, err := object(body)
	m, refErr := refObject(body)
	if (err == nil) != (refErr == nil) || err != nil && err.Error() != refErr.Error() {
		t.Fatalf("object(%q): error %v, want %v", body, err, refErr)
	}
	got, want := parseOAuthError(body), refParseOAuthError(body)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("parseOAuthError(%q) = %v, want %v", body, got, want)
	}
	r := &response{body: body}
	if got := r.oauthError(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("response.oauthError(%q) = %v, want %v", body, got, want)
	}
	if err != nil {
		return
	}
	keys := append([]string(nil), jsonKeys...)
	for k := range m {
		keys = append(keys, k)
	}
	for _, k := range keys {
		if got, want := str(o, k), refStr(m, k); got != want {
			t.Fatalf("str(%q, %q) = %q, want %q", body, k, got, want)
		}
		gf, gok := number(o, k)
		wf, wok := refNumber(m, k)
		if gok != wok || gf != wf && !(math.IsNaN(gf) && math.IsNaN(wf)) {
			t.Fatalf("number(%q, %q) = %v %v, want %v %v", body, k, gf, gok, wf, wok)
		}
		gb, gbok := boolean(o, k)
		wb, wbok := refBoolean(m, k)
		if gb != wb || gbok != wbok {
			t.Fatalf("boolean(%q, %q) = %v %v, want %v %v", body, k, gb, gbok, wb, wbok)
		}
		if got, want := scopeString(o, k), refScope(m, k); got != want {
			t.Fatalf("scopeString(%q, %q) = %q, want %q", body, k, got, want)
		}
		if got, want := epoch(o, k), refEpoch(m, k); !got.Equal(want) {
			t.Fatalf("epoch(%q, %q) = %v, want %v", body, k, got, want)
		}
	}
}

// deepSeeds nest arrays at and past encoding/json's limit of 10000.
func deepSeeds() []string {
	nest := func(n int) string {
		return `{"a":` + strings.Repeat("[", n-1) + strings.Repeat("]", n-1) + `,"error":"deep"}`
	}
	return []string{nest(maxJSONDepth), nest(maxJSONDepth + 1)}
}

func TestJSONReadersMatchDecodingIntoAMap(t *testing.T) {
	for _, s := range append(jsonSeeds, deepSeeds()...) {
		compareJSON(t, []byte(s))
	}
}

func FuzzJSONReaders(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { compareJSON(t, body) })
}

func TestJWTClaims(t *testing.T) {
	enc := func(s string) string { return strings.TrimRight(b64url(s), "=") }
	for _, tc := range []struct {
		token string
		ok    bool
		sub   string
	}{
		{"h." + enc(`{"sub":"me","exp":1700000000}`) + ".sig", true, "me"},
		{"h." + enc(`{"sub":"me"}`) + ".", true, "me"},
		{"opaque", false, ""},
		{"ory_at_abc.def", false, ""},
		{"a.b.c.d", false, ""},
		{"h." + enc(`not json`) + ".sig", false, ""},
		{"h.!!!.sig", false, ""},
	} {
		o, ok := jwtClaims(tc.token)
		if ok != tc.ok || str(o, "sub") != tc.sub {
			t.Errorf("jwtClaims(%q) = %q %v, want %q %v", tc.token, str(o, "sub"), ok, tc.sub, tc.ok)
		}
	}
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestFormEncodesAsValues(t *testing.T) {
	for _, kv := range [][]string{
		{},
		{"token", "00D!AQ.x+/= &é"},
		{"grant_type", "client_credentials", "client_id", "basic:app+1", "client_secret", "CANARY:odd+secret%/&=", "scope", "api web"},
		{"b", "2", "a", "", "", "x", "b", "replaced"},
	} {
		f, v := newForm(kv...), url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		if got, want := f.Encode(), v.Encode(); got != want {
			t.Errorf("form %q encodes as %q, want %q", kv, got, want)
		}
		for k := range v {
			if f.Get(k) != v.Get(k) {
				t.Errorf("form %q: Get(%q) = %q, want %q", kv, k, f.Get(k), v.Get(k))
			}
		}
	}
}
