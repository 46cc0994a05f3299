package failovertest

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one redis-server process this package started, listening on
// 127.0.0.1 only. Its methods signal only that process, by PID.
type Server struct {
	// Addr is "127.0.0.1:port"; Port is the port. Both stay the same across
	// Restart.
	Addr string
	Port int
	// Version is the server's version, e.g. "7.0.15".
	Version string
	// TLS is the client configuration for a server started WithTLS (nil
	// otherwise): it trusts the server and presents a client certificate.
	TLS *tls.Config
	// Username and Password are the ACL user a server started WithUser
	// requires ("" otherwise).
	Username, Password string

	bin   string
	dir   string
	extra []string // more redis-server arguments
	// sentinelConf is the configuration file of a Sentinel ("" for a
	// server): the process runs with --sentinel.
	sentinelConf string

	mu     sync.Mutex // protects cmd, exited
	cmd    *exec.Cmd
	exited chan struct{}
}

// ServerOption configures StartServer, StartServers and LaunchServer.
type ServerOption func(*serverConfig)

type serverConfig struct {
	bin        string
	args       []string
	minVersion string
	ca         *CA
	user, pass string
	sentinel   string // the configuration of a Sentinel (see StartSentinelGroup)
}

// WithTLS makes the server speak TLS only, with a certificate signed by ca
// (for 127.0.0.1 and localhost); client certificates signed by ca are
// accepted but not required. Server.TLS is the client configuration to use.
func WithTLS(ca *CA) ServerOption { return func(c *serverConfig) { c.ca = ca } }

// WithUser makes the server require the ACL user name with password (all
// keys, channels and commands), and switches the default user off, so an
// unauthenticated connection gets NOAUTH. Server.Username and
// Server.Password hold them.
func WithUser(name, password string) ServerOption {
	return func(c *serverConfig) { c.user, c.pass = name, password }
}

// WithBinary runs the given redis-server instead of $REDIS_SERVER or the
// one on PATH.
func WithBinary(path string) ServerOption { return func(c *serverConfig) { c.bin = path } }

// WithArgs passes more arguments to redis-server (e.g. "--maxmemory",
// "10mb"); they are kept for Restart.
func WithArgs(args ...string) ServerOption {
	return func(c *serverConfig) { c.args = append(c.args, args...) }
}

// WithPersistence turns on the append-only file with an fsync per write, so
// a server killed with SIGKILL keeps every write it acknowledged across
// Restart. Without it a server persists nothing.
func WithPersistence() ServerOption {
	return WithArgs("--appendonly", "yes", "--appendfsync", "always")
}

// WithMinVersion refuses a redis-server older than version (e.g. "7.0",
// which shard channels need), with an error that says which was found.
func WithMinVersion(version string) ServerOption {
	return func(c *serverConfig) { c.minVersion = version }
}

// ErrNoRedisServer is returned when no redis-server binary can be found.
var ErrNoRedisServer = errors.New("failovertest: redis-server not found on PATH; install it (apt-get install -y redis-server, brew install redis) or set REDIS_SERVER to its path")

// Binary returns the redis-server to use: $REDIS_SERVER, else the one on
// PATH, else ErrNoRedisServer.
func Binary() (string, error) {
	if p := os.Getenv("REDIS_SERVER"); p != "" {
		return p, nil
	}
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return "", ErrNoRedisServer
	}
	return p, nil
}

// StartServer starts a redis-server on a free loopback port for t. It is
// killed and its files removed when the test ends, even if it fails or
// panics; its log is printed if the test failed. Without redis-server the
// test fails when CI=true, and is skipped otherwise (with the install hint).
func StartServer(t testing.TB, opts ...ServerOption) *Server {
	t.Helper()
	s, err := LaunchServer(t.TempDir(), opts...)
	forTest(t, err, "redis-server", func() []*Server { return []*Server{s} })
	return s
}

// forTest does for a Start function what it promises about the processes
// that its Launch function started (nodes, after err is checked): without
// redis-server the test is skipped, or fails when CI=true; any other error
// fails it; the processes are killed when it ends, their logs printed if
// it failed.
func forTest(t testing.TB, err error, what string, nodes func() []*Server) {
	t.Helper()
	if errors.Is(err, ErrNoRedisServer) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range nodes() {
			if t.Failed() {
				t.Logf("%s %s log:\n%s", what, s.Addr, s.Log(40))
			}
			s.Kill()
		}
	})
}

// StartServers starts n servers for t, as StartServer does.
func StartServers(t testing.TB, n int, opts ...ServerOption) []*Server {
	t.Helper()
	out := make([]*Server, n)
	for i := range out {
		out[i] = StartServer(t, opts...)
	}
	return out
}

// LaunchServer starts a redis-server on a free loopback port, keeping its
// files in dir, for use outside tests. The caller must Kill it.
func LaunchServer(dir string, opts ...ServerOption) (*Server, error) {
	var cfg serverConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.bin == "" {
		bin, err := Binary()
		if err != nil {
			return nil, err
		}
		cfg.bin = bin
	}
	version, err := serverVersion(cfg.bin)
	if err != nil {
		return nil, err
	}
	if cfg.minVersion != "" && versionLess(version, cfg.minVersion) {
		return nil, fmt.Errorf("failovertest: %s is redis-server %s; %s or newer is needed", cfg.bin, version, cfg.minVersion)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &Server{bin: cfg.bin, dir: dir, extra: cfg.args, Version: version, Username: cfg.user, Password: cfg.pass}
	if cfg.user != "" {
		s.extra = append(s.extra, "--user", cfg.user, "on", ">"+cfg.pass, "~*", "&*", "+@all", "--user", "default", "off")
	}
	if cfg.sentinel != "" {
		s.sentinelConf = filepath.Join(dir, "sentinel.conf")
		if err := os.WriteFile(s.sentinelConf, []byte(cfg.sentinel), 0o600); err != nil {
			return nil, err
		}
		s.extra = nil
		s.Username, s.Password = "", ""
	}
	if cfg.ca != nil {
		args, err := cfg.ca.serverArgs(dir)
		if err != nil {
			return nil, err
		}
		s.extra = append(s.extra, args...)
		s.TLS = cfg.ca.ClientConfig()
	}
	for range 5 {
		port, perr := freePort()
		if perr != nil {
			return nil, perr
		}
		s.Port = port
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
		if err = s.start(); err == nil {
			return s, nil
		}
	}
	return nil, err
}

var (
	versionMu    sync.Mutex
	versionCache = map[string]string{}
	versionRE    = regexp.MustCompile(`v=(\d+\.\d+\.\d+)`)
)

// serverVersion runs "bin --version" (once per binary).
func serverVersion(bin string) (string, error) {
	versionMu.Lock()
	defer versionMu.Unlock()
	if v, ok := versionCache[bin]; ok {
		return v, nil
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("failovertest: %s --version: %w", bin, err)
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("failovertest: %s --version printed %q, not a redis-server version", bin, strings.TrimSpace(string(out)))
	}
	versionCache[bin] = string(m[1])
	return string(m[1]), nil
}

// versionLess compares dotted versions numerically ("7.0.15" < "7.2").
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("no free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start() error {
	port := []string{"--port", strconv.Itoa(s.Port)}
	if s.TLS != nil {
		port = []string{"--port", "0", "--tls-port", strconv.Itoa(s.Port)}
	}
	args := append(append(port, "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--logfile", filepath.Join(s.dir, "redis.log"), "--protected-mode", "no",
	), s.extra...)
	if s.sentinelConf != "" {
		args = []string{s.sentinelConf, "--sentinel", "--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
			"--dir", s.dir, "--logfile", filepath.Join(s.dir, "redis.log"), "--protected-mode", "no"}
	}
	cmd := exec.Command(s.bin, args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("redis-server on port %d exited at start:\n%s", s.Port, s.Log(5))
		default:
		}
		if s.ping() == nil {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.Kill()
	return fmt.Errorf("redis-server on port %d did not answer within 5s", s.Port)
}

// ping sends PING over a raw connection (TLS for a TLS server) and
// expects +PONG, or -NOAUTH from a server that requires a user.
func (s *Server) ping() error {
	d := &net.Dialer{Timeout: 200 * time.Millisecond}
	var conn net.Conn
	var err error
	if s.TLS != nil {
		conn, err = (&tls.Dialer{NetDialer: d, Config: s.TLS}).Dial("tcp", s.Addr)
	} else {
		conn, err = d.Dial("tcp", s.Addr)
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") && !strings.HasPrefix(line, "-NOAUTH") { // NOAUTH: up, with requirepass
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

// Options returns go-redis options that reach the server: its address,
// and its user and TLS configuration when it has them.
func (s *Server) Options() *redis.Options {
	o := &redis.Options{Addr: s.Addr, Username: s.Username, Password: s.Password}
	if s.TLS != nil {
		o.TLSConfig = s.TLS.Clone()
	}
	return o
}

// URL returns the server's redis:// URL (rediss:// for a TLS server), with
// its user and password when it has them. A URL cannot carry the TLS
// configuration: give s.TLS with it (geofailover.Endpoint.TLSConfig).
func (s *Server) URL() string {
	u := url.URL{Scheme: "redis", Host: s.Addr}
	if s.TLS != nil {
		u.Scheme = "rediss"
	}
	if s.Username != "" || s.Password != "" {
		u.User = url.UserPassword(s.Username, s.Password)
	}
	return u.String()
}

// PID returns the process ID of the running server (0 if none).
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Kill sends SIGKILL and waits for the process to be gone. Safe to repeat:
// killing a server that is not running returns nil.
func (s *Server) Kill() error {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("failovertest: kill redis-server %s: %w", s.Addr, err)
	}
	<-exited
	return nil
}

// Pause sends SIGSTOP: the server keeps its sockets but answers nothing.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP) }

// Resume sends SIGCONT after Pause.
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return fmt.Errorf("failovertest: %s is not running", s.Addr)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("failovertest: signal %v to %s: %w", sig, s.Addr, err)
	}
	return nil
}

// Stop shuts the server down gracefully (SIGTERM) and waits for it to exit;
// with persistence on, it saves first. Safe to repeat; Restart starts it
// again.
func (s *Server) Stop() error {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGCONT) // a paused server cannot handle SIGTERM
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("failovertest: stop %s: %w", s.Addr, err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		return fmt.Errorf("failovertest: %s did not stop within 10s after SIGTERM; killed", s.Addr)
	}
}

// Log returns the last n lines of the server's log.
func (s *Server) Log(n int) string {
	b, err := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return tail(string(b), n)
}

// Restart starts the server again on the same port (killing it first if it
// is still running).
func (s *Server) Restart() error {
	s.Kill()
	var err error
	for range 50 { // the port may linger briefly
		if err = s.start(); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("failovertest: restart on port %d: %w", s.Port, err)
}

// WaitDown waits until the port refuses connections (bounded by ctx).
func (s *Server) WaitDown(ctx context.Context) error {
	for s.ping() == nil {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

func tail(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if !strings.Contains(l, "overcommit") {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
