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
// commands to a queue, and a sender (one of the connections' own
// goroutines: see submit) takes whatever is queued and sends it as one
// engine pipeline, on one connection to the region. Under load, many clients' commands share one write and one read
// on that connection instead of one each (what twemproxy does); a lone
// command goes at once. Each client's commands stay in its order, and its
// replies are its own.
//
// Runs of read-only commands queue apart from the rest, so that a pipeline
// of reads whose answers were lost is replayed on the next region as a
// single read would be (the engine replays a pipeline only when every
// command in it may be replayed).

const (
	// maxSenders bounds the pipelines in flight per queue (connections
	// sending what is queued: see submit): one per senderRTT of the active region's round trip (its health checks'
	// smoothed latency). A region far away gets more pipelines in flight,
	// a near one keeps one, with larger pipelines (fewer writes and reads
	// for the same commands). The time a pipeline takes here is no guide:
	// on a busy machine it is mostly waiting for a CPU.
	maxSenders = 16
	senderRTT  = 2 * time.Millisecond
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
	want   atomic.Int32  // senders per queue for the active region's round trip
	wg     sync.WaitGroup
}

type batchQueue struct {
	jobs    chan *batchJob
	senders atomic.Int32 // connections sending for this queue now
}

// newBatcher returns a batcher whose sender count follows the active
// region's round trip until ctx ends.
func newBatcher(ctx context.Context, c *geofailover.Client) *batcher {
	b := &batcher{client: c, ctx: ctx}
	for i := range b.queues {
		b.queues[i].jobs = make(chan *batchJob, queueLen)
	}
	b.want.Store(1)
	b.wg.Add(1)
	go b.follow()
	return b
}

// follow sets how many connections may send for each queue at once from
// the active region's round trip, every second.
func (b *batcher) follow() {
	defer b.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		for _, st := range b.client.Status() {
			if st.Active {
				b.want.Store(int32(min(maxSenders, 1+int(st.CheckLatency/senderRTT))))
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
//
// There are no sender goroutines: a connection that queues a run sends,
// itself, whatever is queued (its own run and others'), when fewer than
// want connections are sending; otherwise it waits for a sender to take
// its run. A sender that finishes looks again, so no run is left behind
// (a run queued while every sender was busy is seen by the sender's second
// look, or its own connection becomes a sender). A lone command thus goes
// out on its own connection's goroutine with no hand-off.
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
	for {
		n := q.senders.Load()
		if n >= b.want.Load() || !q.senders.CompareAndSwap(n, n+1) {
			break
		}
		b.send(q.jobs)
		q.senders.Add(-1)
		if len(q.jobs) == 0 {
			break
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
		name, _ := cmd.Args()[0].(string)
		if cmdtable.Lookup(lower(name))&cmdtable.ReadOnly == 0 {
			return false
		}
	}
	return true
}

// send takes what q holds (up to batchMax commands) and sends it as one
// engine pipeline, or as one command if that is all.
func (b *batcher) send(q chan *batchJob) {
	var jobs []*batchJob
	n := 0
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
	switch {
	case n == 0:
		return
	case len(jobs) == 1 && n == 1:
		_ = b.client.Process(b.ctx, jobs[0].cmds[0])
	default:
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
}
