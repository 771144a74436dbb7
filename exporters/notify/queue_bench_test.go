package notify

import (
	"fmt"
	"testing"

	"github.com/tokenwatch/tokenwatch/internal/alerting"
)

// BenchmarkEnqueue measures one Send of a single message to a destination
// that already holds queued alerts (it is down, say): a new alert with room
// in the queue, a new alert into a full queue (the oldest firing one is
// dropped), and an update of a queued alert. The cost per message should not grow with
// the queue: compare the ns/op across the queued= sizes. Run it with
// -benchtime=2000x: the "new" cases cycle through 1024 alerts, so longer
// runs measure updates after the first 1024 messages.
func BenchmarkEnqueue(b *testing.B) {
	for _, queued := range []int{100, 1000, 10000} {
		for _, kind := range []string{"new", "new-full", "update"} {
			b.Run(fmt.Sprintf("queued=%d/%s", queued, kind), func(b *testing.B) {
				capacity := 2 * queued
				if kind == "new-full" {
					capacity = queued
				}
				r := NewRouter(RouterOptions{QueueCapacity: capacity})
				// No delivery goroutine: the queue stays as filled.
				d := &dispatcher{name: "am", r: r, logger: r.logger, wake: make(chan struct{}, 1), resends: true}
				fill := make([]alerting.Message, queued)
				for i := range fill {
					fill[i] = firing(fmt.Sprintf("Q%d", i))
				}
				d.enqueue(fill)
				msgs := make([]alerting.Message, 1024)
				for i := range msgs {
					if kind == "update" {
						msgs[i] = resend(fmt.Sprintf("Q%d", i*queued/len(msgs)))
					} else {
						msgs[i] = firing(fmt.Sprintf("N%d", i))
					}
					msgs[i].Alert.Fingerprint = alerting.Fingerprint(msgs[i].Alert.Labels)
				}
				b.ResetTimer()
				for i := range b.N {
					d.enqueue(msgs[i%len(msgs) : i%len(msgs)+1])
				}
			})
		}
	}
}
