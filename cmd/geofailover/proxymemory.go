package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The memory and drain parts of proxybench: geofailover proxy runs as a
// child process (this same program), so that its resident memory is its
// own, in front of two local regions.

// childEnv marks the child run by proxybench, for tests whose executable is
// not this program (see TestMain).
const childEnv = "GEOFAILOVER_PROXYBENCH_CHILD"

// proxyChild is geofailover proxy running as a child process.
type proxyChild struct {
	cmd    *exec.Cmd
	addr   string
	exited chan struct{}
}

var listeningLine = regexp.MustCompile(`listening on (\S+)`)

// startProxyChild starts geofailover proxy in front of the regions at urls.
func startProxyChild(maxClients int, urls ...string) (*proxyChild, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := append([]string{"proxy", "--listen", "127.0.0.1:0", "--max-clients", strconv.Itoa(maxClients)}, urls...)
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proxyChild{cmd: cmd, exited: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := listeningLine.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		_ = cmd.Wait()
		close(p.exited)
	}()
	select {
	case p.addr = <-addr:
		return p, nil
	case <-p.exited:
		return nil, errors.New("geofailover proxy exited at start")
	case <-time.After(15 * time.Second):
		p.kill()
		return nil, errors.New("geofailover proxy did not start listening within 15 s")
	}
}

// rss returns the child's resident memory in bytes.
func (p *proxyChild) rss() (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status (Linux only)")
}

// terminate sends SIGTERM and waits for the child to exit (kills it after
// 20 s); it returns how long the exit took.
func (p *proxyChild) terminate() time.Duration {
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		p.kill()
	}
	return time.Since(start)
}

func (p *proxyChild) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// dialMany opens n connections to addr, each of which has sent a PING and
// read its PONG, 32 dials at a time.
func dialMany(addr string, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range 32 {
		wg.Go(func() {
			buf := make([]byte, 7)
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err == nil {
					_ = c.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err = c.Write([]byte("PING\r\n")); err == nil {
						if _, err = io.ReadFull(c, buf); err == nil && string(buf) != "+PONG\r\n" {
							err = fmt.Errorf("PING answered %q", buf)
						}
					}
					_ = c.SetDeadline(time.Time{})
				}
				if err != nil {
					mu.Lock()
					first = cmp.Or(first, fmt.Errorf("connection %d: %w", i, err))
					mu.Unlock()
					if c != nil {
						_ = c.Close()
					}
					continue
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	if first != nil {
		closeAll(conns)
		return nil, first
	}
	return conns, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			_ = c.Close()
		}
	}
}

// busyLoad runs SET then GET of a 64-byte value on each connection, back to
// back, until the connections are closed; it returns the commands answered
// and any error but that of a closed connection.
func busyLoad(conns []net.Conn) (int64, error) {
	var done atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, len(conns))
	value := strings.Repeat("v", 64)
	for i, c := range conns {
		wg.Go(func() {
			key := fmt.Sprint("mem:", i)
			set := fmt.Sprintf("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(key), key, len(value), value)
			get := fmt.Sprintf("*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(key), key)
			rd := bufio.NewReader(c)
			for {
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				for _, req := range []string{set, get} {
					_, err := io.WriteString(c, req)
					var line string
					if err == nil {
						line, err = rd.ReadString('\n')
					}
					if err == nil && strings.HasPrefix(line, "$") {
						_, err = rd.Discard(len(value) + 2)
					}
					if err == nil && strings.HasPrefix(line, "-") {
						err = errors.New(strings.TrimSpace(line))
					}
					if err != nil {
						if !errors.Is(err, net.ErrClosed) {
							errs[i] = err
						}
						return
					}
					done.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return done.Load(), errors.Join(errs...)
}

// runProxyMemory reports the child proxy's resident memory with idle
// connections and with busy ones, each in a fresh process (Go keeps freed
// memory a while), over the same process with no client.
func runProxyMemory(ctx context.Context, dir string, idle, busy int, stdout io.Writer) error {
	east, west, stopRegions, err := launchRegions(filepath.Join(dir, "memory"))
	if err != nil {
		return err
	}
	defer stopRegions()
	// phase starts a proxy, measures it with one client that sent a PING,
	// then opens n connections, runs load on them (if any), and returns
	// both measures.
	phase := func(n int, load func(conns []net.Conn) (int64, error)) (base, loaded int64, err error) {
		p, err := startProxyChild(n+100, east.URL(), west.URL())
		if err != nil {
			return 0, 0, err
		}
		defer p.kill()
		warm, err := dialMany(p.addr, 1)
		if err != nil {
			return 0, 0, err
		}
		time.Sleep(2 * time.Second)
		base, err = p.rss()
		closeAll(warm)
		if err != nil {
			return 0, 0, err
		}
		conns, err := dialMany(p.addr, n)
		if err != nil {
			return 0, 0, err
		}
		defer closeAll(conns)
		if load == nil {
			time.Sleep(2 * time.Second)
			loaded, err = p.rss()
			return base, loaded, err
		}
		type outcome struct {
			peak int64
			err  error
		}
		sampled := make(chan outcome, 1)
		go func() {
			var o outcome
			for range 10 {
				select {
				case <-ctx.Done():
				case <-time.After(500 * time.Millisecond):
				}
				r, err := p.rss()
				o.peak, o.err = max(o.peak, r), cmp.Or(o.err, err)
			}
			closeAll(conns) // ends the load
			sampled <- o
		}()
		_, lerr := load(conns)
		o := <-sampled
		if lerr != nil {
			return 0, 0, fmt.Errorf("busy connections: %w", lerr)
		}
		return base, o.peak, o.err
	}
	idleBase, idleRSS, err := phase(idle, nil)
	if err != nil {
		return err
	}
	var served int64
	var took time.Duration
	busyBase, busyRSS, err := phase(busy, func(conns []net.Conn) (int64, error) {
		start := time.Now()
		n, err := busyLoad(conns)
		served, took = n, time.Since(start)
		return n, err
	})
	if err != nil {
		return err
	}
	mb := func(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }
	per := func(b, base int64, n int) string { return fmt.Sprintf("%.1f KB", float64(b-base)/float64(n)/1024) }
	fmt.Fprintf(stdout, "\nMemory: geofailover proxy's resident memory (VmRSS), two local regions, a fresh process each (%s):\n\n", time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintln(stdout, "| clients | resident memory | with one client | per connection, over one client |")
	fmt.Fprintln(stdout, "|---|---|---|---|")
	fmt.Fprintf(stdout, "| %d idle (each sent one PING) | %s | %s | %s |\n", idle, mb(idleRSS), mb(idleBase), per(idleRSS, idleBase, idle))
	fmt.Fprintf(stdout, "| %d busy (SET and GET of 64 bytes back to back, %.0f commands/s in all) | %s (highest of 10 samples in 5 s) | %s | %s |\n",
		busy, float64(served)/took.Seconds(), mb(busyRSS), mb(busyBase), per(busyRSS, busyBase, busy))
	return nil
}

// runProxyDrain sends SIGTERM to a child proxy under load and reports the
// commands sent before it that got no answer.
func runProxyDrain(dir string, clients int, stdout io.Writer) error {
	east, west, stopRegions, err := launchRegions(filepath.Join(dir, "drain"))
	if err != nil {
		return err
	}
	defer stopRegions()
	p, err := startProxyChild(clients+100, east.URL(), west.URL())
	if err != nil {
		return err
	}
	defer func() {
		select {
		case <-p.exited:
		default:
			p.kill()
		}
	}()
	conns, err := dialMany(p.addr, clients)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	const pipe = 8
	req := []byte(strings.Repeat("*3\r\n$3\r\nSET\r\n$5\r\ndrain\r\n$1\r\nv\r\n", pipe))
	var terminated atomic.Bool
	var lost, answered atomic.Int64
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			rd := bufio.NewReader(c)
			for {
				if _, err := c.Write(req); err != nil {
					return
				}
				inFlight := !terminated.Load()
				for i := range pipe {
					line, err := rd.ReadString('\n')
					if err != nil || line != "+OK\r\n" {
						if inFlight {
							lost.Add(int64(pipe - i))
						}
						return
					}
					answered.Add(1)
				}
			}
		})
	}
	time.Sleep(2 * time.Second)
	terminated.Store(true)
	before := answered.Load()
	exit := p.terminate()
	wg.Wait()
	fmt.Fprintf(stdout, "\nDrain: SIGTERM to geofailover proxy while %d clients send pipelines of %d SETs back to back (%s): %d commands answered before it, %d after it; %d commands sent before SIGTERM got no answer; the process exited %.0f ms after SIGTERM.\n",
		clients, pipe, time.Now().UTC().Format("2006-01-02"), before, answered.Load()-before, lost.Load(), float64(exit)/float64(time.Millisecond))
	if lost.Load() > 0 {
		return fmt.Errorf("drain: %d commands sent before SIGTERM got no answer", lost.Load())
	}
	return nil
}
