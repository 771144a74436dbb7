package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/configs"
)

// watchedDir starts a watcher on dir/orgs.d/*.yml with short debouncing.
func watchedDir(t *testing.T, quiet, maxWait time.Duration) (*orgFileWatcher, string) {
	t.Helper()
	dir := t.TempDir()
	w, err := newOrgFileWatcher(slog.New(slog.DiscardHandler), quiet, maxWait)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { w.Run(stop); close(done) }()
	t.Cleanup(func() { close(stop); <-done; w.Close() })
	w.Watch(configs.OrgFiles{Patterns: []string{filepath.Join(dir, "orgs.d", "*.yml")}}, time.Now().Add(time.Hour))
	return w, dir
}

// signals counts the Changed signals until the watcher stays quiet for d.
func signals(w *orgFileWatcher, d time.Duration) int {
	n := 0
	for {
		select {
		case <-w.Changed():
			n++
		case <-time.After(d):
			return n
		}
	}
}

func TestOrgFileWatcher(t *testing.T) {
	w, dir := watchedDir(t, 100*time.Millisecond, time.Second)
	orgs := filepath.Join(dir, "orgs.d")
	write := func(name string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(orgs, name), []byte("[]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// The directory does not exist yet: its parent is watched until it does.
	if err := os.Mkdir(orgs, 0o700); err != nil {
		t.Fatal(err)
	}
	if n := signals(w, 500*time.Millisecond); n != 1 {
		t.Errorf("creating the directory of the pattern: %d reloads, want 1", n)
	}

	// A burst of writes is one reload.
	for range 5 {
		write("a.yml")
		write("b.yml")
		time.Sleep(10 * time.Millisecond)
	}
	if n := signals(w, 500*time.Millisecond); n != 1 {
		t.Errorf("a burst of writes: %d reloads, want 1", n)
	}

	// A secret file next to the org files counts; hidden files do not.
	write("acme.client-secret")
	if n := signals(w, 500*time.Millisecond); n != 1 {
		t.Errorf("a secret file written: %d reloads, want 1", n)
	}
	write(".a.yml.swp")
	if n := signals(w, 500*time.Millisecond); n != 0 {
		t.Errorf("an editor's swap file: %d reloads, want 0", n)
	}

	// Removing a file is a change.
	if err := os.Remove(filepath.Join(orgs, "b.yml")); err != nil {
		t.Fatal(err)
	}
	if n := signals(w, 500*time.Millisecond); n != 1 {
		t.Errorf("a removed file: %d reloads, want 1", n)
	}
}

// TestOrgFileWatcherMaxWait: a file rewritten without pause still reloads
// once the longest wait has passed.
func TestOrgFileWatcherMaxWait(t *testing.T) {
	w, dir := watchedDir(t, 200*time.Millisecond, 400*time.Millisecond)
	if err := os.Mkdir(filepath.Join(dir, "orgs.d"), 0o700); err != nil {
		t.Fatal(err)
	}
	_ = signals(w, 500*time.Millisecond)
	stop := time.Now().Add(1500 * time.Millisecond)
	got := 0
	for time.Now().Before(stop) {
		if err := os.WriteFile(filepath.Join(dir, "orgs.d", "a.yml"), []byte("[]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		select {
		case <-w.Changed():
			got++
		case <-time.After(50 * time.Millisecond):
		}
	}
	if got == 0 {
		t.Error("writes every 50 ms for 1.5 s never reloaded; the longest wait is 400 ms")
	}
}

// TestOrgFileWatcherChangeDuringLoad: a file written after the load began
// and before the watch started is not lost; one from the future is no
// reason to reload forever.
func TestOrgFileWatcherChangeDuringLoad(t *testing.T) {
	w, dir := watchedDir(t, 50*time.Millisecond, time.Second)
	orgs := filepath.Join(dir, "orgs.d")
	if err := os.Mkdir(orgs, 0o700); err != nil {
		t.Fatal(err)
	}
	_ = signals(w, 300*time.Millisecond)
	files := configs.OrgFiles{Patterns: []string{filepath.Join(orgs, "*.yml")}}

	loadStart := time.Now().Add(-time.Second)
	if err := os.WriteFile(filepath.Join(orgs, "a.yml"), []byte("[]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = signals(w, 300*time.Millisecond) // the event itself
	w.Watch(files, loadStart)
	if n := signals(w, 300*time.Millisecond); n != 1 {
		t.Errorf("a file written while loading: %d reloads, want 1", n)
	}

	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(orgs, "a.yml"), future, future); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(orgs, time.Now().Add(-time.Minute), time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	_ = signals(w, 300*time.Millisecond)
	w.Watch(files, time.Now())
	if n := signals(w, 300*time.Millisecond); n != 0 {
		t.Errorf("a file dated in the future: %d reloads, want 0", n)
	}
}

// TestOrgFileWatcherNewDirectory: a directory that a pattern reaches into
// is watched as soon as it appears, before any reload succeeds.
func TestOrgFileWatcherNewDirectory(t *testing.T) {
	dir := t.TempDir()
	w, err := newOrgFileWatcher(slog.New(slog.DiscardHandler), 50*time.Millisecond, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { w.Run(stop); close(done) }()
	defer func() { close(stop); <-done; w.Close() }()
	w.Watch(configs.OrgFiles{Patterns: []string{filepath.Join(dir, "*", "orgs.yml")}}, time.Now().Add(time.Hour))

	if err := os.Mkdir(filepath.Join(dir, "initech"), 0o700); err != nil {
		t.Fatal(err)
	}
	if n := signals(w, 300*time.Millisecond); n != 1 {
		t.Errorf("a new customer directory: %d reloads, want 1", n)
	}
	if err := os.WriteFile(filepath.Join(dir, "initech", "orgs.yml"), []byte("[]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n := signals(w, 300*time.Millisecond); n != 1 {
		t.Errorf("an org file in it: %d reloads, want 1", n)
	}
}
