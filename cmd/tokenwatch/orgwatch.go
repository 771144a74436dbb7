package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/tokenwatch/tokenwatch/configs"
)

// Debouncing of org file changes: a reload waits until the files have been
// quiet for orgFilesQuiet (an editor, a deployment or Kubernetes' volume
// update touches several files in a row), but never more than orgFilesMaxWait
// after the first change, so a file rewritten without pause still reloads.
const (
	orgFilesQuiet   = 500 * time.Millisecond
	orgFilesMaxWait = 5 * time.Second
)

// orgFileWatcher tells the reload loop when the files of org_files change:
// a matching file written, added, removed or renamed, or a Kubernetes
// volume swapping its ..data symlink. It watches directories, not files,
// so that new files are seen and files replaced by a rename are not lost.
type orgFileWatcher struct {
	logger  *slog.Logger
	fsw     *fsnotify.Watcher
	changed chan struct{}
	quiet   time.Duration
	maxWait time.Duration

	mu      sync.Mutex
	files   configs.OrgFiles
	watched map[string]bool // directories given to fsw
	wanted  []string        // directories holding, or to hold, org files
}

// newOrgFileWatcher starts watching nothing; Watch says what.
func newOrgFileWatcher(logger *slog.Logger, quiet, maxWait time.Duration) (*orgFileWatcher, error) {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	return &orgFileWatcher{
		logger: logger, fsw: fsw, changed: make(chan struct{}, 1),
		quiet: quiet, maxWait: maxWait, watched: map[string]bool{},
	}, nil
}

// Changed receives once the org files changed and then stayed quiet.
func (w *orgFileWatcher) Changed() <-chan struct{} { return w.changed }

// Watch watches the places of files from now on, the org_files of the
// configuration that runs, which was read from loadStart on. A change in
// those directories since then may have been missed by the load and came
// before the watch: it asks for a reload at once.
func (w *orgFileWatcher) Watch(files configs.OrgFiles, loadStart time.Time) {
	w.mu.Lock()
	w.files = files
	w.wanted = files.Dirs()
	w.syncLocked()
	wanted := w.wanted
	w.mu.Unlock()
	if changedSince(wanted, loadStart) {
		w.logger.Debug("org files changed while they were loaded")
		select {
		case w.changed <- struct{}{}:
		default:
		}
	}
}

// changedSince reports whether a directory or an entry of one was
// modified between t and now (a directory's own time changes when an entry
// is added or removed). Times in the future (a file unpacked from another
// machine) do not count: they would reload forever.
func changedSince(dirs []string, t time.Time) bool {
	now := time.Now()
	recent := func(info os.FileInfo) bool {
		m := info.ModTime()
		return !m.Before(t) && !m.After(now)
	}
	for _, d := range dirs {
		if info, err := os.Stat(d); err == nil && recent(info) {
			return true
		}
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if info, err := e.Info(); err == nil && recent(info) {
				return true
			}
		}
	}
	return false
}

// syncLocked brings the watched directories in line with the wanted ones.
// A directory that does not exist yet is waited for in its nearest existing
// parent. A directory that is a symbolic link (a Kubernetes volume mounted
// above it swaps what it points at) is watched in its parent as well.
// Directories are added again each time: a watch ends when the directory
// it was on is deleted, as a swapped Kubernetes volume's old one is.
func (w *orgFileWatcher) syncLocked() {
	next := map[string]bool{}
	for _, d := range w.wanted {
		dir := d
		for {
			info, err := os.Lstat(dir)
			if err == nil {
				if info.Mode()&os.ModeSymlink != 0 {
					next[filepath.Dir(dir)] = true
				}
				next[dir] = true
				break
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	for dir := range next {
		if err := w.fsw.Add(dir); err != nil {
			w.logger.Warn("cannot watch a directory of org_files; reload with SIGHUP after changing its files", "dir", dir, "err", err)
			delete(next, dir)
		}
	}
	for dir := range w.watched {
		if !next[dir] {
			_ = w.fsw.Remove(dir)
		}
	}
	w.watched = next
}

// relevant reports whether a change to path can change the orgs, and
// whether it creates a directory on the way to a wanted one. Besides the
// org files, any other file next to them counts: the secret files an org
// file names are kept there (one Kubernetes Secret per org holds both),
// and a file written after its org file must still reload. Hidden files
// (editors' swap files, Kubernetes' ..2026_... directories) do not count.
func (w *orgFileWatcher) relevant(path string) (change, resync bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	base := filepath.Base(path)
	for _, d := range w.wanted {
		if d == path || strings.HasPrefix(d, path+string(filepath.Separator)) {
			return true, true
		}
		if base == "..data" && filepath.Dir(path) == filepath.Dir(d) {
			// The parent of a symlinked directory swapped its volume.
			return true, true
		}
		if filepath.Dir(path) == d && !strings.HasPrefix(base, ".") {
			// A new directory a pattern reaches into (customers/NEW of
			// customers/*/orgs.yml) is watched at once, whether or not
			// the reload it causes succeeds.
			if info, err := os.Stat(path); err == nil && info.IsDir() && w.patternDir(path) && !slices.Contains(w.wanted, path) {
				w.wanted = append(w.wanted, path)
				return true, true
			}
			return true, false
		}
	}
	return w.files.WatchedFile(path), false
}

// patternDir reports whether dir is a directory a pattern's files are in.
func (w *orgFileWatcher) patternDir(dir string) bool {
	for _, p := range w.files.Patterns {
		if ok, _ := filepath.Match(filepath.Dir(p), dir); ok {
			return true
		}
	}
	return false
}

// Run turns file events into debounced Changed signals until stop closes.
func (w *orgFileWatcher) Run(stop <-chan struct{}) {
	var (
		timer    *time.Timer
		timerC   <-chan time.Time
		deadline time.Time
	)
	for {
		select {
		case <-stop:
			if timer != nil {
				timer.Stop()
			}
			return
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			// An overflowed event queue loses changes: reload to be sure.
			w.logger.Warn("watching org_files failed; reloading to catch up", "err", err)
			timerC, timer, deadline = w.arm(timer, deadline)
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			change, resync := w.relevant(ev.Name)
			if resync {
				w.mu.Lock()
				w.syncLocked()
				w.mu.Unlock()
			}
			if !change {
				continue
			}
			w.logger.Debug("org file changed", "path", ev.Name, "op", ev.Op.String())
			timerC, timer, deadline = w.arm(timer, deadline)
		case <-timerC:
			timerC, timer, deadline = nil, nil, time.Time{}
			select {
			case w.changed <- struct{}{}:
			default: // a reload is already due
			}
		}
	}
}

// arm (re)starts the quiet period, bounded by the deadline set by the
// first change of a burst.
func (w *orgFileWatcher) arm(timer *time.Timer, deadline time.Time) (<-chan time.Time, *time.Timer, time.Time) {
	now := time.Now()
	if deadline.IsZero() {
		deadline = now.Add(w.maxWait)
	}
	wait := min(w.quiet, deadline.Sub(now))
	if timer == nil {
		timer = time.NewTimer(wait)
	} else {
		timer.Reset(wait)
	}
	return timer.C, timer, deadline
}

// Close stops watching.
func (w *orgFileWatcher) Close() error { return w.fsw.Close() }
