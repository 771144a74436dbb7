package fakeclock

import (
	"sync"
	"testing"
	"time"
)

func TestClockStandsStillUntilMoved(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	c := New(t0)
	if first, second := c.Now(), c.Now(); !first.Equal(t0) || !second.Equal(t0) {
		t.Fatalf("Now = %s, then %s, want %s both times", first, second, t0)
	}
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			c.Advance(time.Second)
			_ = c.Now()
		})
	}
	wg.Wait()
	if want := t0.Add(100 * time.Second); !c.Now().Equal(want) {
		t.Fatalf("after 100 concurrent Advance(1s): %s, want %s", c.Now(), want)
	}
	c.Set(t0)
	if !c.Now().Equal(t0) {
		t.Fatalf("after Set: %s, want %s", c.Now(), t0)
	}
}
