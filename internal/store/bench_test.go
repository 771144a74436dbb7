package store

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
)

// writers is how many goroutines write at once: as many as the checks the
// agent runs at once by default (configs.DefaultMaxConcurrentChecks).
const writers = 32

// BenchmarkPut measures one durable write (committed and fsynced) with
// writers in parallel, as checks of many orgs finish at once: concurrent
// Puts share commits, so ns/op is the cost per write at scale, not the
// latency of one (which includes bolt's 10ms wait for a batch to fill).
func BenchmarkPut(b *testing.B) {
	s, err := Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	// About 500 bytes of JSON, the size of a result.
	v := struct {
		Outcome     string `json:"outcome"`
		Explanation string `json:"explanation"`
	}{"ok", strings.Repeat("e", 460)}
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(max(1, writers/runtime.GOMAXPROCS(0)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Put(Results, fmt.Sprintf("org-%07d", next.Add(1)), v); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
