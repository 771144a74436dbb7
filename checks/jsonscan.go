package checks

import (
	"bytes"
	"encoding/json"
	"math"
	"unicode/utf8"
)

// jsonObject is the top-level members of a JSON object, each value left as
// its raw JSON text (a subslice of the body it was read from). A check reads
// a few members of each answer: scanning once and decoding only those
// members costs a fraction of decoding every member into a map, which is
// what a userinfo answer of thirty members would otherwise cost on every
// check. Lookups give what decoding into map[string]any (numbers as
// json.Number) would have given: exact keys, the last of duplicate keys.
type jsonObject struct {
	body    []byte
	members []jsonMember
}

// jsonMember locates one member in the body: the key with its quotes
// (body[key:keyEnd]) and the raw value (body[val:valEnd]).
type jsonMember struct {
	key, keyEnd, val, valEnd uint32
	// escaped says the key must be decoded to be compared (a backslash, or invalid UTF-8).
	escaped bool
}

// raw returns the raw value of the member named key, nil when absent.
func (o jsonObject) raw(key string) []byte {
	for i := len(o.members) - 1; i >= 0; i-- {
		m := &o.members[i]
		quoted := o.body[m.key:m.keyEnd]
		if !m.escaped {
			if string(quoted[1:len(quoted)-1]) == key {
				return o.body[m.val:m.valEnd]
			}
			continue
		}
		if k, ok := jsonString(quoted); ok && k == key {
			return o.body[m.val:m.valEnd]
		}
	}
	return nil
}

// jsonString decodes a raw JSON string as encoding/json does (escapes
// resolved, invalid UTF-8 replaced); ok is false when raw is not a string.
func jsonString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner), true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// isJSONNumber reports whether raw is a number literal (it is valid JSON).
func isJSONNumber(raw []byte) bool {
	return len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9')
}

// scanObject reads the JSON object at the start of body (after whitespace),
// as json.Decoder.Decode reads a first value: what follows it is not looked
// at. ok is false when body does not start with a valid JSON object; end is
// the offset just after the object. Validity is encoding/json's: RFC 8259
// syntax, any bytes but control characters inside strings, nesting at most
// 10000 deep.
func scanObject(body []byte) (o jsonObject, end int, ok bool) {
	if len(body) > math.MaxUint32 {
		return o, 0, false
	}
	o.body = body
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return o, 0, false
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return o, i + 1, true
	}
	o.members = make([]jsonMember, 0, 12)
	for {
		if i >= len(body) || body[i] != '"' {
			return jsonObject{}, 0, false
		}
		ks := i
		ke, escaped, good := scanString(body, i)
		if !good {
			return jsonObject{}, 0, false
		}
		i = skipSpace(body, ke)
		if i >= len(body) || body[i] != ':' {
			return jsonObject{}, 0, false
		}
		vs := skipSpace(body, i+1)
		ve, good := scanValue(body, vs, 2)
		if !good {
			return jsonObject{}, 0, false
		}
		o.members = append(o.members, jsonMember{key: uint32(ks), keyEnd: uint32(ke), val: uint32(vs), valEnd: uint32(ve),
			escaped: escaped || !utf8.Valid(body[ks+1:ke-1])})
		i = skipSpace(body, ve)
		if i >= len(body) {
			return jsonObject{}, 0, false
		}
		switch body[i] {
		case '}':
			return o, i + 1, true
		case ',':
			i = skipSpace(body, i+1)
		default:
			return jsonObject{}, 0, false
		}
	}
}

// maxJSONDepth is encoding/json's limit on nesting.
const maxJSONDepth = 10000

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanValue returns the offset after the valid value starting at b[i],
// depth being the nesting of the value if it is an object or an array.
func scanValue(b []byte, i, depth int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch c := b[i]; {
	case c == '"':
		end, _, ok := scanString(b, i)
		return end, ok
	case c == '{' || c == '[':
		return scanComposite(b, i, depth)
	case c == '-' || c >= '0' && c <= '9':
		return scanNumber(b, i)
	case c == 't':
		return scanLiteral(b, i, "true")
	case c == 'f':
		return scanLiteral(b, i, "false")
	case c == 'n':
		return scanLiteral(b, i, "null")
	}
	return 0, false
}

func scanComposite(b []byte, i, depth int) (int, bool) {
	if depth > maxJSONDepth {
		return 0, false
	}
	closing := byte(']')
	if b[i] == '{' {
		closing = '}'
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == closing {
		return i + 1, true
	}
	for {
		if closing == '}' {
			if i >= len(b) || b[i] != '"' {
				return 0, false
			}
			end, _, ok := scanString(b, i)
			if !ok {
				return 0, false
			}
			i = skipSpace(b, end)
			if i >= len(b) || b[i] != ':' {
				return 0, false
			}
			i = skipSpace(b, i+1)
		}
		end, ok := scanValue(b, i, depth+1)
		if !ok {
			return 0, false
		}
		i = skipSpace(b, end)
		if i >= len(b) {
			return 0, false
		}
		switch b[i] {
		case closing:
			return i + 1, true
		case ',':
			i = skipSpace(b, i+1)
		default:
			return 0, false
		}
	}
}

// jsonPlain marks the bytes a string holds as they are: not a quote, a
// backslash or a control character.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanString returns the offset after the string starting at b[i] ('"');
// escaped says it holds an escape.
func scanString(b []byte, i int) (end int, escaped, ok bool) {
	j := i + 1
	for {
		for j < len(b) && jsonPlain[b[j]] {
			j++
		}
		if j >= len(b) {
			return 0, false, false
		}
		switch b[j] {
		case '"':
			return j + 1, escaped, true
		case '\\':
			escaped = true
			j++
			if j >= len(b) {
				return 0, false, false
			}
			switch b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j++
			case 'u':
				if j+4 >= len(b) {
					return 0, false, false
				}
				for _, h := range b[j+1 : j+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return 0, false, false
					}
				}
				j += 5
			default:
				return 0, false, false
			}
		default: // a control character
			return 0, false, false
		}
	}
}

// scanNumber returns the offset after the number starting at b[i]:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func scanNumber(b []byte, i int) (int, bool) {
	digits := func(i int) (int, bool) {
		j := i
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		return j, j > i
	}
	if b[i] == '-' {
		i++
	}
	if i >= len(b) {
		return 0, false
	}
	var ok bool
	if b[i] == '0' {
		i++
	} else if i, ok = digits(i); !ok {
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		if i, ok = digits(i + 1); !ok {
			return 0, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i, ok = digits(i); !ok {
			return 0, false
		}
	}
	return i, true
}

func scanLiteral(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, false
	}
	return i + len(lit), true
}
