package geofailover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Client is a go-redis client that fails over between endpoints. It is safe
// for concurrent use. All command methods come from an embedded
// redis.Cmdable (unexported, so it cannot be replaced) and reach the active
// endpoint.
type Client struct {
	cmdable // the front client: command methods that route through us

	cfg     *config
	front   *redis.Client // commands and pipelines; never dials
	txFront *redis.Client // transactions; never dials

	route atomic.Pointer[route]
	hooks atomic.Pointer[hookChain]
	wake  chan struct{} // capacity 1: the command path saw a failure

	sup    *supervisor
	events *eventQueue
	recent recentEvents // the last events, for RecentEvents

	hooksMu       sync.Mutex     // serializes AddHook
	scanTags      sync.Map       // uint8 scan tag -> endpoint name, for error messages
	psFront       *redis.Client  // serves Subscribe & co. through bridges (pubsub.go)
	bridges       sync.WaitGroup // Pub/Sub bridge goroutines
	hedges        hedgeBudget    // what hedged reads may still send (hedge.go)
	hedgeWork     hedgeWork      // hedged reads' goroutines, for Close
	bridgeMu      sync.Mutex     // orders openBridge against Close
	allDown       atomic.Bool    // no endpoint can take traffic (checks run faster)
	bridgesClosed bool
	cancel        context.CancelFunc
	ctx           context.Context // cancelled by Close; parent of every goroutine's context
	supDone       chan struct{}
	wg            sync.WaitGroup // health checkers
	closeOnce     sync.Once
	closeErr      error
}

var _ redis.UniversalClient = (*Client)(nil)

// cmdable is redis.Cmdable under a name that keeps the embedded field
// unexported while its methods are promoted to Client.
type cmdable = redis.Cmdable

// New validates opts and starts the client. It does not wait for the
// network: the first health checks run in the background, and commands
// issued before the initial selection wait for it (bounded by their
// context). Use WaitReady to wait explicitly. Bad options give an error that
// names the field.
func New(opts *Options) (*Client, error) {
	cfg, err := validate(opts)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, wake: make(chan struct{}, 1), supDone: make(chan struct{})}
	c.route.Store(&route{changed: make(chan struct{})})
	c.hedges.init()
	c.hedgeWork.init()
	c.hooks.Store(c.newHookChain(nil))
	c.front = newFront(routingHook{c: c}, nil)
	c.txFront = newFront(routingHook{c: c, tx: true}, nil)
	c.psFront = c.newPubSubFront()
	c.cmdable = c.front
	c.events = newEventQueue()
	if cfg.OnEvent != nil {
		c.events.subscribe(cfg.OnEvent, true)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.sup = newSupervisor(c, cfg)
	for _, spec := range cfg.Endpoints {
		if _, err := c.sup.add(spec); err != nil {
			c.sup.closeAll()
			c.front.Close()
			c.txFront.Close()
			c.psFront.Close()
			c.events.close()
			c.cancel()
			return nil, err
		}
	}
	go func() {
		defer close(c.supDone)
		c.sup.run(c.ctx)
	}()
	return c, nil
}

// newFront builds a go-redis client that serves the Client's command
// methods: h (if any) takes every command before it would be written.
// Only the Pub/Sub front (no hook) ever dials, and then its connection's
// own setup (HELLO, ...) goes to the bridge it dialled, never through the
// routing hook to a traffic connection.
func newFront(h redis.Hook, dial func(context.Context, string, string) (net.Conn, error)) *redis.Client {
	if dial == nil {
		dial = func(context.Context, string, string) (net.Conn, error) { return nil, errFrontDial }
	}
	f := redis.NewClient(&redis.Options{
		Addr:                     "geofailover",
		Protocol:                 2,
		DisableIdentity:          true,
		PoolSize:                 1,
		MaxRetries:               -1,
		PipelinePoolSize:         -1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		Dialer:                   dial,
	})
	if h != nil {
		f.AddHook(h)
	}
	return f
}

func (c *Client) publish(r *route) {
	old := c.route.Swap(r)
	close(old.changed)
}

// call runs fn on the supervisor goroutine, followed by a decision step, and
// waits for both. ctx bounds the wait for the supervisor to take the
// request: a done ctx changes nothing.
func (c *Client) call(ctx context.Context, fn func(s *supervisor, now time.Time)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	req := request{fn: func(now time.Time) { fn(c.sup, now) }, done: make(chan struct{})}
	select {
	case c.sup.requests <- req:
	case <-c.supDone:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	<-req.done
	return nil
}

// Active returns the name of the endpoint taking traffic, or "" when none.
func (c *Client) Active() string {
	return nameOf(c.route.Load().active)
}

// Status returns a snapshot of every endpoint, in configuration order. After
// Close it returns nil.
func (c *Client) Status() []EndpointStatus {
	var out []EndpointStatus
	if c.call(context.Background(), func(s *supervisor, _ time.Time) { out = s.status() }) != nil {
		return nil
	}
	return out
}

// WaitReady waits until an endpoint is active, or ctx ends.
func (c *Client) WaitReady(ctx context.Context) error {
	for {
		r := c.route.Load()
		if r.active != nil {
			return nil
		}
		if errors.Is(r.err, ErrClosed) {
			return ErrClosed
		}
		select {
		case <-r.changed:
		case <-ctx.Done():
			if r.err != nil {
				return fmt.Errorf("%w (%w)", ctx.Err(), r.err)
			}
			return ctx.Err()
		}
	}
}

// SwitchOption modifies SwitchTo; Force is the one there is.
type SwitchOption struct{ force bool }

// Force makes SwitchTo switch even to an endpoint that is not usable, and
// keeps traffic there until the next SwitchTo: meanwhile no command is
// retried or steered elsewhere.
func Force() SwitchOption { return SwitchOption{force: true} }

// SwitchTo moves traffic to the named endpoint and pins it there: automatic
// failback will not move it away while it stays usable; if it fails, normal
// failover applies and the pin is dropped. It refuses an endpoint that is
// not usable (unhealthy, breaker open or in its grace period), or that has
// passed no health check since its last failure, with ErrEndpointUnhealthy
// unless Force is given. SwitchTo(ctx, "") drops the
// pin and lets the normal rules choose again. It returns once the switch is
// published.
func (c *Client) SwitchTo(ctx context.Context, name string, opts ...SwitchOption) error {
	force := false
	for _, o := range opts {
		force = force || o.force
	}
	var err error
	cerr := c.call(ctx, func(s *supervisor, now time.Time) { err = s.pin(name, force, now) })
	return errors.Join(cerr, err)
}

// pin applies a SwitchTo request; the decision step that follows moves
// traffic.
func (s *supervisor) pin(name string, force bool, now time.Time) error {
	if name == "" {
		s.pinned, s.pinForced = nil, false
		return nil
	}
	e := s.find(name)
	switch {
	case e == nil:
		return fmt.Errorf("%w %q", ErrUnknownEndpoint, name)
	case !force && !e.eligible(now) && !(e == s.active && e.usable(now)):
		return fmt.Errorf("%w: %q is %s, breaker %s%s", ErrEndpointUnhealthy, name, e.health, e.breaker, graceNote(e, now))
	}
	s.pinned, s.pinForced = e, force
	return nil
}

func graceNote(e *endpoint, now time.Time) string {
	note := ""
	if !e.lastPassed && e.health != HealthUnknown {
		note = ", no health check passed since its last failure"
	}
	if now.Before(e.graceUntil) {
		note += fmt.Sprintf(", in grace period for %v", e.graceUntil.Sub(now).Round(time.Millisecond))
	}
	return note
}

func (s *supervisor) find(name string) *endpoint {
	for _, e := range s.eps {
		if e.name == name {
			return e
		}
	}
	return nil
}

// SetWeight changes an endpoint's weight (> 0, finite) and re-evaluates the
// choice of active endpoint at once. Like AddEndpoint, RemoveEndpoint and
// SwitchTo, it is carried out by the client's supervisor goroutine: ctx
// bounds the wait for it to take the request (ctx.Err() if it ends first,
// and nothing changed); once taken, the change is made and the call
// returns when it is published.
func (c *Client) SetWeight(ctx context.Context, name string, weight float64) error {
	if err := validateWeight(name, weight); err != nil {
		return fmt.Errorf("geofailover: SetWeight: %w", err)
	}
	var err error
	cerr := c.call(ctx, func(s *supervisor, _ time.Time) {
		if e := s.find(name); e != nil {
			e.weight = weight
		} else {
			err = fmt.Errorf("%w %q", ErrUnknownEndpoint, name)
		}
	})
	return errors.Join(cerr, err)
}

// AddEndpoint adds an endpoint; it starts being health-checked at once and
// takes traffic when the selection rule picks it. ctx: see SetWeight.
func (c *Client) AddEndpoint(ctx context.Context, ep Endpoint) error {
	if err := validateEndpoint(&ep); err != nil {
		return fmt.Errorf("geofailover: AddEndpoint: %w", err)
	}
	var err error
	cerr := c.call(ctx, func(s *supervisor, _ time.Time) {
		_, err = s.add(ep)
	})
	return errors.Join(cerr, err)
}

// RemoveEndpoint removes an endpoint. If it was active, traffic moves to the
// next-best endpoint first (reason ReasonRemoved). A client we built for it
// is closed once its in-flight commands have finished (at most a second
// later, or at Close). The last endpoint cannot be removed. ctx: see
// SetWeight.
func (c *Client) RemoveEndpoint(ctx context.Context, name string) error {
	var err error
	cerr := c.call(ctx, func(s *supervisor, now time.Time) {
		e := s.find(name)
		switch {
		case e == nil:
			err = fmt.Errorf("%w %q", ErrUnknownEndpoint, name)
		case len(s.eps) == 1:
			err = fmt.Errorf("geofailover: cannot remove %q, the last endpoint", name)
		default:
			s.remove(e, now)
		}
	})
	return errors.Join(cerr, err)
}

// Events returns a channel that receives every later Event, in order, and a
// function that stops the subscription. The channel is closed by the stop
// function or by Close, whichever comes first, so a loop ranging over it
// ends with either. Deliveries run on the client's event goroutine, never
// on the command path nor under a lock: a reader that falls behind (once
// buffer is full) delays later deliveries to every subscriber, never the
// client, its commands or Close. While deliveries are behind, at most
// 10,000 events wait: beyond that the oldest are dropped and one
// EventsDropped, saying how many, is delivered in their place. To see
// events from the very first (the initial selection), set Options.OnEvent.
func (c *Client) Events(buffer int) (<-chan Event, func()) {
	ch := make(chan Event, buffer)
	stop := make(chan struct{})
	var once sync.Once
	quit := c.events.quit
	unsub := c.events.subscribeClosing(func(ev Event) {
		select {
		case ch <- ev:
		case <-stop:
		case <-quit:
		}
	}, false, func() { close(ch) })
	return ch, func() { once.Do(func() { close(stop); unsub() }) }
}

// Close stops the supervisor and the health checks, closes every client the
// Client built (not those passed in Endpoint.Client) and waits until all its
// goroutines have exited. It stops event delivery without waiting for
// subscribers: events not yet delivered are dropped, an Events reader that
// is behind is released and its channel closed, and an Options.OnEvent
// callback running at that moment may finish after Close returns (the
// event goroutine then exits), but no delivery starts after Close returns.
// It may be called from the OnEvent callback. It
// is safe to call more than once. Commands issued after Close fail with
// ErrClosed.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		<-c.supDone
		c.publish(&route{err: ErrClosed, changed: make(chan struct{})})
		c.psFront.Close()
		c.bridgeMu.Lock()
		c.bridgesClosed = true
		c.bridgeMu.Unlock()
		c.bridges.Wait()
		c.closeErr = c.sup.closeAll()
		c.hedgeWork.closeAndWait() // their clients are closed: they end now
		c.front.Close()
		c.txFront.Close()
		c.events.close()
	})
	return c.closeErr
}
