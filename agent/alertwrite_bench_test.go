package agent

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tokenwatch/tokenwatch/checks"
	"github.com/tokenwatch/tokenwatch/configs"
	"github.com/tokenwatch/tokenwatch/internal/fakeclock"
	"github.com/tokenwatch/tokenwatch/internal/store"
)

// BenchmarkAlertsFiringAtOnce measures what it costs when many orgs fail at
// the same moment (their identity provider is down): each check's
// observe fires an alert, which is written durably to the store before it
// is sent. Checks finish on 32 goroutines at once, as under
// max_concurrent_checks: 32. Reported per org (ns/op is per org too).
func BenchmarkAlertsFiringAtOnce(b *testing.B) {
	const orgs, parallel = 2000, 32
	for b.Loop() {
		b.StopTimer()
		w := newStateWriter(openStore(b, b.TempDir()), slog.New(slog.DiscardHandler), nil)
		w.start()
		a := newAlerter(slog.New(slog.DiscardHandler), &sender{}, fakeclock.New(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)).Now, w)
		a.configure(configs.Alerting{FailureThreshold: 1, SuccessThreshold: 1, ResendInterval: time.Minute})
		list := make([]configs.Org, orgs)
		infos := map[string]checks.Info{}
		for i := range list {
			list[i] = configs.Org{Target: checks.Target{Name: fmt.Sprintf("org-%05d", i), TokenMode: "fresh"}}
			infos[list[i].Name] = checks.Info{Name: list[i].Name, Provider: "salesforce", Grant: "password"}
		}
		a.setOrgs(list, infos)
		b.StartTimer()
		var wg sync.WaitGroup
		next := make(chan string, orgs)
		for _, o := range list {
			next <- o.Name
		}
		close(next)
		for range parallel {
			wg.Go(func() {
				for org := range next {
					a.observe(org, inactive(checks.OutcomeTokenInactive))
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		w.close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*orgs), "ns/org")
}

// What putDurable's wait promises: the value is in the store when it
// returns, for each of many writers at once.
func TestPutDurableWaitsForTheWrite(t *testing.T) {
	st := openStore(t, t.TempDir())
	w := newStateWriter(st, slog.New(slog.DiscardHandler), nil)
	w.start()
	defer w.close()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			key := fmt.Sprintf("org-%02d", i)
			w.putDurable(store.Alerts, key, []byte(`{"n":`+fmt.Sprint(i)+`}`))()
			var got struct{ N int }
			if ok, err := st.Get(store.Alerts, key, &got); err != nil || !ok || got.N != i {
				t.Errorf("%s after its wait: found %v, %+v, %v", key, ok, got, err)
			}
		})
	}
	wg.Wait()
}

// Messages leave in the order of their tickets, whatever order their
// senders get there in.
func TestSendOrderKeepsTicketOrder(t *testing.T) {
	var o sendOrder
	const n = 40
	tickets := make([]uint64, n)
	for i := range tickets {
		tickets[i] = o.ticket()
	}
	var mu sync.Mutex
	var sent []uint64
	var wg sync.WaitGroup
	for i := n - 1; i >= 0; i-- {
		wg.Go(func() {
			o.inTurn(tickets[i], func() {
				mu.Lock()
				sent = append(sent, tickets[i])
				mu.Unlock()
			})
		})
	}
	wg.Wait()
	for i, s := range sent {
		if s != uint64(i) {
			t.Fatalf("sent in the order %v", sent)
		}
	}
}
