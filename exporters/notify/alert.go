// Package notify delivers alerts, for every destination alike: the
// Notifier interface that one package per destination implements, and a
// Router that gives each destination its own bounded queue, retries with
// backoff, and the delivery metrics.
//
// It knows nothing of how alerts are raised: the agent decides when an
// alert fires or resolves and hands the Router an alerting.Message.
package notify

import (
	"context"

	"github.com/tokenwatch/tokenwatch/internal/alerting"
)

// Notifier sends alerts to one destination. retry says whether a failure is
// worth trying again (the destination is down or overloaded) or not (it
// refused the request itself, e.g. HTTP 400).
type Notifier interface {
	Notify(ctx context.Context, alerts ...alerting.Alert) (retry bool, err error)
}
