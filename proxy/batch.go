package proxy

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/internal/cmdtable"
	"github.com/geofailover/geofailover/internal/rawcmd"
)

// Batching. Ordinary commands of all connections (not transactions,
// blocking commands, Pub/Sub, WATCH sessions, nor a connection on another
// database) are sent to the engine together: a connection hands its run of
// commands to a queue, and a few flusher goroutines each take whatever is
// queued and send it as one engine pipeline, on one connection to the
// region. Under load, many clients' commands share one write and one read
// on that connection instead of one each (what twemproxy does); a lone
// command goes at once. Each client's commands stay in its order, and its
// replies are its own.
//
// Runs of read-only commands queue apart from the rest, so that a pipeline
// of reads whose answers were lost is replayed on the next region as a
// single read would be (the engine replays a pipeline only when every
// command in it may be replayed).

const (
	// maxFlushers bounds the pipelines in flight per queue. One flusher
	// per queue starts with the server; more start, while runs wait, up to
	// one per flusherRTT of the active region's round trip (its health
	// checks' smoothed latency): a region far away gets more pipelines in
	// flight, a near one keeps one, with larger pipelines (fewer writes and
	// reads for the same commands). The time a pipeline takes here is no
	// guide: on a busy machine it is mostly waiting for a CPU.
	maxFlushers = 16
	flusherRTT  = 2 * time.Millisecond
	// batchMax bounds the commands in one engine pipeline.
	batchMax = 512
	// queueLen is each queue's capacity, in runs.
	queueLen = 4096
)

// batchJob is one connection's run of commands; done receives when the
// run has been answered.
type batchJob struct {
	cmds []*rawcmd.Cmd
	done chan struct{}
}

type batcher struct {
	client *geofailover.Client
	ctx    context.Context
	queues [2]batchQueue // read-only runs, other runs
	want   atomic.Int32  // flushers per queue for the active region's round trip
	wg     sync.WaitGroup
}

type batchQueue struct {
	jobs     chan *batchJob
	flushers atomic.Int32
}

// newBatcher starts a flusher per queue; they run until ctx ends.
func newBatcher(ctx context.Context, c *geofailover.Client) *batcher {
	b := &batcher{client: c, ctx: ctx}
	for i := range b.queues {
		q := &b.queues[i]
		q.jobs = make(chan *batchJob, queueLen)
		q.flushers.Store(1)
		b.wg.Add(1)
		go b.flush(q)
	}
	b.want.Store(1)
	b.wg.Add(1)
	go b.follow()
	return b
}

// follow sets how many flushers each queue may have from the active
// region's round trip, every second.
func (b *batcher) follow() {
	defer b.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		for _, st := range b.client.Status() {
			if st.Active {
				b.want.Store(int32(min(maxFlushers, 1+int(st.CheckLatency/flusherRTT))))
			}
		}
		select {
		case <-t.C:
		case <-b.ctx.Done():
			return
		}
	}
}

// submit queues j and waits for its answer, or for ctx (the connection's)
// to end; it reports whether j was answered.
func (b *batcher) submit(ctx context.Context, j *batchJob) bool {
	q := &b.queues[1]
	if allReadOnly(j.cmds) {
		q = &b.queues[0]
	}
	select {
	case q.jobs <- j:
	case <-ctx.Done():
		return false
	}
	if len(q.jobs) > 0 {
		if n := q.flushers.Load(); n < b.want.Load() && q.flushers.CompareAndSwap(n, n+1) {
			b.wg.Add(1)
			go b.flush(q)
		}
	}
	select {
	case <-j.done:
		return true
	case <-ctx.Done():
		return false
	}
}

func allReadOnly(cmds []*rawcmd.Cmd) bool {
	for _, cmd := range cmds {
		if cmdtable.Lookup(cmd.Name())&cmdtable.ReadOnly == 0 {
			return false
		}
	}
	return true
}

// flush sends what q holds, a pipeline at a time.
func (b *batcher) flush(bq *batchQueue) {
	q := bq.jobs
	defer b.wg.Done()
	var jobs []*batchJob
	for {
		select {
		case j := <-q:
			jobs = append(jobs[:0], j)
		case <-b.ctx.Done():
			return
		}
		n := len(jobs[0].cmds)
	more:
		for n < batchMax {
			select {
			case j := <-q:
				jobs = append(jobs, j)
				n += len(j.cmds)
			default:
				break more
			}
		}
		if len(jobs) == 1 && n == 1 {
			_ = b.client.Process(b.ctx, jobs[0].cmds[0])
		} else {
			pipe := b.client.Pipeline()
			for _, j := range jobs {
				for _, cmd := range j.cmds {
					_ = pipe.Process(b.ctx, cmd)
				}
			}
			_, _ = pipe.Exec(b.ctx)
		}
		for _, j := range jobs {
			j.done <- struct{}{}
		}
		clear(jobs)
	}
}
