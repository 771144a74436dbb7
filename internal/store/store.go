// Package store keeps tokenwatch's durable state (rotated refresh tokens, the
// last result and the alert state of every org) in one embedded, crash-safe
// file, so a restart neither loses a rotated token nor repeats or forgets a
// notification.
//
// The file is a bbolt database in the storage directory, guarded by a lock
// file so that two instances never share it. A file that cannot be used
// (corrupt, truncated, or of another format version) is moved aside and the
// daemon starts with an empty store: losing the state costs a re-login and
// maybe a repeated notification, while refusing to start would stop all
// monitoring.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sys/unix"
)

// ErrLocked is returned, wrapped, when another process holds the storage path.
var ErrLocked = errors.New("storage path in use")

// Bucket names a kind of state; keys within it are org names.
type Bucket string

// The buckets of the store.
const (
	RefreshTokens Bucket = "refresh_tokens" // rotated refresh tokens, by org
	Results       Bucket = "results"        // last result, by org
	Alerts        Bucket = "alerts"         // alert state and pending notifications, by org
)

// FormatVersion is the on-disk format; bump it when a stored shape changes incompatibly.
const FormatVersion = 1

const (
	dbName   = "tokenwatch.db"
	lockName = "lock"
	// metaBucket holds formatKey; it is not a Bucket so callers cannot overwrite it.
	metaBucket = "meta"
	formatKey  = "format"
	// corruptSuffix and corruptTime name a moved-aside file, sortable by time.
	corruptSuffix = ".corrupt-"
	corruptTime   = "20060102T150405Z"
	dirMode       = 0o700
	fileMode      = 0o600
	// openTimeout bounds the wait for bolt's own lock on the file, which only
	// something outside our lock file (another tool, a foreign build) can hold.
	openTimeout = time.Second
	movedMsg    = "storage file unreadable; moved aside, starting with an empty store"
)

// buckets lists every Bucket; a function rather than a variable so that no
// caller can change it.
func buckets() []Bucket { return []Bucket{RefreshTokens, Results, Alerts} }

// Store is the open store. A nil *Store is valid and stores nothing, for
// commands and tests that run without one.
type Store struct {
	db   *bolt.DB
	lock *os.File
	path string

	closeOnce sync.Once
}

// Open opens the store in dir (created 0700 when missing): takes the lock
// file dir/lock, which holds the owner's pid, then opens dir/tokenwatch.db.
// An unusable file is moved aside with a warning; the error is for what the
// user must fix: the path locked by another instance (wrapping ErrLocked),
// or a directory that cannot be created or written.
func Open(dir string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("create storage directory %s: %w", dir, err)
	}
	lock, err := lockDir(dir, logger)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, dbName)
	db, err := openDB(path, logger)
	if err != nil {
		_ = lock.Close()
		return nil, err
	}
	logger.Info("storage opened", "path", path, "format", FormatVersion)
	return &Store{db: db, lock: lock, path: path}, nil
}

// Close closes the file and releases the lock; later calls do nothing.
func (s *Store) Close() error {
	if s == nil {
		return nil
	}
	var err error
	s.closeOnce.Do(func() {
		// The db first: the lock must outlive every write to the file.
		if cerr := s.db.Close(); cerr != nil {
			err = fmt.Errorf("close storage file %s: %w", s.path, cerr)
		}
		// Closing the only descriptor of the lock file releases its flock.
		if cerr := s.lock.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("release storage lock: %w", cerr))
		}
	})
	return err
}

// Path is the file the store is kept in; "" for a nil store.
func (s *Store) Path() string {
	if s == nil {
		return ""
	}
	return s.path
}

// Put stores v, JSON-encoded, under key in b. It is durable (committed and
// fsynced) when Put returns. Concurrent Puts share one commit, so a lone Put
// waits a few milliseconds for company.
func (s *Store) Put(b Bucket, key string, v any) error {
	if s == nil {
		return nil
	}
	if err := b.valid(); err != nil {
		return fmt.Errorf("store put %s/%s: %w", b, key, err)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store put %s/%s: encode value: %w", b, key, err)
	}
	// Batch reruns fn when another write of its batch fails; fn only sets
	// key to data, which is the same however often it runs.
	err = s.db.Batch(func(tx *bolt.Tx) error {
		bk, err := bucket(tx, b)
		if err != nil {
			return err
		}
		return bk.Put([]byte(key), data)
	})
	if err != nil {
		return fmt.Errorf("store put %s/%s: %w", b, key, err)
	}
	return nil
}

// Get decodes the JSON stored under key in b into v; false when key is absent.
func (s *Store) Get(b Bucket, key string, v any) (bool, error) {
	if s == nil {
		return false, nil
	}
	if err := b.valid(); err != nil {
		return false, fmt.Errorf("store get %s/%s: %w", b, key, err)
	}
	found := false
	err := s.db.View(func(tx *bolt.Tx) error {
		bk, err := bucket(tx, b)
		if err != nil {
			return err
		}
		data := bk.Get([]byte(key))
		if data == nil {
			return nil
		}
		found = true
		// Decode inside the transaction: data points into the mapped file
		// and is only valid until the transaction ends.
		if err := json.Unmarshal(data, v); err != nil {
			return fmt.Errorf("decode value: %w", err)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("store get %s/%s: %w", b, key, err)
	}
	return found, nil
}

// Delete removes key from b, durably; an absent key is not an error.
func (s *Store) Delete(b Bucket, key string) error {
	if s == nil {
		return nil
	}
	if err := b.valid(); err != nil {
		return fmt.Errorf("store delete %s/%s: %w", b, key, err)
	}
	err := s.db.Batch(func(tx *bolt.Tx) error {
		bk, err := bucket(tx, b)
		if err != nil {
			return err
		}
		return bk.Delete([]byte(key))
	})
	if err != nil {
		return fmt.Errorf("store delete %s/%s: %w", b, key, err)
	}
	return nil
}

// Each calls fn with every key of b and its raw JSON, in key order, and stops
// at fn's first error. raw is valid only during fn. fn must not write to the
// store: the read transaction it runs in can block a write that grows the file.
func (s *Store) Each(b Bucket, fn func(key string, raw []byte) error) error {
	if s == nil {
		return nil
	}
	if err := b.valid(); err != nil {
		return fmt.Errorf("store each %s: %w", b, err)
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		bk, err := bucket(tx, b)
		if err != nil {
			return err
		}
		return bk.ForEach(func(k, v []byte) error { return fn(string(k), v) })
	})
	if err != nil {
		return fmt.Errorf("store each %s: %w", b, err)
	}
	return nil
}

// valid rejects a bucket the store does not have: a programming error that
// should fail loudly rather than create a bucket nothing ever reads.
func (b Bucket) valid() error {
	if !slices.Contains(buckets(), b) {
		return fmt.Errorf("unknown bucket %q", string(b))
	}
	return nil
}

// bucket is tx's bucket b, which Open created.
func bucket(tx *bolt.Tx, b Bucket) (*bolt.Bucket, error) {
	bk := tx.Bucket([]byte(b))
	if bk == nil {
		return nil, fmt.Errorf("bucket %q missing from the storage file", string(b))
	}
	return bk, nil
}

// lockedError names who holds the storage path and what to do about it.
type lockedError struct{ dir, pid string }

func (e *lockedError) Error() string {
	return fmt.Sprintf("storage path %s is in use by another tokenwatch (pid %s): give each instance its own --storage.path", e.dir, e.pid)
}

func (e *lockedError) Unwrap() error { return ErrLocked }

// lockDir takes dir's lock file and writes our pid in it. bolt locks the db
// file too, but a second instance would only wait on it and then fail
// without saying who holds it; the lock file lets the error name the pid.
func lockDir(dir string, logger *slog.Logger) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, fileMode)
	if err != nil {
		return nil, fmt.Errorf("open storage lock file %s: %w", path, err)
	}
	// LOCK_NB: a second instance must fail at once, not hang at startup.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		pid := readPid(f)
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, &lockedError{dir: dir, pid: pid}
		}
		return nil, fmt.Errorf("lock storage path %s: %w", dir, err)
	}
	restrictMode(path, logger)
	if err := writePid(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("write pid to storage lock file %s: %w", path, err)
	}
	return f, nil
}

// readPid is the pid the lock's holder wrote, or "unknown".
func readPid(f *os.File) string {
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	pid := strings.TrimSpace(string(buf[:n]))
	if _, err := strconv.Atoi(pid); err != nil {
		return "unknown"
	}
	return pid
}

// writePid replaces the lock file's content with our pid. It is not synced:
// it only informs the error of a second instance while we run.
func writePid(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return err
}

// restrictMode makes an existing file 0600: it holds refresh tokens, which
// nobody but the daemon's user should read. A failure is only logged: the
// open that follows says whether the file is usable.
func restrictMode(path string, logger *slog.Logger) {
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm()&^fileMode == 0 {
		return
	}
	if err := os.Chmod(path, fileMode); err != nil {
		logger.Warn("storage file readable by others and cannot be restricted", "path", path, "mode", info.Mode().Perm(), "err", err)
		return
	}
	logger.Warn("storage file was readable by others; restricted to 0600", "path", path, "old_mode", info.Mode().Perm())
}

// unusableError is a storage file that must be moved aside.
type unusableError struct {
	err   error
	attrs []any // extra log attributes
}

func (e *unusableError) Error() string { return e.err.Error() }
func (e *unusableError) Unwrap() error { return e.err }

func unusable(err error, attrs ...any) error { return &unusableError{err: err, attrs: attrs} }

// openDB opens the file at path, moving it aside and starting afresh when it
// cannot be used.
func openDB(path string, logger *slog.Logger) (*bolt.DB, error) {
	db, err := openFile(path, logger)
	var bad *unusableError
	if !errors.As(err, &bad) {
		return db, err
	}
	moved, err := moveAside(path, time.Now())
	if err != nil {
		return nil, fmt.Errorf("move unreadable storage file aside (%w): %w", bad, err)
	}
	logger.Warn(movedMsg, append([]any{"err", bad.err, "path", path, "moved_to", moved}, bad.attrs...)...)
	// The file is gone now, so any error is about the directory, not the data.
	return openFile(path, logger)
}

// openFile creates path or opens the existing file. An *unusableError means
// the existing file must be moved aside.
func openFile(path string, logger *slog.Logger) (*bolt.DB, error) {
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return create(path)
	case err != nil:
		return nil, fmt.Errorf("stat storage file %s: %w", path, err)
	case info.Size() == 0:
		// bolt would take it for a new file, but we never leave one empty:
		// it was cut short by a crash or a full disk.
		return nil, unusable(errors.New("file is empty"))
	}
	restrictMode(path, logger)
	return openExisting(path)
}

// create makes a new file with the buckets and the format version.
func create(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, fileMode, &bolt.Options{Timeout: openTimeout})
	if err != nil {
		return nil, fmt.Errorf("create storage file %s: %w", path, boltLockErr(path, err))
	}
	if err := initialize(db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("initialize storage file %s: %w", path, err)
	}
	// bolt syncs the file but not its directory entry: without this, a crash
	// could lose the new file and with it every write already acknowledged.
	if err := syncDir(filepath.Dir(path)); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// openExisting opens the file, checks its consistency and its format
// version, and adds any missing bucket. bolt panics on some corrupt data;
// the panic is recovered and the file reported unusable.
func openExisting(path string) (db *bolt.DB, err error) {
	var file *os.File
	opts := &bolt.Options{
		Timeout: openTimeout,
		// Keep the descriptor to close it after a panic (see below).
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	}
	defer func() {
		if r := recover(); r != nil {
			// bolt may hold its internal locks after a panic, and DB.Close
			// would wait on them: close the descriptor instead, which drops
			// bolt's flock; the memory mapping leaks, once.
			if file != nil {
				_ = file.Close()
			}
			db, err = nil, unusable(fmt.Errorf("bolt panicked reading the file: %v", r))
		}
	}()
	db, err = bolt.Open(path, fileMode, opts)
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, boltLockErr(path, err)
	}
	if err != nil && (outOfResources(err) || notTheFilesFault(err)) {
		return nil, fmt.Errorf("open storage file %s: %w", path, err)
	}
	if err != nil {
		return nil, unusable(err)
	}
	if err := verify(db); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := initialize(db); err != nil {
		_ = db.Close()
		return nil, unusable(fmt.Errorf("initialize: %w", err))
	}
	return db, nil
}

// outOfResources tells the errors of a process short of descriptors or
// memory, which say nothing about the file: moving it aside would lose good
// state for a passing condition.
func outOfResources(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ENOMEM)
}

// notTheFilesFault tells the errors that say the file cannot be reached, not
// that its content is bad: no permission, a read-only file system, an I/O
// error. Moving the file aside would lose good state (a rotated refresh
// token) for a problem the user must fix.
func notTheFilesFault(err error) bool {
	return errors.Is(err, fs.ErrPermission) || errors.Is(err, unix.EROFS) || errors.Is(err, unix.EIO) ||
		errors.Is(err, unix.ENOSPC)
}

// boltLockErr turns bolt's lock timeout into ErrLocked: something outside
// our lock file holds the db file.
func boltLockErr(path string, err error) error {
	if !errors.Is(err, bolterrors.ErrTimeout) {
		return err
	}
	return fmt.Errorf("storage file %s is locked by another process (stop it, or give this instance its own --storage.path): %w", path, ErrLocked)
}

// verify runs bolt's consistency check and checks the format version: a
// damaged page found now costs a warning, found later a failed write or a
// panic in the middle of a check.
func verify(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		if err := firstError(tx.Check()); err != nil {
			return unusable(fmt.Errorf("consistency check: %w", err))
		}
		return checkFormat(tx)
	})
}

// firstError drains ch, so the checking goroutine ends, and returns the
// first error it sent.
func firstError(ch <-chan error) error {
	var first error
	for err := range ch {
		if first == nil {
			first = err
		}
	}
	return first
}

// checkFormat accepts a file of FormatVersion, or one bolt initialised but
// that a crash left without our first commit (no bucket at all).
func checkFormat(tx *bolt.Tx) error {
	meta := tx.Bucket([]byte(metaBucket))
	if meta == nil {
		if k, _ := tx.Cursor().First(); k == nil {
			return nil
		}
		return unusable(errors.New("no format version: not a tokenwatch store"))
	}
	found := string(meta.Get([]byte(formatKey)))
	if n, err := strconv.Atoi(found); err == nil && n > FormatVersion {
		// A newer tokenwatch wrote it (a downgrade): its state is good, only
		// not readable by this version. Stop rather than discard it.
		return &newerFormatError{found: n}
	}
	if want := strconv.Itoa(FormatVersion); found != want {
		return unusable(fmt.Errorf("format version %q found, %s expected", found, want),
			"found_version", found, "expected_version", FormatVersion)
	}
	return nil
}

// initialize creates the buckets and records the format version, in one
// transaction so that a file never has one without the other.
func initialize(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists([]byte(metaBucket))
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", metaBucket, err)
		}
		if meta.Get([]byte(formatKey)) == nil {
			if err := meta.Put([]byte(formatKey), []byte(strconv.Itoa(FormatVersion))); err != nil {
				return fmt.Errorf("write format version: %w", err)
			}
		}
		for _, b := range buckets() {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		return nil
	})
}

// moveAside renames the file at path to path.corrupt-<UTC time>, keeping it
// for inspection, and returns the new path. It never replaces an earlier
// moved-aside file.
func moveAside(path string, now time.Time) (string, error) {
	base := path + corruptSuffix + now.UTC().Format(corruptTime)
	target := base
	for i := 1; ; i++ {
		_, err := os.Lstat(target)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("stat %s: %w", target, err)
		}
		target = fmt.Sprintf("%s-%d", base, i)
	}
	if err := os.Rename(path, target); err != nil {
		return "", fmt.Errorf("rename %s: %w", path, err)
	}
	// Make the rename durable before a new file takes the old name.
	return target, syncDir(filepath.Dir(path))
}

// syncDir fsyncs directory dir, making the entries created in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open storage directory %s to sync: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync storage directory %s: %w", dir, err)
	}
	return nil
}

// newerFormatError is a store written by a newer tokenwatch.
type newerFormatError struct{ found int }

func (e *newerFormatError) Error() string {
	return fmt.Sprintf("the storage file was written by a newer tokenwatch (format %d; this version reads format %d): "+
		"run that version, or move the file away to start with an empty store", e.found, FormatVersion)
}
