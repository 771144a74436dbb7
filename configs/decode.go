package configs

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/url"
	"sort"
	"strings"
	"time"
)

// problems collects Problems while the configuration is read. A path gets
// at most one problem: the first one found (a wrong type, say) explains it,
// and a second ("required") would only be noise.
type problems struct {
	list Problems
	seen map[string]bool
}

func (p *problems) add(path, format string, args ...any) {
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	if p.seen[path] {
		return
	}
	p.seen[path] = true
	p.list = append(p.list, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (p *problems) has(path string) bool { return p.seen[path] }

// section is one YAML mapping being read. Every key read is remembered, so
// done can name the keys nobody asked for: unknown keys are errors.
type section struct {
	probs   *problems
	path    string
	m       map[string]any
	present bool
	read    map[string]bool
}

// newSection wraps v, which came from the key at path; nil means absent.
func newSection(probs *problems, path string, v any) *section {
	s := &section{probs: probs, path: path, read: map[string]bool{}}
	switch m := v.(type) {
	case nil:
	case map[string]any:
		s.m, s.present = m, true
	case map[any]any:
		// yaml produces these for mappings with non-string keys.
		s.m, s.present = make(map[string]any, len(m)), true
		for k, val := range m {
			s.m[fmt.Sprint(k)] = val
		}
	default:
		probs.add(path, "must be a mapping, got %s", kind(v))
	}
	return s
}

// key returns the field path of k inside the section.
func (s *section) key(k string) string {
	if s.path == "" {
		return k
	}
	return s.path + "." + k
}

// get returns the value of k; a null value counts as absent.
func (s *section) get(k string) (any, bool) {
	s.read[k] = true
	v, ok := s.m[k]
	return v, ok && v != nil
}

// str reads a string. The message never quotes the value, because the same
// reader serves secrets.
func (s *section) str(k string) string {
	v, ok := s.get(k)
	if !ok {
		return ""
	}
	str, isStr := v.(string)
	if !isStr {
		s.probs.add(s.key(k), "must be a string, got %s (quote the value)", kind(v))
		return ""
	}
	return str
}

// duration reads a Go duration string; ok is false when absent or invalid.
func (s *section) duration(k string) (d time.Duration, ok bool) {
	v, present := s.get(k)
	if !present {
		return 0, false
	}
	str, isStr := v.(string)
	if !isStr {
		// Named by its type only: the value may hold a secret.
		s.probs.add(s.key(k), "must be a duration with a unit (Go syntax, e.g. 10s or 1h30m), got %s", kind(v))
		return 0, false
	}
	d, err := time.ParseDuration(str)
	if err != nil {
		// Not quoted either: a secret typed under the wrong key is a string too.
		s.probs.add(s.key(k), "invalid duration (use Go syntax, e.g. 10s or 1h30m)")
		return 0, false
	}
	return d, true
}

// integer reads a whole number; ok is false when absent or invalid.
func (s *section) integer(k string) (n int, ok bool) {
	v, present := s.get(k)
	if !present {
		return 0, false
	}
	switch x := v.(type) {
	case int:
		return x, true
	case int64:
		if x >= math.MinInt && x <= math.MaxInt {
			return int(x), true
		}
	case uint64:
		if x <= math.MaxInt {
			return int(x), true
		}
	}
	s.probs.add(s.key(k), "must be a whole number, got %s", kind(v))
	return 0, false
}

// boolean reads true or false; ok is false when absent or invalid.
func (s *section) boolean(k string) (b bool, ok bool) {
	v, present := s.get(k)
	if !present {
		return false, false
	}
	b, isBool := v.(bool)
	if !isBool {
		s.probs.add(s.key(k), "must be true or false, got %s", kind(v))
		return false, false
	}
	return b, true
}

// strings reads a list of strings.
func (s *section) strings(k string) []string {
	v, present := s.get(k)
	if !present {
		return nil
	}
	list, isList := v.([]any)
	if !isList {
		s.probs.add(s.key(k), "must be a list, got %s", kind(v))
		return nil
	}
	out := make([]string, 0, len(list))
	for i, item := range list {
		str, isStr := item.(string)
		if !isStr {
			s.probs.add(fmt.Sprintf("%s[%d]", s.key(k), i), "must be a string, got %s (quote the value)", kind(item))
			continue
		}
		out = append(out, str)
	}
	return out
}

// list reads a list of anything; its items are checked by the caller.
func (s *section) list(k string) ([]any, bool) {
	v, present := s.get(k)
	if !present {
		return nil, false
	}
	list, isList := v.([]any)
	if !isList {
		s.probs.add(s.key(k), "must be a list, got %s", kind(v))
		return nil, false
	}
	return list, true
}

// sub returns the nested mapping at k; an absent one reads as empty.
func (s *section) sub(k string) *section {
	v, _ := s.get(k)
	return newSection(s.probs, s.key(k), v)
}

// keys returns the section's keys in order, for maps with free-form keys.
func (s *section) keys() []string {
	out := make([]string, 0, len(s.m))
	for k := range s.m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// done reports every key that was never read.
func (s *section) done() {
	for _, k := range s.keys() {
		if !s.read[k] {
			s.probs.add(s.key(k), "unknown key")
		}
	}
}

// kind names a YAML value's type in the user's words.
func kind(v any) string {
	switch v.(type) {
	case nil:
		return "nothing"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int, int64, uint64, float64:
		return "a number"
	case []any:
		return "a list"
	case map[string]any, map[any]any:
		return "a mapping"
	case time.Time:
		return "a timestamp"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// Problems never quote a value the user wrote: a secret typed under the
// wrong key, or a URL with a password or a token in its query, would be
// printed by check-config and logged on a failed reload. The helpers below
// turn the errors of the libraries that do quote (net/url, os, cron) into
// what is wrong, without the value.

// withoutPath drops the path an *fs.PathError repeats: a path that could
// not be opened may be a secret typed into a *_file key.
func withoutPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// urlProblem says what is wrong with a URL that url.Parse refused, without
// the parts of it that url's errors quote.
func urlProblem(err error) string {
	var escape url.EscapeError
	var host url.InvalidHostError
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err
	}
	msg := err.Error()
	switch {
	case errors.As(err, &escape):
		return "invalid %-escape (write % as %25)"
	case errors.As(err, &host):
		return "invalid character in the host"
	case strings.HasPrefix(msg, "invalid port"):
		return "invalid port after the host (a number, e.g. :8443)"
	case strings.ContainsAny(msg, "\"'`"):
		// Any other message that quotes: name the kind of problem only.
		return "cannot be parsed"
	}
	return strings.TrimPrefix(msg, "net/url: ")
}

// scheduleProblem says what is wrong with a schedule that cron refused.
// cron's errors end in the fields they could not read (": [*/5 * * *]"),
// or hold them ("failed to parse int from x"): only the part before the
// first colon is kept, and that only when it quotes none of the fields.
func scheduleProblem(spec string, err error) string {
	msg, _, _ := strings.Cut(err.Error(), ": ")
	switch {
	case strings.HasPrefix(msg, "failed to parse int from"):
		return "a field is not a number, a range, a step, a month or weekday name, or *"
	case strings.HasPrefix(msg, "provided bad location"):
		return "unknown time zone in CRON_TZ= or TZ="
	case strings.HasPrefix(msg, "failed to parse duration"):
		return "the @every interval is not a duration"
	}
	for _, f := range strings.Fields(strings.NewReplacer("=", " ", ",", " ", "-", " ", "/", " ").Replace(spec)) {
		if strings.Trim(f, "0123456789") != "" && f != "*" && f != "?" && strings.Contains(msg, f) {
			return "not a schedule cron can read"
		}
	}
	return msg
}
