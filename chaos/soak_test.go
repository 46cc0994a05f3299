package chaos_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

var soakFor = flag.Duration("chaos.soak.duration", 10*time.Minute, "how long TestSoak runs with -chaos.soak")

// TestSoak: three regions, default options, a reference workload and a
// Pub/Sub subscriber fed by a publisher through the client, while a chaos
// actor kills, freezes (SIGSTOP) and restarts servers at random (never all
// at once); then everything is restored. It asserts that
//
//   - no command outlives its timeout (no hang);
//   - resources stay flat: goroutines, open files and the client's server
//     connections at the end (everything healed and settled) are back near
//     the baseline taken after warm-up and never grow past a pool's bound,
//     and the heap after GC has not grown;
//   - no Pub/Sub message is lost in a stable period: every PUBLISH the
//     client acknowledged at least a second away from any fault, switch or
//     reported gap reached the subscriber.
//
// It runs for 15 s in the normal suite; with -chaos.soak for
// -chaos.soak.duration (10 minutes by default).
func TestSoak(t *testing.T) {
	d := 15 * time.Second
	if *soak {
		d = *soakFor
	}
	// Unstable moments: fault actions, switches and Pub/Sub gaps.
	var unstable intervals
	var switches atomic.Int64
	rs, c := lab(t, []float64{1, 0.5, 0.25}, false, func(o *geofailover.Options) {
		o.OnEvent = func(ev geofailover.Event) {
			switch ev.Kind {
			case geofailover.EventSwitch, geofailover.EventAllDown, geofailover.EventRecovered:
				switches.Add(1)
				unstable.add(ev.At, ev.At)
			case geofailover.EventPubSubInterrupted:
				unstable.open(ev.At)
			case geofailover.EventPubSubRestored:
				unstable.add(ev.GapStart, ev.At)
				unstable.close()
			}
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The workload: SET+GET, 100 ms timeout, counting only.
	const timeout = 100 * time.Millisecond
	var ops, errs atomic.Int64
	var worst atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 8 {
		wg.Go(func() {
			key := fmt.Sprint("soak:", w)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				for _, op := range []func(context.Context) error{
					func(ctx context.Context) error { return c.Set(ctx, key, i, 0).Err() },
					func(ctx context.Context) error { return c.Get(ctx, key).Err() },
				} {
					cctx, ccancel := context.WithTimeout(ctx, timeout)
					start := time.Now()
					err := op(cctx)
					took := int64(time.Since(start))
					ccancel()
					ops.Add(1)
					if err != nil && !errors.Is(err, redis.Nil) {
						errs.Add(1)
					}
					for {
						old := worst.Load()
						if took <= old || worst.CompareAndSwap(old, took) {
							break
						}
					}
				}
				time.Sleep(time.Millisecond)
			}
		})
	}

	// Pub/Sub: a subscriber through the client, a publisher through it.
	ps := c.Subscribe(ctx, "soak")
	defer ps.Close()
	if _, err := ps.ReceiveTimeout(ctx, 5*time.Second); err != nil {
		t.Fatalf("subscription not confirmed: %v", err)
	}
	book := &pubBook{received: map[int64]bool{}}
	wg.Go(func() {
		for m := range ps.Channel() {
			if n, err := strconv.ParseInt(m.Payload, 10, 64); err == nil {
				book.receive(n)
			}
		}
	})
	wg.Go(func() {
		for seq := int64(1); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			cctx, ccancel := context.WithTimeout(ctx, timeout)
			start := time.Now()
			n, err := c.Publish(cctx, "soak", seq).Result()
			end := time.Now()
			ccancel()
			if err == nil {
				book.acknowledged(published{seq: seq, start: start, end: end, receivers: n})
			}
			time.Sleep(2 * time.Millisecond)
		}
	})

	// Resource samples, once a second.
	probe := newProbe(rs)
	defer probe.close()
	time.Sleep(3 * time.Second)
	base := probe.sample(true)
	peak := base
	sampler := make(chan struct{})
	var samplerDone sync.WaitGroup
	samplerDone.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-sampler:
				return
			case <-tick.C:
				peak = peak.max(probe.sample(false))
				book.settle(&unstable, time.Now().Add(-5*time.Second))
			}
		}
	})

	// The chaos actor.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	type fault struct {
		kind  string
		until time.Time
	}
	faulted := map[*region]*fault{}
	heal := func(r *region, f *fault) {
		unstable.add(time.Now(), time.Now())
		if f.kind == "pause" {
			must(t, r.srv.Resume())
		} else {
			must(t, r.srv.Restart())
		}
		delete(faulted, r)
	}
	kills, pauses := 0, 0
	start := time.Now()
	for time.Since(start) < d {
		time.Sleep(time.Duration(500+rng.IntN(2000)) * time.Millisecond)
		now := time.Now()
		for r, f := range faulted {
			if now.After(f.until) {
				heal(r, f)
			}
		}
		if len(faulted) >= len(rs)-1 {
			continue // never all at once
		}
		r := rs[rng.IntN(len(rs))]
		if faulted[r] != nil {
			continue
		}
		f := &fault{until: now.Add(time.Duration(500+rng.IntN(3500)) * time.Millisecond)}
		unstable.add(now, now)
		if rng.IntN(2) == 0 {
			f.kind = "kill"
			kills++
			r.srv.Kill()
		} else {
			f.kind = "pause"
			pauses++
			must(t, r.srv.Pause())
		}
		faulted[r] = f
	}
	for r, f := range faulted {
		heal(r, f)
	}

	// Settle: everything up, traffic back on the preferred region.
	failovertest.WaitActive(t, c, "east")
	time.Sleep(3 * time.Second)
	close(sampler)
	samplerDone.Wait()
	end := probe.sample(true)
	close(stop)
	time.Sleep(200 * time.Millisecond) // last deliveries
	cancel()
	_ = ps.Close()
	wg.Wait()
	book.settle(&unstable, time.Now())

	t.Logf("soak %v: %d commands (%d errors, worst %v), %d kills and %d freezes, %d switches; Pub/Sub: %d acknowledged, %d received, %d lost in stable periods, %d lost around faults",
		d.Round(time.Second), ops.Load(), errs.Load(), time.Duration(worst.Load()).Round(time.Millisecond), kills, pauses, switches.Load(),
		book.acked, book.got, book.lostStable, book.lostUnstable)
	t.Logf("resources baseline / end / peak: goroutines %d / %d / %d, open files %d / %d / %d, server connections %d / %d / %d, heap after GC %.1f / %.1f MB",
		base.goroutines, end.goroutines, peak.goroutines, base.fds, end.fds, peak.fds, base.conns, end.conns, peak.conns,
		float64(base.heap)/(1<<20), float64(end.heap)/(1<<20))

	if w := time.Duration(worst.Load()); w > timeout+250*time.Millisecond {
		t.Errorf("a command took %v (timeout %v)", w, timeout)
	}
	if book.lostStable > 0 {
		t.Errorf("%d acknowledged PUBLISHes never reached the subscriber in stable periods (first: %v)", book.lostStable, book.firstLost)
	}
	if book.got == 0 || ops.Load() == 0 {
		t.Errorf("nothing happened: %d commands, %d messages", ops.Load(), book.got)
	}
	// Flat: back near the baseline, and never past what the pools allow.
	if end.goroutines > base.goroutines+10 {
		t.Errorf("goroutines grew from %d to %d", base.goroutines, end.goroutines)
	}
	if end.fds > base.fds+3*25 {
		t.Errorf("open files grew from %d to %d", base.fds, end.fds)
	}
	// Per server: a traffic pool (20 on 2 cores), a blocking pool, two
	// probe connections, one subscription, and our own probe.
	if limit := len(rs) * 30; peak.conns > limit {
		t.Errorf("server connections peaked at %d, more than the pools allow (%d)", peak.conns, limit)
	}
	if end.heap > 2*base.heap+16<<20 {
		t.Errorf("heap after GC grew from %d to %d bytes", base.heap, end.heap)
	}
}

// intervals are the unstable moments of a soak, widened by a second.
type intervals struct {
	mu       sync.Mutex
	spans    [][2]time.Time
	openFrom time.Time // a Pub/Sub gap reported open, not yet restored
}

func (iv *intervals) add(from, to time.Time) {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	iv.spans = append(iv.spans, [2]time.Time{from.Add(-time.Second), to.Add(time.Second)})
}

func (iv *intervals) open(at time.Time) {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	if iv.openFrom.IsZero() {
		iv.openFrom = at
	}
}

func (iv *intervals) close() {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	iv.openFrom = time.Time{}
}

// covers reports whether [from, to] touches an unstable moment.
func (iv *intervals) covers(from, to time.Time) bool {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	if !iv.openFrom.IsZero() && to.After(iv.openFrom.Add(-time.Second)) {
		return true
	}
	for _, s := range iv.spans {
		if to.After(s[0]) && from.Before(s[1]) {
			return true
		}
	}
	return false
}

type published struct {
	seq        int64
	start, end time.Time
	receivers  int64
}

// pubBook matches acknowledged PUBLISHes with deliveries; settle decides
// the ones old enough and forgets them, so its memory stays bounded.
type pubBook struct {
	mu           sync.Mutex
	pending      []published
	received     map[int64]bool
	acked, got   int
	lostStable   int
	lostUnstable int
	firstLost    string
}

func (b *pubBook) acknowledged(p published) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.acked++
	b.pending = append(b.pending, p)
}

func (b *pubBook) receive(seq int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got++
	b.received[seq] = true
}

func (b *pubBook) settle(iv *intervals, before time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	keep := b.pending[:0]
	for _, p := range b.pending {
		if p.end.After(before) {
			keep = append(keep, p)
			continue
		}
		if !b.received[p.seq] {
			if iv.covers(p.start, p.end) {
				b.lostUnstable++
			} else {
				b.lostStable++
				if b.firstLost == "" {
					b.firstLost = fmt.Sprintf("#%d at %s, %d receivers", p.seq, p.end.Format("15:04:05.000"), p.receivers)
				}
			}
		}
		delete(b.received, p.seq)
	}
	b.pending = keep
}

// probe samples the process's resources and the servers' client counts.
type probe struct {
	rs      []*region
	clients []*redis.Client
}

type sample struct {
	goroutines, fds, conns int
	heap                   uint64
}

func (s sample) max(o sample) sample {
	return sample{max(s.goroutines, o.goroutines), max(s.fds, o.fds), max(s.conns, o.conns), max(s.heap, o.heap)}
}

func newProbe(rs []*region) *probe {
	p := &probe{rs: rs}
	for _, r := range rs {
		p.clients = append(p.clients, redis.NewClient(&redis.Options{Addr: r.srv.Addr, MaxRetries: -1, PoolSize: 1,
			DialTimeout: 100 * time.Millisecond, ReadTimeout: 100 * time.Millisecond}))
	}
	return p
}

func (p *probe) close() {
	for _, c := range p.clients {
		c.Close()
	}
}

// sample reads the counts; withGC collects garbage first so the heap is
// comparable. A server that is down or frozen adds nothing.
func (p *probe) sample(withGC bool) sample {
	var s sample
	if withGC {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.heap = ms.HeapAlloc
	s.goroutines = runtime.NumGoroutine()
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		s.fds = len(ents)
	}
	for _, c := range p.clients {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		info, err := c.Info(ctx, "clients").Result()
		cancel()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_clients:"); ok {
				n, _ := strconv.Atoi(v)
				s.conns += n - 1 // not our own
			}
		}
	}
	return s
}
