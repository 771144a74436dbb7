package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// logRecorder is a slog.Handler that keeps every record, to check warnings.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }

func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}

// find returns the attributes of the first record at level with message msg.
func (l *logRecorder) find(level slog.Level, msg string) (map[string]string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.records {
		if r.Level != level || r.Message != msg {
			continue
		}
		attrs := map[string]string{}
		r.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value.String()
			return true
		})
		return attrs, true
	}
	return nil, false
}

func open(t *testing.T, dir string, logs *logRecorder) *Store {
	t.Helper()
	s, err := Open(dir, slog.New(logs))
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

type value struct {
	Token string `json:"token"`
	N     int    `json:"n"`
}

func TestNilStoreIsANoOp(t *testing.T) {
	var s *Store
	if err := s.Put(Results, "org", value{N: 1}); err != nil {
		t.Errorf("Put: %v", err)
	}
	var v value
	if found, err := s.Get(Results, "org", &v); found || err != nil {
		t.Errorf("Get = %v, %v; want false, nil", found, err)
	}
	if err := s.Delete(Results, "org"); err != nil {
		t.Errorf("Delete: %v", err)
	}
	if err := s.Each(Results, func(string, []byte) error { t.Error("Each called fn"); return nil }); err != nil {
		t.Errorf("Each: %v", err)
	}
	if s.Path() != "" {
		t.Errorf("Path = %q", s.Path())
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestPutGetDeleteEach(t *testing.T) {
	s := open(t, t.TempDir(), &logRecorder{})
	if s.Path() != filepath.Join(filepath.Dir(s.Path()), "tokenwatch.db") {
		t.Errorf("Path = %s", s.Path())
	}
	for _, k := range []string{"c", "a", "b"} {
		if err := s.Put(RefreshTokens, k, value{Token: "t-" + k}); err != nil {
			t.Fatal(err)
		}
	}
	var v value
	if found, err := s.Get(RefreshTokens, "b", &v); !found || err != nil || v.Token != "t-b" {
		t.Errorf("Get b = %v, %v, %+v", found, err, v)
	}
	if found, err := s.Get(RefreshTokens, "absent", &v); found || err != nil {
		t.Errorf("Get absent = %v, %v", found, err)
	}
	// Buckets are separate.
	if found, _ := s.Get(Alerts, "b", &v); found {
		t.Error("key of refresh_tokens found in alerts")
	}
	if err := s.Delete(RefreshTokens, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(RefreshTokens, "never-there"); err != nil {
		t.Errorf("Delete of absent key: %v", err)
	}
	var keys, raws []string
	err := s.Each(RefreshTokens, func(k string, raw []byte) error {
		keys = append(keys, k)
		raws = append(raws, string(raw))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"b", "c"}) {
		t.Errorf("Each keys = %v, want [b c] in order", keys)
	}
	if raws[0] != `{"token":"t-b","n":0}` {
		t.Errorf("raw = %s, want the JSON encoding", raws[0])
	}
}

func TestEachStopsAtFnError(t *testing.T) {
	s := open(t, t.TempDir(), &logRecorder{})
	putMany(t, s, Results, 3)
	stop := errors.New("stop")
	calls := 0
	err := s.Each(Results, func(string, []byte) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Each = %v after %d calls; want fn's error after 1", err, calls)
	}
}

func TestUnknownBucketIsAnError(t *testing.T) {
	s := open(t, t.TempDir(), &logRecorder{})
	for _, b := range []Bucket{"nope", metaBucket} {
		if err := s.Put(b, "k", 1); err == nil {
			t.Errorf("Put(%s) succeeded", b)
		}
		if _, err := s.Get(b, "k", new(int)); err == nil {
			t.Errorf("Get(%s) succeeded", b)
		}
		if err := s.Delete(b, "k"); err == nil {
			t.Errorf("Delete(%s) succeeded", b)
		}
		if err := s.Each(b, func(string, []byte) error { return nil }); err == nil {
			t.Errorf("Each(%s) succeeded", b)
		}
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, nil)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	for _, want := range []string{dir, "pid " + strconv.Itoa(os.Getpid()), "--storage.path"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	s2, err := Open(dir, nil)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	_ = s2.Close()
}

func TestConcurrentPutsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, &logRecorder{})
	const n = 200
	putMany(t, s, Alerts, n)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, &logRecorder{})
	count := 0
	err := s.Each(Alerts, func(k string, _ []byte) error {
		var v value
		if found, err := s.Get(Alerts, k, &v); !found || err != nil || v.Token != "token-"+k {
			return fmt.Errorf("%s: %v, %w, %+v", k, found, err, v)
		}
		count++
		return nil
	})
	if err != nil || count != n {
		t.Errorf("after reopen: %d of %d keys, %v", count, n, err)
	}
}

// TestPutIsCommittedWhenItReturns copies the file of a store still open, as
// a crash would leave it, and finds every acknowledged write in the copy.
func TestPutIsCommittedWhenItReturns(t *testing.T) {
	s := open(t, t.TempDir(), &logRecorder{})
	putMany(t, s, RefreshTokens, 20)
	data, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	crashed := t.TempDir()
	if err := os.WriteFile(filepath.Join(crashed, dbName), data, fileMode); err != nil {
		t.Fatal(err)
	}
	logs := &logRecorder{}
	c := open(t, crashed, logs)
	if _, moved := logs.find(slog.LevelWarn, movedMsg); moved {
		t.Fatal("copy of a live store moved aside")
	}
	for i := range 20 {
		var v value
		if found, err := c.Get(RefreshTokens, key(i), &v); !found || err != nil {
			t.Errorf("%s missing from the copy: %v", key(i), err)
		}
	}
}

func TestFormatVersionWritten(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, &logRecorder{})
	_ = s.Close()
	withBolt(t, s.Path(), func(tx *bolt.Tx) error {
		if got := string(tx.Bucket([]byte(metaBucket)).Get([]byte(formatKey))); got != "1" {
			t.Errorf("format = %q, want %q", got, "1")
		}
		for _, b := range buckets() {
			if tx.Bucket([]byte(b)) == nil {
				t.Errorf("bucket %s not created", b)
			}
		}
		return nil
	})
}

func TestOtherFormatVersionMovedAside(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, &logRecorder{})
	if err := s.Put(Results, "old", value{N: 1}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	withBolt(t, s.Path(), func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(metaBucket)).Put([]byte(formatKey), []byte("0"))
	})
	attrs := expectMovedAside(t, dir)
	if attrs["found_version"] != "0" || attrs["expected_version"] != "1" {
		t.Errorf("warning attributes %v do not say version 0 found, 1 expected", attrs)
	}
}

// A store of a newer tokenwatch (a downgrade) holds good state this version
// cannot read: Open refuses, saying what to do, and leaves the file alone.
func TestNewerFormatVersionRefused(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, &logRecorder{})
	_ = s.Close()
	withBolt(t, s.Path(), func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(metaBucket)).Put([]byte(formatKey), []byte("2"))
	})
	_, err := Open(dir, nil)
	if err == nil || !strings.Contains(err.Error(), "written by a newer tokenwatch (format 2") {
		t.Fatalf("Open of a format 2 store: %v, want the newer-format refusal", err)
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, dbName+".corrupt-*")); len(matches) != 0 {
		t.Fatalf("a newer store was moved aside: %v", matches)
	}
}

func TestUnusableFileMovedAside(t *testing.T) {
	for _, tc := range []struct {
		name string
		file func(t *testing.T) []byte
		// errPart shows which of the defences caught the file.
		errPart string
	}{
		{"random bytes", randomBytes, "invalid"},
		{"truncated", truncated, "panicked"},
		{"zero length", func(*testing.T) []byte { return []byte{} }, "empty"},
		{"failed consistency check", damagedLeaf, "consistency check"},
		{"bolt file of someone else", foreignBolt, "not a tokenwatch store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, dbName), tc.file(t), fileMode); err != nil {
				t.Fatal(err)
			}
			attrs := expectMovedAside(t, dir)
			if !strings.Contains(attrs["err"], tc.errPart) {
				t.Errorf("warning error %q does not contain %q", attrs["err"], tc.errPart)
			}
		})
	}
}

// TestBoltInitialisedFileKept opens a file bolt created but that a crash
// left without the store's first commit: it is completed, not moved aside.
func TestBoltInitialisedFileKept(t *testing.T) {
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, dbName), fileMode, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	logs := &logRecorder{}
	s := open(t, dir, logs)
	if _, moved := logs.find(slog.LevelWarn, movedMsg); moved {
		t.Error("moved aside")
	}
	if err := s.Put(Results, "k", 1); err != nil {
		t.Error(err)
	}
}

func TestMoveAsideKeepsEarlierFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), dbName)
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.FixedZone("x", 3600))
	var moved []string
	for i := range 2 {
		if err := os.WriteFile(path, []byte{byte(i)}, fileMode); err != nil {
			t.Fatal(err)
		}
		m, err := moveAside(path, now)
		if err != nil {
			t.Fatal(err)
		}
		moved = append(moved, m)
	}
	if moved[0] != path+".corrupt-20250304T040607Z" || moved[0] == moved[1] {
		t.Fatalf("moved to %v, want the UTC time and two distinct names", moved)
	}
	for i, m := range moved {
		if b, _ := os.ReadFile(m); !bytes.Equal(b, []byte{byte(i)}) {
			t.Errorf("%s holds %v, want [%d]", m, b, i)
		}
	}
}

func TestPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "data")
	s := open(t, dir, &logRecorder{})
	for path, want := range map[string]os.FileMode{
		dir:                          0o700,
		s.Path():                     0o600,
		filepath.Join(dir, lockName): 0o600,
	} {
		if got := mode(t, path); got != want {
			t.Errorf("%s mode %o, want %o", path, got, want)
		}
	}
	_ = s.Close()

	// An existing file readable by others is restricted, with a warning.
	if err := os.Chmod(s.Path(), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &logRecorder{}
	open(t, dir, logs)
	if got := mode(t, s.Path()); got != 0o600 {
		t.Errorf("mode after reopen %o, want 600", got)
	}
	if _, ok := logs.find(slog.LevelWarn, "storage file was readable by others; restricted to 0600"); !ok {
		t.Error("no warning about the permissions")
	}
}

func TestUncreatableDirectoryIsAnError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, fileMode); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(file, "data"), nil); err == nil || errors.Is(err, ErrLocked) {
		t.Errorf("Open under a file = %v, want a directory error", err)
	}
}

// expectMovedAside opens dir, whose file is unusable, and checks that the
// file was moved aside intact with a warning and that the fresh store works.
// It returns the warning's attributes.
func expectMovedAside(t *testing.T, dir string) map[string]string {
	t.Helper()
	path := filepath.Join(dir, dbName)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logRecorder{}
	s := open(t, dir, logs)

	attrs, ok := logs.find(slog.LevelWarn, movedMsg)
	if !ok {
		t.Fatal("no warning logged")
	}
	matches, _ := filepath.Glob(path + ".corrupt-*")
	if len(matches) != 1 {
		t.Fatalf("moved-aside files %v, want one", matches)
	}
	if !regexp.MustCompile(`\.corrupt-\d{8}T\d{6}Z$`).MatchString(matches[0]) {
		t.Errorf("moved-aside name %s lacks the UTC time", matches[0])
	}
	if moved, _ := os.ReadFile(matches[0]); !bytes.Equal(moved, orig) {
		t.Error("moved-aside file does not hold the original bytes")
	}
	if attrs["path"] != path || attrs["moved_to"] != matches[0] || attrs["err"] == "" {
		t.Errorf("warning attributes %v lack the error, the path or the new path", attrs)
	}

	if err := s.Put(Results, "k", value{N: 7}); err != nil {
		t.Fatal(err)
	}
	var v value
	if found, err := s.Get(Results, "k", &v); !found || err != nil || v.N != 7 {
		t.Errorf("fresh store Get = %v, %v, %+v", found, err, v)
	}
	if found, _ := s.Get(Results, "old", &v); found {
		t.Error("fresh store holds data of the moved-aside file")
	}
	if got := mode(t, path); got != fileMode {
		t.Errorf("fresh file mode %o", got)
	}
	return attrs
}

func randomBytes(*testing.T) []byte {
	r := rand.NewChaCha8([32]byte{1})
	b := make([]byte, 64<<10)
	_, _ = r.Read(b)
	return b
}

// validFile is the file of a store with some hundred entries, several pages.
func validFile(t *testing.T) string {
	t.Helper()
	s := open(t, t.TempDir(), &logRecorder{})
	_ = s.Close()
	withBolt(t, s.Path(), func(tx *bolt.Tx) error {
		for i := range 300 {
			if err := tx.Bucket([]byte(Results)).Put([]byte(key(i)), bytes.Repeat([]byte("x"), 100)); err != nil {
				return err
			}
		}
		return nil
	})
	return s.Path()
}

func truncated(t *testing.T) []byte {
	b, err := os.ReadFile(validFile(t))
	if err != nil {
		t.Fatal(err)
	}
	return b[:len(b)/2]
}

// damagedLeaf garbles the element headers of the results bucket's root page:
// the file opens, but the consistency check fails.
func damagedLeaf(t *testing.T) []byte {
	path := validFile(t)
	var off int
	withBolt(t, path, func(tx *bolt.Tx) error {
		off = int(tx.Bucket([]byte(Results)).Root()) * tx.DB().Info().PageSize
		return nil
	})
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const pageHeader = 16
	for i := off + pageHeader; i < off+pageHeader+24; i++ {
		b[i] = 0x7f
	}
	return b
}

func foreignBolt(t *testing.T) []byte {
	path := filepath.Join(t.TempDir(), "other.db")
	withBolt(t, path, func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("theirs"))
		return err
	})
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withBolt runs fn in a write transaction on the bolt file at path.
func withBolt(t *testing.T, path string, fn func(*bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, fileMode, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// putMany puts n keys concurrently, so they share commits and stay quick.
func putMany(t *testing.T, s *Store, b Bucket, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- s.Put(b, key(i), value{Token: "token-" + key(i), N: i})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func key(i int) string { return fmt.Sprintf("org-%05d", i) }

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Mode().Perm()
}

// TestOutOfResourcesIsNotCorruption keeps a good file in place when the
// process, not the file, is at fault.
func TestOutOfResourcesIsNotCorruption(t *testing.T) {
	emfile := &os.PathError{Op: "open", Path: "x", Err: syscall.EMFILE}
	eacces := &os.PathError{Op: "open", Path: "x", Err: syscall.EACCES}
	if !outOfResources(emfile) || outOfResources(eacces) {
		t.Errorf("outOfResources(EMFILE) = %v, (EACCES) = %v; want true, false", outOfResources(emfile), outOfResources(eacces))
	}
	// Unreachable, not bad: the file stays where it is and Open fails.
	for _, errno := range []syscall.Errno{syscall.EACCES, syscall.EPERM, syscall.EROFS, syscall.EIO, syscall.ENOSPC} {
		if err := (&os.PathError{Op: "open", Path: "x", Err: errno}); !notTheFilesFault(err) {
			t.Errorf("notTheFilesFault(%v) = false, want true", errno)
		}
	}
	if notTheFilesFault(errors.New("invalid database")) {
		t.Error("a bad file counted as unreachable")
	}
}
