package configs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
)

// OrgFiles says where the orgs of org_files came from, so that the daemon
// can watch those places and re-read them when they change.
type OrgFiles struct {
	// Patterns are the org_files globs, absolute (resolved against the
	// configuration file's directory), in the order the file lists them.
	Patterns []string
	// Files are the files the patterns matched when the configuration was
	// loaded, absolute, each once, in the order their orgs were read.
	Files []string
}

// orgSource is where an org name was first defined, for duplicate errors.
type orgSource struct {
	file string // as the user sees it; "" for the config file's orgs:
	path string // the org's field path in that file: orgs[3] or [3]
}

func (s orgSource) String() string {
	if s.file == "" {
		return s.path + " of the configuration file"
	}
	return s.path + " of " + s.file
}

// orgFilePatterns reads org_files: a list of globs, each resolved against
// the configuration file's directory. A pattern filepath.Match cannot
// parse is a problem at its index. given is whether org_files lists
// anything, valid or not: then orgs: may be left out.
func (r *reader) orgFilePatterns(root *section) (out []string, given bool) {
	patterns := root.strings("org_files")
	given = len(patterns) > 0 || r.probs.has("org_files")
	for i, p := range patterns {
		path := fmt.Sprintf("org_files[%d]", i)
		if p == "" {
			r.probs.add(path, "empty pattern (a glob such as orgs.d/*.yml)")
			continue
		}
		abs := r.resolve(p)
		if _, err := filepath.Match(abs, ""); err != nil {
			r.probs.add(path, "invalid glob: %v (use *, ? and [...] as in orgs.d/*.yml)", err)
			continue
		}
		out = append(out, abs)
	}
	return out, given
}

// readOrgFiles reads the orgs of every file the patterns match, after the
// orgs of the configuration file itself (whose names are in defined). A
// problem in a file is reported as "FILE: [i].field: message", FILE
// relative to the configuration file's directory when it is below it.
func (r *reader) readOrgFiles(patterns []string, g Global, defined map[string]orgSource) ([]Org, []string) {
	var (
		files []string
		seen  = map[string]bool{}
	)
	for _, p := range patterns {
		// Glob only fails on a bad pattern, refused already.
		matches, _ := filepath.Glob(p)
		for _, m := range matches {
			if !seen[m] && !hidden(m) && m != r.configFile {
				seen[m] = true
				files = append(files, m)
			}
		}
	}
	var out []Org
	scratch := map[string]int{}
	for _, file := range files {
		name := r.display(file)
		// The file's own reader: its problems apart, its paths relative
		// to its directory, everything else as the main file's.
		fr := new(reader)
		*fr = *r
		fr.probs, fr.baseDir = problems{}, filepath.Dir(file)
		items, err := readOrgList(file)
		if err != nil {
			r.probs.add(name, "%v", err)
			continue
		}
		for i, item := range items {
			s := newSection(&fr.probs, fmt.Sprintf("[%d]", i), item)
			if !s.present {
				if item == nil {
					fr.probs.add(s.path, "empty org (remove the dash or fill it in)")
				}
				continue
			}
			// Names are checked here, across files; org only checks one.
			clear(scratch)
			o := fr.org(s, i, g, scratch)
			if o.Name != "" && !fr.probs.has(s.key("name")) {
				if first, dup := defined[o.Name]; dup {
					fr.probs.add(s.key("name"), "duplicate name %q (first used by %s); names must be unique", o.Name, first)
				} else {
					defined[o.Name] = orgSource{file: name, path: s.path}
				}
			}
			out = append(out, o)
		}
		for _, p := range fr.probs.list {
			path := name
			if p.Path != "" {
				path += ": " + p.Path
			}
			r.probs.add(path, "%s", p.Message)
		}
	}
	return out, files
}

// hidden is true for names starting with a dot: editors' swap files and
// the ..data directories of Kubernetes volumes, which a * would match.
func hidden(path string) bool { return strings.HasPrefix(filepath.Base(path), ".") }

// display names file as the user wrote it: relative to the configuration
// file's directory when it is inside it.
func (r *reader) display(file string) string {
	if r.baseDir == "" {
		return file
	}
	rel, err := filepath.Rel(r.baseDir, file)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return file
	}
	return rel
}

// MaxOrgFileBytes bounds one org file, as MaxConfigBytes does the main one.
const MaxOrgFileBytes = MaxConfigBytes

// readOrgList reads an org file: one YAML document holding a list of orgs.
// An empty file is an empty list, so that a file being emptied out is not
// an error. Errors never quote the file's content (it may hold secrets).
func readOrgList(file string) ([]any, error) {
	b, err := readBounded(file, MaxOrgFileBytes)
	if err != nil {
		return nil, err
	}
	var v any
	err = yamlv3.Unmarshal(b, &v)
	if err == nil {
		err = oneDocument(b)
	}
	if err != nil {
		var typeErr *yamlv3.TypeError
		if errors.As(err, &typeErr) {
			return nil, errors.New(describeTypeError(typeErr))
		}
		return nil, err
	}
	switch list := v.(type) {
	case nil:
		return nil, nil
	case []any:
		return list, nil
	default:
		return nil, fmt.Errorf("must be a YAML list of orgs (\"- name: ...\", the entries of orgs:), got %s", kind(v))
	}
}

// WatchedFile reports whether a change to path can change the orgs read
// from org_files: the path matches a pattern or is a file that was read.
// Kubernetes volumes change their files by swapping a ..data symlink in
// the directory, so a change to ..data counts too.
func (f OrgFiles) WatchedFile(path string) bool {
	if filepath.Base(path) == "..data" {
		return true
	}
	if slices.Contains(f.Files, path) {
		return true
	}
	for _, p := range f.Patterns {
		if ok, _ := filepath.Match(p, path); ok && !hidden(path) {
			return true
		}
	}
	return false
}

// Dirs are the directories to watch for org files: the fixed part of every
// pattern (the longest leading directory without glob characters), every
// directory its directory part matches now (customers/*/ of
// customers/*/orgs.yml) and the directory of every matched file, each once.
func (f OrgFiles) Dirs() []string {
	var out []string
	add := func(d string) {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	for _, p := range f.Patterns {
		d := filepath.Dir(p)
		if strings.ContainsAny(d, `*?[\`) {
			for fixed := d; ; {
				fixed = filepath.Dir(fixed)
				if !strings.ContainsAny(fixed, `*?[\`) {
					add(fixed)
					break
				}
			}
			matches, _ := filepath.Glob(d)
			for _, m := range matches {
				if info, err := os.Stat(m); err == nil && info.IsDir() && !hidden(m) {
					add(m)
				}
			}
			continue
		}
		add(d)
	}
	for _, file := range f.Files {
		add(filepath.Dir(file))
	}
	return out
}
