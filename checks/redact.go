package checks

import (
	"encoding/base64"
	"net/url"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// Redaction: one function for every way out.
//
// A Redactor knows the secrets in play (credentials, tokens, assertions) and
// removes from a text, in this order:
//
//  1. control and escape characters: C0 controls (tab, newline and carriage
//     return become a space: server text is shown on one line, so it cannot
//     start a line of its own), DEL, C1 controls, whole ANSI escape sequences
//     (CSI, OSC such as a window title, DCS and the like, two-byte escapes),
//     bidirectional and zero-width format characters; invalid UTF-8 becomes
//     U+FFFD. They go first, so that a control character planted inside an
//     echoed secret cannot hide it from step 2;
//  2. every secret in every form a server may echo it in: as is, in base64
//     (standard and URL alphabets, padded or not, and, for credentials, as
//     part of a longer base64 text such as Basic base64(id:secret)),
//     URL-encoded (url.QueryEscape, url.PathEscape), in any letter case, and
//     any fragment of at least MinFragment bytes of one of these forms, so
//     that an echo cut short ("...CANARY-SEC") goes too. One kind of
//     fragment is kept: fewer than MaxWordFragment ASCII letters inside a
//     word of plain lower-case (or capitalized) letters that no digit
//     adjoins, and no whole form itself: a secret that contains "client" or
//     "secret" would otherwise blank out those words in every explanation,
//     and a fragment that is such a word gives away little more than the word;
//  3. every credential of an Authorization scheme, "Bearer <token>" and
//     "Basic <credentials>", whatever its value.
//
// Each run of redacted bytes becomes Redacted. Text and Cut are the
// redaction function; Cut redacts before it truncates, so a cut never
// leaves a piece of a secret that redaction would have caught whole.
//
// The forms are computed once, when a secret is added: each window of
// MinFragment bytes of every form, letters folded to lower case, goes into a
// hash set, and a text is scanned once with a rolling window. A text with
// nothing to redact is returned as is, without allocating. A check's
// redactor adds the tokens of the check to the secrets of the target's
// credentials; its tables are pooled and live for the check only.
type Redactor struct {
	own secretSet
	// base, when set, holds more secrets: the target's, shared between
	// checks and never changed once built.
	base *secretSet
	// src, when set, is a list of secrets that grows while a check runs;
	// sync adds what was appended since the last use.
	src    *[]string
	synced int
	// seen is the union of the bitmaps of own and base, made when own had
	// seenN windows.
	seen  *[bloomBits / 64]uint64
	seenN int
}

// secretSet is what a Redactor knows of some secrets.
type secretSet struct {
	grams gramSet
	short []string // folded forms of MinSecret to MinFragment-1 bytes, matched whole
	words []string // folded forms of MinFragment to MaxWordFragment-1 bytes (plainWord)
	added []string // the secrets added, to skip repeats
	// tokens marks a set of a check's tokens, which are not looked for
	// inside the base64 of a longer text, as credentials are.
	tokens bool
}

const (
	// Redacted replaces each redacted run of a text.
	Redacted = "<redacted>"
	// MinSecret is the length below which a value is not redacted (it
	// would mangle every text), as before.
	MinSecret = 4
	// MinFragment is the length of the shortest fragment of a secret form
	// that is redacted.
	MinFragment = 6
	// MaxWordFragment bounds the fragments of secrets that are kept when
	// they are a plain word (see Redactor).
	MaxWordFragment = 10
)

// NewRedactor returns a redactor of the given secrets; values shorter than
// MinSecret are ignored.
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{}
	r.Add(secrets...)
	return r
}

// Redact is the redaction function in one call: text without control
// characters, secrets in any form or fragment, or credentials. Callers that
// redact several texts with the same secrets keep a Redactor instead.
func Redact(text string, secrets ...string) string {
	return NewRedactor(secrets...).Text(text)
}

// Add adds secrets to the redactor.
func (r *Redactor) Add(secrets ...string) {
	for _, s := range secrets {
		if len(s) >= MinSecret && !r.has(s) {
			r.own.add(s)
		}
	}
}

// AddBasic adds the credentials of HTTP Basic authentication: the secret,
// and base64(id:secret) as sent, both as is and with each part
// form-urlencoded first (RFC 6749 §2.3.1).
func (r *Redactor) AddBasic(id, secret string) {
	if len(secret) < MinSecret {
		return
	}
	r.Add(secret)
	for _, cred := range []string{id + ":" + secret, url.QueryEscape(id) + ":" + url.QueryEscape(secret)} {
		if !r.has(cred) {
			r.own.added = append(r.own.added, cred)
			r.own.grams.reserve(6 * len(cred))
			r.own.addBase64(cred)
		}
	}
}

func (r *Redactor) has(s string) bool {
	return r.own.has(s) || r.base != nil && r.base.has(s)
}

func (s *secretSet) has(v string) bool {
	for _, a := range s.added {
		if a == v {
			return true
		}
	}
	return false
}

// maxShifted is the length above which a secret (a token rather than a
// credential) is not looked for inside the base64 of a longer text.
const maxShifted = 256

// add adds secret v and its forms.
func (s *secretSet) add(v string) {
	// Room for the windows of v, its URL encodings and base64 forms.
	est := 3 * len(v)
	if s.shifted(v) {
		est *= 3
	}
	s.grams.reserve(est)
	s.added = append(s.added, v)
	s.addForm(v)
	if !isASCII(v) {
		// ASCII letters are folded; other letters change bytes with case.
		s.addForm(strings.ToUpper(v))
		s.addForm(strings.ToLower(v))
	}
	if q := url.QueryEscape(v); q != v {
		s.addEscaped(q)
		if !s.tokens {
			s.addBase64(q) // Basic credentials are built of encoded parts
		}
	}
	if p := url.PathEscape(v); p != v {
		s.addEscaped(p)
	}
	s.addBase64(v)
}

// addEscaped adds f, an URL encoding of a secret already added: only its
// windows that cover an escape ("%2F", "+" for a space), the others being
// windows of the secret itself.
func (s *secretSet) addEscaped(f string) {
	if len(f) < MaxWordFragment {
		s.addForm(f)
		return
	}
	last := -MinFragment // the last escaped position
	var g uint64
	for i := 0; i < len(f); i++ {
		c := f[i]
		switch {
		case c == '%' && i+2 < len(f):
			last = i + 2
		case c == '+':
			last = max(last, i)
		}
		g = (g<<8 | uint64(fold(c))) & gramMask
		if i >= MinFragment-1 && last > i-MinFragment {
			s.grams.add(g)
		}
	}
}

func (s *secretSet) shifted(v string) bool { return !s.tokens && len(v) <= maxShifted }

func isASCII(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// addBase64 adds the base64 forms of v: its encodings in both alphabets
// (padded: their windows include the unpadded forms'), and, for a
// credential of up to maxShifted bytes, the part of the encoding after one
// and two leading bytes that does not depend on those bytes, which is how v
// shows inside the base64 of a longer text ("id:" + v for Basic, any id).
func (s *secretSet) addBase64(v string) {
	var buf [1024]byte
	b := buf[:0]
	if n := base64.StdEncoding.EncodedLen(len(v) + 2); n > len(buf) {
		b = make([]byte, 0, n)
	}
	s.addBase64Forms(base64.StdEncoding.AppendEncode(b, []byte(v)))
	if !s.shifted(v) {
		return
	}
	for shift := 1; shift <= 2; shift++ {
		// The first quantum mixes in the leading bytes, the last one the
		// end of v with what would follow it.
		var in [maxShifted + 2]byte
		n := copy(in[shift:], v) + shift
		if e := base64.StdEncoding.AppendEncode(b[:0], in[:n]); len(e) > 8 {
			s.addBase64Forms(e[4 : len(e)-4])
		}
	}
}

// addBase64Forms adds e, in the standard base64 alphabet, and the same in
// the URL alphabet, whose windows differ only where "+" or "/" was.
func (s *secretSet) addBase64Forms(e []byte) {
	s.addFormBytes(e)
	last := -MinFragment // the last position changed
	var g uint64
	for i, c := range e {
		switch c {
		case '+':
			c, last = '-', i
		case '/':
			c, last = '_', i
		}
		g = (g<<8 | uint64(fold(c))) & gramMask
		if i >= MinFragment-1 && last > i-MinFragment {
			s.grams.add(g)
		}
	}
}

func (s *secretSet) addForm(f string) { s.addFormBytes([]byte(f)) }

// addFormBytes adds one form: whole when shorter than MinFragment, else
// its windows of MinFragment bytes.
func (s *secretSet) addFormBytes(f []byte) {
	if len(f) < MinSecret {
		return
	}
	if len(f) < MaxWordFragment {
		list := &s.words
		if len(f) < MinFragment {
			list = &s.short
		}
		for _, x := range *list {
			if len(x) == len(f) && foldEqual(x, f) {
				return
			}
		}
		*list = append(*list, foldString(f))
		if len(f) < MinFragment {
			return
		}
	}
	var g uint64
	for i, c := range f {
		g = (g<<8 | uint64(fold(c))) & gramMask
		if i >= MinFragment-1 {
			s.grams.add(g)
		}
	}
}

// foldEqual reports whether f, folded, is the folded form x.
func foldEqual(x string, f []byte) bool {
	for i := range f {
		if x[i] != fold(f[i]) {
			return false
		}
	}
	return true
}

// foldEqualString reports whether t, folded, is the folded form x (as long).
func foldEqualString(x, t string) bool {
	for i := 0; i < len(t); i++ {
		if x[i] != fold(t[i]) {
			return false
		}
	}
	return true
}

// foldString is f with its ASCII letters lowered: windows, whole forms and
// texts are all compared so (other letters are matched through the upper-
// and lower-case forms of a secret).
func foldString(f []byte) string {
	b := make([]byte, len(f))
	for i, c := range f {
		b[i] = fold(c)
	}
	return string(b)
}

// fold lowers an ASCII letter.
func fold(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

const gramMask = 1<<(8*MinFragment) - 1

// gramSet is an open-addressing hash set of windows of MinFragment bytes
// packed into a uint64 (high bit set, so that no window is the empty slot
// 0), with a bitmap of their hashes in front that turns most lookups of a
// text's windows away at once.
type gramSet struct {
	slots []uint64
	n     int
	seen  *[bloomBits / 64]uint64
}

const (
	gramFlag  = 1 << 63
	bloomLog  = 14
	bloomBits = 1 << bloomLog
)

func hashGram(g uint64) uint64 { return (g | gramFlag) * 0x9E3779B97F4A7C15 }

func (s *gramSet) slot(h uint64) int { return int(h >> 24 & uint64(len(s.slots)-1)) }

func (s *gramSet) bit(h uint64) (word int, mask uint64) {
	b := h >> (64 - bloomLog)
	return int(b / 64), 1 << (b % 64)
}

// reserve makes room for n more windows without growing.
func (s *gramSet) reserve(n int) {
	if 2*(s.n+n) > len(s.slots) {
		s.resize(2 * (s.n + n))
	}
}

func (s *gramSet) add(g uint64) {
	if 2*(s.n+1) > len(s.slots) {
		s.resize(2 * (s.n + 1))
	}
	h := hashGram(g)
	g |= gramFlag
	for i := s.slot(h); ; i = (i + 1) & (len(s.slots) - 1) {
		switch s.slots[i] {
		case g:
			return
		case 0:
			s.slots[i] = g
			s.n++
			w, m := s.bit(h)
			s.seen[w] |= m
			return
		}
	}
}

// resize rehashes into a table of at least n slots (a power of two).
func (s *gramSet) resize(n int) {
	size := 256
	for size < n {
		size *= 2
	}
	old := s.slots
	s.slots = getSlots(size)
	s.n = 0
	if s.seen == nil {
		s.seen = getBloom()
	}
	for _, g := range old {
		if g != 0 {
			s.add(g &^ gramFlag)
		}
	}
	putSlots(old)
}

// The tables of a check's redactor live for that check only and go back to
// these pools when it ends (Redactor.release): kept per org between checks,
// they made most of the daemon's memory at thousands of orgs, and building
// them anew from pooled memory costs a few tens of microseconds a check.
var (
	slotPool  sync.Pool // *[]uint64
	bloomPool sync.Pool // *[bloomBits / 64]uint64
)

// getSlots returns at least n zeroed slots, a power of two as n is, from
// the pool when it holds enough: all of a pooled table, so that the sets
// of the next check rarely grow.
func getSlots(n int) []uint64 {
	if v, ok := slotPool.Get().(*[]uint64); ok && cap(*v) >= n {
		s := (*v)[:cap(*v)]
		clear(s)
		return s
	}
	return make([]uint64, n)
}

func putSlots(s []uint64) {
	if cap(s) > 0 && cap(s) <= maxPooledSlots {
		slotPool.Put(&s)
	}
}

// maxPooledSlots keeps the tables of an unusually long secret (a large
// JWT assertion) out of the pools.
const maxPooledSlots = 1 << 16

func getBloom() *[bloomBits / 64]uint64 {
	if b, ok := bloomPool.Get().(*[bloomBits / 64]uint64); ok {
		clear(b[:])
		return b
	}
	return new([bloomBits / 64]uint64)
}

func putBloom(b *[bloomBits / 64]uint64) {
	if b != nil {
		bloomPool.Put(b)
	}
}

// release hands the set's tables back to the pools; the set is empty after.
func (s *gramSet) release() {
	putSlots(s.slots)
	putBloom(s.seen)
	*s = gramSet{}
}

func (s *gramSet) has(g uint64) bool {
	if s.n == 0 {
		return false
	}
	h := hashGram(g)
	g |= gramFlag
	for i := s.slot(h); ; i = (i + 1) & (len(s.slots) - 1) {
		switch s.slots[i] {
		case g:
			return true
		case 0:
			return false
		}
	}
}

// sync adds the secrets appended to src since the last call.
func (r *Redactor) sync() {
	if r.src == nil || len(*r.src) == r.synced {
		return
	}
	src := *r.src
	r.Add(src[r.synced:]...)
	r.synced = len(src)
}

// bloom returns the bitmap of the windows of own and base; nil when there
// are none.
func (r *Redactor) bloom() *[bloomBits / 64]uint64 {
	switch {
	case r.base == nil || r.base.grams.n == 0:
		return r.own.grams.seen
	case r.own.grams.n == 0:
		return r.base.grams.seen
	}
	if r.seenN != r.own.grams.n {
		if r.seen == nil {
			r.seen = getBloom()
		}
		for i := range r.seen {
			r.seen[i] = r.own.grams.seen[i] | r.base.grams.seen[i]
		}
		r.seenN = r.own.grams.n
	}
	return r.seen
}

// Text is the redaction function: s without control or escape characters,
// without any form or fragment of the secrets, and without the value of
// any Bearer or Basic credential, on one line. A nil Redactor knows no
// secret but does the rest.
func (r *Redactor) Text(s string) string {
	s = stripControls(s)
	spans := r.find(s)
	if len(spans) == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	at := 0
	for _, sp := range spans {
		b.WriteString(s[at:sp.from])
		b.WriteString(Redacted)
		at = sp.to
	}
	b.WriteString(s[at:])
	return b.String()
}

// Cut redacts s (Text) and then truncates it to at most n bytes and "...",
// at a character boundary and never inside a Redacted mark.
func (r *Redactor) Cut(s string, n int) string {
	n = max(n, 0)
	// Only the start of a long text is shown: redact enough of it that
	// every secret overlapping the part kept is whole in what is redacted.
	if limit := 4*n + 4096; len(s) > limit {
		s = s[:limit]
	}
	s = r.Text(s)
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	// A mark cut in half would read as text; keep it whole.
	if i := strings.LastIndex(s[:cut], "<"); i >= 0 && strings.HasPrefix(Redacted, s[i:cut]) && strings.HasPrefix(s[i:], Redacted) {
		cut = i + len(Redacted)
	}
	return s[:cut] + "..."
}

// Result redacts every text of res: the explanation, the fix, each step's
// URL, detail and list of what was sent, and the token facts a server
// reported.
func (r *Redactor) Result(res *Result) {
	if res == nil {
		return
	}
	for _, p := range []*string{&res.Explanation, &res.Fix, &res.Token.Scope, &res.Token.Username,
		&res.Token.Subject, &res.Token.ClientID, &res.Token.TokenType, &res.Token.InstanceURL} {
		*p = r.Text(*p)
	}
	for i := range res.Steps {
		st := &res.Steps[i]
		st.URL = r.Text(st.URL)
		st.Detail = r.Text(st.Detail)
		// Sent names parameters, but may quote what a server said (the
		// token's scope); a list that needs redacting is copied first, as
		// requests may share theirs.
		cloned := false
		for j, s := range st.Sent {
			if t := r.Text(s); t != s {
				if !cloned {
					st.Sent, cloned = slices.Clone(st.Sent), true
				}
				st.Sent[j] = t
			}
		}
	}
}

type redactSpan struct{ from, to int }

// find returns the byte ranges of s to redact, sorted and merged; nil
// when there is nothing to redact.
func (r *Redactor) find(s string) []redactSpan {
	var sets [2]*secretSet
	var seen *[bloomBits / 64]uint64
	if r != nil {
		r.sync()
		sets = [2]*secretSet{&r.own, r.base}
		seen = r.bloom()
	}
	var spans, grams []redactSpan
	var g uint64
	for i := 0; i < len(s); i++ {
		g = (g<<8 | uint64(fold(s[i]))) & gramMask
		if i < 4 {
			continue
		}
		if seen != nil && i >= MinFragment-1 {
			// The bitmap first: it turns nearly every window away.
			if b := hashGram(g) >> (64 - bloomLog); seen[b/64]&(1<<(b%64)) != 0 &&
				(sets[0].grams.has(g) || sets[1] != nil && sets[1].grams.has(g)) {
				if n, from := len(grams), i+1-MinFragment; n > 0 && from <= grams[n-1].to {
					grams[n-1].to = i + 1 // the next window of a run
				} else {
					grams = append(grams, redactSpan{from, i + 1})
				}
			}
		}
		// A scheme name, as a word of its own: "Bearer x", "basic x".
		if g&basicMask == basicGram && (i == 4 || !isWordByte(s[i-5])) ||
			g == bearerGram && (i == 5 || !isWordByte(s[i-6])) {
			if end := credentialEnd(s, i+1); end > 0 {
				spans = append(spans, redactSpan{credentialStart(s, i+1), end})
			}
		}
	}
	for _, sp := range grams {
		if !plainWord(s, sp, sets) {
			spans = append(spans, sp)
		}
	}
	for _, set := range sets {
		if set != nil {
			spans = set.findShort(s, spans)
		}
	}
	return merge(spans)
}

// plainWord reports whether the run of s at sp, all of it fragments of
// secret forms, is kept as it is (see Redactor): no whole form, and, but
// for one punctuation character at either end ("-password-"), fewer than
// MaxWordFragment ASCII letters inside a word of lower-case ASCII letters
// (the first may be a capital) that no digit adjoins.
func plainWord(s string, sp redactSpan, sets [2]*secretSet) bool {
	from, to := sp.from, sp.to
	if isPunct(s[from]) {
		from++
	}
	if to > from && isPunct(s[to-1]) {
		to--
	}
	if to == from || to-from >= MaxWordFragment {
		return false
	}
	for from > 0 && isLetter(s[from-1]) {
		from--
	}
	for to < len(s) && isLetter(s[to]) {
		to++
	}
	if from > 0 && isDigit(s[from-1]) || to < len(s) && isDigit(s[to]) {
		return false
	}
	for i := from; i < to; i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || i == from && 'A' <= c && c <= 'Z') {
			return false
		}
	}
	lower := foldString([]byte(s[sp.from:sp.to]))
	for _, set := range sets {
		if set == nil {
			continue
		}
		for _, f := range set.words {
			if strings.Contains(lower, f) {
				return false
			}
		}
	}
	return true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isPunct reports whether c is ASCII punctuation or a space.
func isPunct(c byte) bool {
	return c < utf8.RuneSelf && c > ' ' && !isLetter(c) && !isDigit(c) || c == ' '
}

// findShort adds the whole matches of the short forms to spans.
func (s *secretSet) findShort(text string, spans []redactSpan) []redactSpan {
	for _, f := range s.short {
		for i := 0; i+len(f) <= len(text); i++ {
			if foldEqualString(f, text[i:i+len(f)]) {
				spans = append(spans, redactSpan{i, i + len(f)})
			}
		}
	}
	return spans
}

// merge sorts spans (few, nearly sorted) and joins those that overlap or touch.
func merge(spans []redactSpan) []redactSpan {
	if len(spans) < 2 {
		return spans
	}
	for i := 1; i < len(spans); i++ {
		for j := i; j > 0 && spans[j].from < spans[j-1].from; j-- {
			spans[j], spans[j-1] = spans[j-1], spans[j]
		}
	}
	out := spans[:1]
	for _, sp := range spans[1:] {
		if last := &out[len(out)-1]; sp.from <= last.to {
			last.to = max(last.to, sp.to)
		} else {
			out = append(out, sp)
		}
	}
	return out
}

var (
	bearerGram = pack("bearer")
	basicGram  = pack("basic")
)

const basicMask = 1<<40 - 1

func pack(w string) uint64 {
	var g uint64
	for i := 0; i < len(w); i++ {
		g = g<<8 | uint64(w[i])
	}
	return g
}

func isWordByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// isToken68 reports whether c may appear in an RFC 7235 token68 (base64,
// base64url and the like), padding aside.
func isToken68(c byte) bool {
	return isWordByte(c) || c == '-' || c == '.' || c == '~' || c == '+' || c == '/'
}

// credentialStart skips the separator after the scheme name that ends at
// i: spaces or tabs, or a form-encoded space ("+" or "%20"), or ": ".
func credentialStart(s string, i int) int {
	for i < len(s) {
		switch {
		case s[i] == ' ' || s[i] == '\t' || s[i] == '+' || s[i] == ':':
			i++
		case strings.HasPrefix(s[i:], "%20"):
			i += 3
		default:
			return i
		}
	}
	return i
}

// notCredentials are words that follow "Bearer" or "Basic" in prose and
// challenges rather than a credential.
var notCredentials = []string{"auth", "authentication", "authorization", "credential", "credentials", "realm", "scheme",
	"token", "tokens", "header", "required"}

// credentialEnd returns the end of the credential after the scheme name
// that ends at i, or 0 when none follows: the name must be followed by a
// separator and a token68 (padding included). An auth-param (realm="x",
// error=invalid_token) is a challenge, not a credential.
func credentialEnd(s string, i int) int {
	if i >= len(s) || isWordByte(s[i]) {
		return 0 // "bearers", "basically"
	}
	start := credentialStart(s, i)
	if start == i {
		return 0
	}
	end := start
	for end < len(s) && isToken68(s[end]) {
		end++
	}
	if end == start {
		return 0
	}
	pad := end
	for pad < len(s) && s[pad] == '=' {
		pad++
	}
	if pad > end && pad == end+1 && pad < len(s) && (isToken68(s[pad]) || s[pad] == '"') {
		return 0 // name=value: an auth-param
	}
	for _, w := range notCredentials {
		if pad == end && strings.EqualFold(s[start:end], w) {
			return 0
		}
	}
	return pad
}

// stripControls removes control and escape characters (see Redactor).
// Text without any, as nearly all is, is returned as is.
func stripControls(s string) string {
	i := 0
	for i < len(s) {
		c := s[i]
		if c < 0x20 || c == 0x7f || c >= 0x80 {
			break
		}
		i++
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\t' || c == '\n' || c == '\r':
			b.WriteByte(' ')
			i++
		case c == 0x1b:
			i = skipEscape(s, i+1)
		case c < 0x20 || c == 0x7f:
			i++
		case c < 0x80:
			b.WriteByte(c)
			i++
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			switch {
			case r == utf8.RuneError && n <= 1:
				b.WriteRune(utf8.RuneError)
			case r == 0x9b: // C1 CSI
				i = skipCSI(s, i+n)
				continue
			case r == 0x9d || r == 0x90 || r == 0x98 || r == 0x9e || r == 0x9f: // OSC, DCS, SOS, PM, APC
				i = skipString(s, i+n)
				continue
			case r >= 0x80 && r <= 0x9f, // other C1
				r >= 0x200b && r <= 0x200f, // zero-width, LRM, RLM
				r >= 0x202a && r <= 0x202e, // bidi embeddings and overrides
				r >= 0x2066 && r <= 0x2069, // bidi isolates
				r == 0xfeff:
			default:
				b.WriteString(s[i : i+n])
			}
			i += n
		}
	}
	return b.String()
}

// skipEscape skips the escape sequence whose ESC precedes i.
func skipEscape(s string, i int) int {
	if i >= len(s) {
		return i
	}
	switch s[i] {
	case '[':
		return skipCSI(s, i+1)
	case ']', 'P', 'X', '^', '_':
		return skipString(s, i+1)
	}
	// ESC, intermediates (0x20-0x2f), final byte (0x30-0x7e).
	for i < len(s) && s[i] >= 0x20 && s[i] <= 0x2f {
		i++
	}
	if i < len(s) && s[i] >= 0x30 && s[i] <= 0x7e {
		i++
	}
	return i
}

// skipCSI skips a control sequence's parameters, intermediates and final byte.
func skipCSI(s string, i int) int {
	for i < len(s) && s[i] >= 0x20 && s[i] <= 0x3f {
		i++
	}
	if i < len(s) && s[i] >= 0x40 && s[i] <= 0x7e {
		i++
	}
	return i
}

// skipString skips a control string (OSC, DCS...) up to and including its
// terminator: BEL, ESC \ or C1 ST; an unterminated one runs to the end.
func skipString(s string, i int) int {
	for i < len(s) {
		switch {
		case s[i] == 0x07:
			return i + 1
		case s[i] == 0x1b && i+1 < len(s) && s[i+1] == '\\':
			return i + 2
		case s[i] == 0x1b:
			return i // an escape that is not ST ends the string and starts its own
		case strings.HasPrefix(s[i:], "\u009c"):
			return i + len("\u009c")
		}
		i++
	}
	return i
}

// targetSecrets returns the secrets of t's credentials (client secrets
// with their Basic forms, password, configured refresh token), to be shared
// by the redactors of a checker's checks.
func targetSecrets(t *Target) *secretSet {
	r := &Redactor{}
	r.AddBasic(t.Client.ID, t.Client.Secret.Reveal())
	r.Add(t.Grant.Password.Reveal(), t.Grant.RefreshToken.Reveal())
	if ic := t.Introspection.Client; ic != nil {
		r.AddBasic(ic.ID, ic.Secret.Reveal())
	}
	return &r.own
}

// newCheckRedactor returns the redactor of one check of t: the secrets of
// t's credentials and secrets, the check's list of the secrets in play
// (tokens, assertions, rotated refresh tokens), followed as it grows. Its
// tables come from pools; release gives them back when the check ends.
func newCheckRedactor(t *Target, secrets *[]string) *Redactor {
	return &Redactor{own: secretSet{tokens: true}, src: secrets, base: targetSecrets(t)}
}

// release hands r's tables back to the pools at the end of a check. r must
// not be used after: it knows no secret any more.
func (r *Redactor) release() {
	if r == nil {
		return
	}
	r.own.grams.release()
	if r.base != nil {
		r.base.grams.release()
	}
	putBloom(r.seen)
	*r = Redactor{}
}

// redactWith makes oe redact what it prints with red (see oauthError.String).
func redactWith(oe *oauthError, red *Redactor) *oauthError {
	if oe != nil {
		oe.red = red
	}
	return oe
}
