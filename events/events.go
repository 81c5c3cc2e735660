// Package events is modelslot's event bus: it stores every event, fans it
// out to live subscribers (the dashboard, `modelslot events --follow`) and
// delivers it to webhooks in the background, so that publishing never waits
// for a slow consumer.
package events

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/modelslot/modelslot"
)

var _ modelslot.EventSink = (*Bus)(nil)

// Defaults of the bus's limits.
const (
	DefaultSubscriberBuffer = 256
	DefaultQueueSize        = 1024
	DefaultMaxAttempts      = 5
	DefaultTimeout          = 10 * time.Second
	DefaultInitialBackoff   = time.Second
	DefaultMaxBackoff       = time.Minute
)

// SignatureHeader carries "sha256=<hex HMAC-SHA256 of the body>" when the
// webhook has a secret.
const SignatureHeader = "X-Modelslot-Signature"

// Webhook receives events as JSON POSTs.
type Webhook struct {
	URL string `json:"url" yaml:"url"`
	// Types are prefixes of the event types to send ("rollout." sends every
	// rollout event, "rollout.completed" only that one); empty sends all.
	Types []string `json:"types,omitempty" yaml:"types"`
	// Secret, when set, signs each body: the SignatureHeader is
	// "sha256=" + hex(HMAC-SHA256(secret, body)).
	Secret string `json:"-" yaml:"secret"`
	// MaxAttempts bounds the deliveries of one event (default 5); the
	// waits between them grow exponentially from InitialBackoff (default
	// 1s) up to MaxBackoff (default 1m).
	MaxAttempts    int           `json:"maxAttempts,omitempty" yaml:"maxAttempts"`
	InitialBackoff time.Duration `json:"initialBackoff,omitempty" yaml:"initialBackoff"`
	MaxBackoff     time.Duration `json:"maxBackoff,omitempty" yaml:"maxBackoff"`
	// Timeout bounds one attempt (default 10s).
	Timeout time.Duration `json:"timeout,omitempty" yaml:"timeout"`
	// QueueSize bounds the events waiting for delivery (default 1024);
	// when it is full, new events are dropped for this webhook and counted.
	QueueSize int `json:"queueSize,omitempty" yaml:"queueSize"`
}

// Matches reports whether the webhook wants events of type typ.
func (w Webhook) Matches(typ string) bool { return matchTypes(w.Types, typ) }

func matchTypes(prefixes []string, typ string) bool {
	if len(prefixes) == 0 {
		return true
	}
	for _, p := range prefixes {
		if strings.HasPrefix(typ, p) {
			return true
		}
	}
	return false
}

// Filter selects the events a subscriber gets; zero fields match all.
type Filter struct {
	App     string
	Rollout string
	// Types are type prefixes, as for webhooks.
	Types []string
	// Buffer is the subscriber's channel capacity (default 256). When it is
	// full, events are dropped for this subscriber and counted.
	Buffer int
}

func (f Filter) match(e *modelslot.Event) bool {
	return (f.App == "" || f.App == e.App) &&
		(f.Rollout == "" || f.Rollout == e.Rollout) &&
		matchTypes(f.Types, e.Type)
}

// Stats counts what the bus did since it was created.
type Stats struct {
	Published int64 `json:"published"`
	// StoreErrors counts events that could not be stored (they were still
	// delivered to subscribers and webhooks).
	StoreErrors int64 `json:"storeErrors"`
	// SubscriberDrops counts events a slow subscriber did not get.
	SubscriberDrops int64 `json:"subscriberDrops"`
	// WebhookDelivered, WebhookFailed (every attempt failed) and
	// WebhookDropped (queue full, or not sent before Close's deadline).
	WebhookDelivered int64 `json:"webhookDelivered"`
	WebhookFailed    int64 `json:"webhookFailed"`
	WebhookDropped   int64 `json:"webhookDropped"`
}

// Bus implements modelslot.EventSink.
type Bus struct {
	store  modelslot.Store
	log    *slog.Logger
	client *http.Client

	mu     sync.RWMutex
	subs   map[*subscriber]struct{}
	closed bool

	hooks []*hook
	// relayed: Publish does not queue webhooks; Deliver does (see Relay).
	relayed atomic.Bool
	// replica names the sender in ReplicaHeader (see SetReplica).
	replica string
	// sendCtx is canceled when Close's deadline passes: in-flight
	// deliveries stop and the rest of the queues are dropped.
	sendCtx    context.Context
	cancelSend context.CancelFunc
	wg         sync.WaitGroup

	published, storeErrors, subDrops atomic.Int64
	delivered, failed, dropped       atomic.Int64
}

type subscriber struct {
	filter Filter
	ch     chan *modelslot.Event
	// mu orders sends against close: Publish holds it for reading.
	mu     sync.Mutex
	closed bool
}

type hook struct {
	Webhook
	queue chan *delivery
}

type delivery struct {
	event *modelslot.Event
	body  []byte
}

// New returns a bus that stores events in store (nil: not stored), logs
// with logger (nil: discarded) and delivers to webhooks. Close it to drain
// the webhook queues.
func New(store modelslot.Store, logger *slog.Logger, webhooks []Webhook) *Bus {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b := &Bus{
		store:  store,
		log:    logger,
		client: &http.Client{},
		subs:   map[*subscriber]struct{}{},
	}
	b.sendCtx, b.cancelSend = context.WithCancel(context.Background())
	for _, w := range webhooks {
		if w.MaxAttempts <= 0 {
			w.MaxAttempts = DefaultMaxAttempts
		}
		if w.InitialBackoff <= 0 {
			w.InitialBackoff = DefaultInitialBackoff
		}
		if w.MaxBackoff <= 0 {
			w.MaxBackoff = DefaultMaxBackoff
		}
		if w.MaxBackoff < w.InitialBackoff {
			w.MaxBackoff = w.InitialBackoff
		}
		if w.Timeout <= 0 {
			w.Timeout = DefaultTimeout
		}
		if w.QueueSize <= 0 {
			w.QueueSize = DefaultQueueSize
		}
		h := &hook{Webhook: w, queue: make(chan *delivery, w.QueueSize)}
		b.hooks = append(b.hooks, h)
		b.wg.Add(1)
		go b.deliverLoop(h)
	}
	return b
}

// Publish stores e (setting its ID and, if zero, its Time), hands it to the
// matching subscribers and queues it for the matching webhooks. It never
// blocks on a consumer and never fails: problems are logged and counted.
func (b *Bus) Publish(ctx context.Context, e *modelslot.Event) {
	if e == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if b.store != nil {
		// The event must be stored even if the caller's request is being
		// canceled: it records what already happened.
		if err := b.store.AddEvent(context.WithoutCancel(ctx), e); err != nil {
			b.storeErrors.Add(1)
			b.log.Error("store event", "type", e.Type, "app", e.App, "err", err)
		}
	}
	b.published.Add(1)

	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return
	}
	for s := range b.subs {
		if !s.filter.match(e) {
			continue
		}
		s.mu.Lock()
		if !s.closed {
			select {
			case s.ch <- e:
			default:
				b.subDrops.Add(1)
			}
		}
		s.mu.Unlock()
	}
	if !b.relayed.Load() {
		b.queueWebhooks(e)
	}
}

// Relay makes the webhooks another component's to trigger: Publish stores
// events and hands them to subscribers but no longer queues their
// webhooks; Deliver does. Replicas on a shared store relay: the one that
// holds the controller's lease sends the webhooks of every replica's
// events, once.
func (b *Bus) Relay() { b.relayed.Store(true) }

// ReplicaHeader names the replica that sent a webhook (replicas on a
// shared store only).
const ReplicaHeader = "X-Modelslot-Replica"

// SetReplica names this daemon among replicas in the ReplicaHeader of
// every webhook it sends. Call it before the first event.
func (b *Bus) SetReplica(name string) { b.replica = name }

// HasWebhooks reports whether any webhook is configured.
func (b *Bus) HasWebhooks() bool { return len(b.hooks) > 0 }

// Deliver queues e (an event already stored, maybe by another replica) for
// the matching webhooks. It never blocks: a full queue drops and counts.
func (b *Bus) Deliver(e *modelslot.Event) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if !b.closed {
		b.queueWebhooks(e)
	}
}

// queueWebhooks queues e for the matching webhooks; b.mu is held for
// reading.
func (b *Bus) queueWebhooks(e *modelslot.Event) {
	var body []byte
	for _, h := range b.hooks {
		if !h.Matches(e.Type) {
			continue
		}
		if body == nil {
			var err error
			if body, err = json.Marshal(e); err != nil {
				b.log.Error("encode event for webhooks", "type", e.Type, "err", err)
				return
			}
		}
		select {
		case h.queue <- &delivery{event: e, body: body}:
		default:
			b.dropped.Add(1)
			b.log.Warn("webhook queue full: event dropped", "url", redactURL(h.URL), "type", e.Type, "id", e.ID)
		}
	}
}

// Subscribe returns a channel of the events published from now on that
// match filter. The channel is closed when ctx ends or the bus closes.
// Events are shared: receivers must not modify them.
func (b *Bus) Subscribe(ctx context.Context, filter Filter) <-chan *modelslot.Event {
	if filter.Buffer <= 0 {
		filter.Buffer = DefaultSubscriberBuffer
	}
	s := &subscriber{filter: filter, ch: make(chan *modelslot.Event, filter.Buffer)}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		close(s.ch)
		return s.ch
	}
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		delete(b.subs, s)
		b.mu.Unlock()
		s.close()
	})
	return s.ch
}

func (s *subscriber) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.ch)
	}
}

// Stats returns the bus's counters.
func (b *Bus) Stats() Stats {
	return Stats{
		Published:        b.published.Load(),
		StoreErrors:      b.storeErrors.Load(),
		SubscriberDrops:  b.subDrops.Load(),
		WebhookDelivered: b.delivered.Load(),
		WebhookFailed:    b.failed.Load(),
		WebhookDropped:   b.dropped.Load(),
	}
}

// Close stops accepting events, closes every subscription and waits for
// the webhook queues to drain until ctx ends; then in-flight deliveries
// are canceled and what is left is dropped (and counted). It returns
// ctx's error if the queues did not drain in time.
func (b *Bus) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	subs := b.subs
	b.subs = map[*subscriber]struct{}{}
	for _, h := range b.hooks {
		close(h.queue)
	}
	b.mu.Unlock()
	for s := range subs {
		s.close()
	}

	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
		b.cancelSend()
		return nil
	case <-ctx.Done():
		// Queues that drained as ctx ended (none at all: no webhook) are
		// not a failure.
		select {
		case <-done:
			b.cancelSend()
			return nil
		default:
		}
		b.cancelSend()
		<-done
		return fmt.Errorf("close event bus: webhook queues not drained: %w", ctx.Err())
	}
}

func (b *Bus) deliverLoop(h *hook) {
	defer b.wg.Done()
	for d := range h.queue {
		if b.sendCtx.Err() != nil {
			b.dropped.Add(1)
			continue
		}
		if err := b.deliver(b.sendCtx, h, d); err != nil {
			if b.sendCtx.Err() != nil {
				b.dropped.Add(1)
				continue
			}
			b.failed.Add(1)
			b.log.Warn("webhook delivery failed", "url", redactURL(h.URL), "type", d.event.Type, "id", d.event.ID, "attempts", h.MaxAttempts, "err", err)
			continue
		}
		b.delivered.Add(1)
	}
}

// errStatus is a non-2xx answer.
type errStatus struct{ code int }

func (e errStatus) Error() string { return "status " + strconv.Itoa(e.code) }

func (b *Bus) deliver(ctx context.Context, h *hook, d *delivery) error {
	bo := &backoff.ExponentialBackOff{
		InitialInterval:     h.InitialBackoff,
		RandomizationFactor: 0.2,
		Multiplier:          2,
		MaxInterval:         h.MaxBackoff,
	}
	bo.Reset()
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		err := b.post(ctx, h, d)
		var st errStatus
		// A 4xx other than timeout and rate limit will not get better.
		if errors.As(err, &st) && st.code >= 400 && st.code < 500 && st.code != http.StatusRequestTimeout && st.code != http.StatusTooManyRequests {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	}, backoff.WithBackOff(bo), backoff.WithMaxTries(uint(h.MaxAttempts)), backoff.WithMaxElapsedTime(0))
	return err
}

func (b *Bus) post(ctx context.Context, h *hook, d *delivery) error {
	ctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(d.body))
	if err != nil {
		return backoff.Permanent(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "modelslot-webhook")
	req.Header.Set("X-Modelslot-Event", d.event.Type)
	if b.replica != "" {
		req.Header.Set(ReplicaHeader, b.replica)
	}
	req.Header.Set("X-Modelslot-Delivery", strconv.FormatInt(d.event.ID, 10))
	if h.Secret != "" {
		req.Header.Set(SignatureHeader, Sign(h.Secret, d.body))
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return errStatus{resp.StatusCode}
	}
	return nil
}

// Sign returns the SignatureHeader value for body: receivers compute the
// same with their copy of the secret and compare with hmac.Equal.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// redactURL keeps the scheme and host: webhook URLs often carry tokens.
func redactURL(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		rest := u[i+3:]
		if j := strings.IndexAny(rest, "/?#"); j >= 0 {
			rest = rest[:j]
		}
		if k := strings.LastIndex(rest, "@"); k >= 0 {
			rest = rest[k+1:]
		}
		return u[:i+3] + rest + "/..."
	}
	return "[webhook]"
}
