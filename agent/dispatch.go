package agent

import (
	"container/heap"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// The schedule: robfig/cron parses the specs and computes each org's next
// run (Schedule.Next, spread by schedule.go); the agent runs the due checks
// from a heap of next run times with one dispatcher goroutine. An idle org
// is one heap entry, not a goroutine; adding, removing or running an org
// costs O(log n), where robfig/cron's runner sorts all its entries after
// every run it starts and on every entry added.

// entry is one org's place in the timetable.
type entry struct {
	job   *orgJob
	sched cron.Schedule
	// next is when the org's next run is due.
	next time.Time
	// index is the entry's position in the heap; -1 once it is removed
	// (its org was removed or replaced by a reload).
	index int
}

// entryHeap orders entries by due time, then by org name.
type entryHeap []*entry

func (h entryHeap) Len() int { return len(h) }
func (h entryHeap) Less(i, j int) bool {
	if !h[i].next.Equal(h[j].next) {
		return h[i].next.Before(h[j].next)
	}
	return strings.Compare(h[i].job.org.Name, h[j].job.org.Name) < 0
}
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}

// timetable holds the next run of every scheduled org.
type timetable struct {
	mu      sync.Mutex
	entries entryHeap
	// wake tells the dispatcher that an earlier run may be due.
	wake chan struct{}
}

func newTimetable() *timetable { return &timetable{wake: make(chan struct{}, 1)} }

// update removes and adds entries in one step (a reload).
func (t *timetable) update(remove, add []*entry) {
	if len(remove) == 0 && len(add) == 0 {
		return
	}
	t.mu.Lock()
	for _, e := range remove {
		if e.index >= 0 {
			heap.Remove(&t.entries, e.index)
		}
	}
	if len(add) > len(t.entries) {
		// Most of the heap is new (the first configuration): build it in O(n).
		for _, e := range add {
			e.index = len(t.entries)
			t.entries = append(t.entries, e)
		}
		heap.Init(&t.entries)
	} else {
		for _, e := range add {
			heap.Push(&t.entries, e)
		}
	}
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// due returns the earliest entry when it is due at now, with the time it
// was due, and moves the entry to its next run after now. Otherwise it
// returns how long until the earliest entry is due; wait is negative when
// the timetable is empty.
func (t *timetable) due(now time.Time) (e *entry, due time.Time, wait time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.entries) == 0 {
		return nil, time.Time{}, -1
	}
	e = t.entries[0]
	if e.next.After(now) {
		return nil, time.Time{}, e.next.Sub(now)
	}
	due = e.next
	// From now, as robfig/cron does: runs missed by a late dispatcher are
	// not made up.
	e.next = e.sched.Next(now)
	if e.next.IsZero() {
		// A spec that never matches again.
		heap.Remove(&t.entries, 0)
	} else {
		heap.Fix(&t.entries, 0)
	}
	return e, due, 0
}

// scheduled reports whether e is still in the timetable.
func (t *timetable) scheduled(e *entry) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return e.index >= 0
}

// len is the number of scheduled orgs.
func (t *timetable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}

// firstRunSpacing is how far apart the first runs of orgs added together
// are placed on average: 10,000 orgs added at start spread over 20 s rather
// than all running at once, 5 orgs run within 10 ms.
const firstRunSpacing = 2 * time.Millisecond

// firstRunWindow is the window over which the first runs of added orgs
// spread: it grows with their number, up to the org's interval.
func firstRunWindow(added int, interval time.Duration) time.Duration {
	return spreadWindow(firstRunSpacing, added, interval)
}

func spreadWindow(spacing time.Duration, added int, interval time.Duration) time.Duration {
	w := time.Duration(added) * spacing
	if interval > 0 {
		w = min(w, interval)
	}
	return w
}

// firstRunOffset places an org's first run in the window, by its name, so
// that the offset does not depend on the order of the orgs in the file. The
// name's hash is mixed again (splitmix64's finalizer), so that the first
// run's place does not follow the regular runs' offset.
func firstRunOffset(org string, window time.Duration) time.Duration {
	if window <= 0 {
		return 0
	}
	x := nameHash(org)
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return time.Duration(x % uint64(window))
}

// dispatch runs the due checks until Stop: one goroutine for the whole
// timetable, and one per check while it runs.
func (a *Agent) dispatch() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-a.stopped:
			return
		default:
		}
		// UTC: a cron spec without CRON_TZ runs in UTC, as it always has.
		e, due, wait := a.timetable.due(time.Now().UTC())
		if e != nil {
			a.launch(e, due)
			continue
		}
		var fire <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			fire = timer.C
		}
		select {
		case <-a.stopped:
			return
		case <-a.timetable.wake:
		case <-fire:
		}
	}
}

// launch starts the due run of e's org in a concurrency slot, unless the
// org's previous run still goes on (the run is skipped, as robfig/cron's
// SkipIfStillRunning did). The dispatcher itself waits for the slot, so due
// checks start in the order they were due and no goroutine waits for one.
func (a *Agent) launch(e *entry, due time.Time) {
	j := e.job
	if !j.running.CompareAndSwap(false, true) {
		a.logger.Debug("check skipped: the previous run of the org is still going on", "org", j.org.Name)
		return
	}
	a.mu.Lock()
	sem := a.sem
	a.mu.Unlock()
	queued := time.Now()
	select {
	case sem <- struct{}{}:
	case <-a.stopped:
		j.running.Store(false)
		return
	}
	if !a.timetable.scheduled(e) {
		// Removed or replaced by a reload while it waited for its slot.
		<-sem
		j.running.Store(false)
		return
	}
	started := time.Now()
	a.opts.Instruments.CheckStarted(started.Sub(queued))
	a.opts.Instruments.CheckLate(max(started.Sub(due), 0))
	a.tasks.Go(func() {
		defer j.running.Store(false)
		defer func() { <-sem }()
		defer a.opts.Instruments.CheckFinished()
		defer a.recoverCheck(j)
		if _, err := j.check(a.ctx, false); err != nil {
			a.logger.Debug("check not run", "org", j.org.Name, "err", err)
		}
	})
}

// recoverCheck keeps a panicking check from taking the daemon down.
func (a *Agent) recoverCheck(j *orgJob) {
	if r := recover(); r != nil {
		a.logger.Error("check panicked", "org", j.org.Name, "panic", r, "stack", string(debug.Stack()))
	}
}
