package agent

import (
	"fmt"
	"hash/fnv"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/tokenwatch/tokenwatch/configs"
)

// maxCronSpread bounds how far a cron-spec run is delayed, so "0 9 * * *"
// still runs around nine.
const maxCronSpread = time.Minute

// spreadSchedule parses spec and places the org's runs at a fixed offset
// derived from its name, so a thousand orgs on "@every 1m" do not all fire
// in the same second, and each org keeps its phase across restarts.
func spreadSchedule(spec, org string) (cron.Schedule, error) {
	s, err := configs.ParseSchedule(spec)
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %w", spec, err)
	}
	h := fnv.New64a()
	h.Write([]byte(org))
	sum := h.Sum64()
	if every, ok := s.(cron.ConstantDelaySchedule); ok {
		period := every.Delay
		if period <= 0 {
			period = time.Second
		}
		return gridSchedule{period: period, offset: time.Duration(sum % uint64(period))}, nil
	}
	// Estimate the interval from two consecutive runs.
	now := time.Now()
	first := s.Next(now)
	span := s.Next(first).Sub(first)
	if span > maxCronSpread {
		span = maxCronSpread
	}
	if span <= 0 {
		return s, nil
	}
	return offsetSchedule{inner: s, offset: time.Duration(sum % uint64(span))}, nil
}

// gridSchedule fires at every k*period + offset since the Unix epoch.
type gridSchedule struct {
	period, offset time.Duration
}

func (g gridSchedule) Next(t time.Time) time.Time {
	n := t.UnixNano() - int64(g.offset)
	k := n/int64(g.period) + 1
	if n < 0 && n%int64(g.period) != 0 {
		k--
	}
	return time.Unix(0, k*int64(g.period)+int64(g.offset)).In(t.Location())
}

// offsetSchedule delays every run of a cron schedule by a fixed offset.
type offsetSchedule struct {
	inner  cron.Schedule
	offset time.Duration
}

func (o offsetSchedule) Next(t time.Time) time.Time {
	return o.inner.Next(t.Add(-o.offset)).Add(o.offset)
}

// intervalRuns is how many consecutive runs scheduleInterval looks at: more
// than a week of a once-a-weekday schedule, so its weekend gap counts.
const intervalRuns = 8

// scheduleInterval is the longest gap between consecutive runs of spec over
// its next few runs: how long the org may go without a check. 0 for a spec
// that does not parse.
func scheduleInterval(spec string) time.Duration {
	s, err := configs.ParseSchedule(spec)
	if err != nil {
		return 0
	}
	if every, ok := s.(cron.ConstantDelaySchedule); ok {
		return every.Delay
	}
	var longest time.Duration
	// UTC, as the scheduler runs (cron.WithLocation), so no DST change skews a gap.
	prev := s.Next(time.Now().UTC())
	for range intervalRuns {
		next := s.Next(prev)
		if next.IsZero() {
			break
		}
		longest = max(longest, next.Sub(prev))
		prev = next
	}
	return longest
}
