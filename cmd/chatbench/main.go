// Command chatbench is jetchat's load tool. It speaks the WebSocket protocol
// to one or more chatd nodes and measures fan-out throughput and latency
// (fanout, ramp), memory per idle connection (conns), recovery after a node
// is killed (storm) and send acknowledgement latency (sendlat). It checks
// every delivery it measures: loss, duplicates and the prev chain.
//
// It only targets loopback addresses unless told otherwise (--allow-remote),
// and every run ends within its duration plus a grace period.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jetchat/jetchat/pkg/auth"
	"github.com/jetchat/jetchat/pkg/chat"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		os.Exit(1)
	}
}

const usage = `usage: chatbench <command> [flags]

commands:
  fanout   R rooms, S subscribers and P publishers per room, M msgs/s each;
           checks every delivery, reports deliveries/s and latency
  ramp     fanout rounds doubling M until delivery < 99% or p99 > 250 ms
  conns    N idle connections; the server's RSS per connection
  storm    N clients on several nodes; kill one; time until all resumed
  sendlat  ack latency at a fixed send rate

Run 'chatbench <command> --help' for its flags. chatd limits every
connection and user to --send-rate frames/s (default 50): run the server
under test with e.g. --send-rate 1000000 --send-burst 1000000.
`

// run parses args and runs one command. The JSON result goes to stdout, the
// table and progress to stderr.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return errors.New("no command")
		}
		return flag.ErrHelp
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("chatbench "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{stdout: stdout, stderr: stderr}
	o.register(fs, getenv)
	var runCmd func(context.Context, *options) error
	switch cmd {
	case "fanout":
		fo := fanoutFlags(fs, 10, 100, 1, 10)
		runCmd = func(ctx context.Context, o *options) error { return runFanout(ctx, o, fo) }
	case "ramp":
		fo := fanoutFlags(fs, 10, 100, 1, 5)
		maxRate := fs.Float64("max-rate", 10000, "stop doubling at this rate per publisher")
		runCmd = func(ctx context.Context, o *options) error { return runRamp(ctx, o, fo, *maxRate) }
	case "conns":
		co := connsFlags(fs)
		runCmd = func(ctx context.Context, o *options) error { return runConns(ctx, o, co) }
	case "storm":
		so := stormFlags(fs)
		runCmd = func(ctx context.Context, o *options) error { return runStorm(ctx, o, so) }
	case "sendlat":
		fo := &fanoutOpts{Subs: 0}
		fs.IntVar(&fo.Rooms, "rooms", 4, "rooms, one publisher each")
		total := fs.Float64("rate", 2000, "sends per second in total, spread over the publishers")
		fs.IntVar(&fo.TextBytes, "text-bytes", 0, "pad each message text to this many bytes")
		runCmd = func(ctx context.Context, o *options) error {
			fo.Pubs = 1
			fo.Rate = *total / float64(max(fo.Rooms, 1))
			return runSendLat(ctx, o, fo)
		}
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if err := o.init(); err != nil {
		return err
	}
	// Every run is bounded: its duration plus the grace period.
	ctx, cancel := context.WithTimeout(ctx, o.deadline(cmd))
	defer cancel()
	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return fmt.Errorf("--cpu-profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpu-profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	return runCmd(ctx, o)
}

// options are the flags every command shares.
type options struct {
	URLs        []string
	urlList     string
	TokenSecret string
	DevLogin    bool
	Duration    time.Duration
	Grace       time.Duration
	JSON        bool
	AllowRemote bool
	PID         int
	Prefix      string
	DialConc    int
	Quiet       bool
	CPUProfile  string

	stdout, stderr io.Writer
	tokens         *auth.Tokens
	hc             *http.Client
	rounds         int // ramp: how many durations the deadline must allow
}

func (o *options) register(fs *flag.FlagSet, getenv func(string) string) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&o.urlList, "url", env("CHATBENCH_URL", "ws://127.0.0.1:8080/ws"), "WebSocket URL(s) of chatd, comma-separated; clients are spread over them (CHATBENCH_URL)")
	fs.StringVar(&o.TokenSecret, "token-secret", env("CHAT_JWT_SECRET", ""), "mint HS256 tokens with chatd's --jwt-secret (CHAT_JWT_SECRET)")
	fs.BoolVar(&o.DevLogin, "dev-login", false, "get tokens from POST /api/v1/dev/login on the first URL's host (chatd in dev mode)")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "how long to send (per round for ramp)")
	fs.DurationVar(&o.Grace, "grace", 30*time.Second, "extra time for setup and draining; the run is cut at duration + grace")
	fs.BoolVar(&o.JSON, "json", false, "write the result as one JSON object on stdout")
	fs.BoolVar(&o.AllowRemote, "allow-remote", false, "allow non-loopback targets")
	fs.IntVar(&o.PID, "pid", 0, "chatd's process id, for its RSS and CPU; default: the process listening on the first URL's port, if found")
	fs.StringVar(&o.Prefix, "prefix", "", "room and user name prefix; default: unique per run")
	fs.IntVar(&o.DialConc, "dial-concurrency", 64, "connections opened at once")
	fs.BoolVar(&o.Quiet, "quiet", false, "no progress line")
	fs.StringVar(&o.CPUProfile, "cpu-profile", "", "write the load tool's own CPU profile (setup included) to this file")
}

// init validates the shared options and prepares tokens.
func (o *options) init() error {
	for _, u := range strings.Split(o.urlList, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "ws" && pu.Scheme != "wss") {
			return fmt.Errorf("--url %q: want ws://host:port/ws", u)
		}
		if !o.AllowRemote && !loopback(pu.Hostname()) {
			return fmt.Errorf("--url %q is not a loopback address: pass --allow-remote to load a remote server", u)
		}
		o.URLs = append(o.URLs, u)
	}
	if len(o.URLs) == 0 {
		return errors.New("no --url")
	}
	switch {
	case o.TokenSecret != "":
		t, err := auth.New([]byte(o.TokenSecret), "jetchat")
		if err != nil {
			return fmt.Errorf("--token-secret: %w", err)
		}
		o.tokens = t
	case !o.DevLogin:
		return errors.New("need --token-secret (chatd's --jwt-secret) or --dev-login")
	}
	if o.Duration <= 0 {
		return errors.New("--duration must be positive")
	}
	if o.Prefix == "" {
		o.Prefix = "cb" + strconv.FormatInt(time.Now().Unix()%1e6, 36) + strings.ToLower(rand.Text()[:4])
	}
	if err := chat.ValidateRoomID(o.Prefix + "-r99999"); err != nil {
		return fmt.Errorf("--prefix: %w", err)
	}
	o.DialConc = max(o.DialConc, 1)
	// One transport for every handshake: the connections are hijacked, so
	// this only bounds idle keep-alive sockets of the dev-login calls.
	o.hc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, Proxy: nil}}
	if o.PID == 0 {
		if pu, _ := url.Parse(o.URLs[0]); pu != nil {
			if port, err := strconv.Atoi(pu.Port()); err == nil {
				o.PID, _ = listenerPID(port)
			}
		}
	}
	return nil
}

func (o *options) deadline(cmd string) time.Duration {
	d := o.Duration + o.Grace
	if cmd == "ramp" {
		d = 12*o.Duration + 4*o.Grace // bounded number of rounds, see runRamp
	}
	return d
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// token returns a token for user.
func (o *options) token(ctx context.Context, user string) (string, error) {
	if o.tokens != nil {
		return o.tokens.Issue(user, 24*time.Hour)
	}
	pu, _ := url.Parse(o.URLs[0])
	scheme := "http"
	if pu.Scheme == "wss" {
		scheme = "https"
	}
	body, _ := json.Marshal(map[string]string{"name": user})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+pu.Host+"/api/v1/dev/login", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := o.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("dev login: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		Token string `json:"token"`
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("dev login: %s (is chatd in dev mode?)", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Token == "" {
		return "", fmt.Errorf("dev login: bad answer: %v", err)
	}
	return out.Token, nil
}

// url returns the URL client i connects to: the list, round robin.
func (o *options) url(i int) string { return o.URLs[i%len(o.URLs)] }

// dial opens a raw connection for user to the i-th URL.
func (o *options) dial(ctx context.Context, i int, user string) (*rawConn, error) {
	tok, err := o.token(ctx, user)
	if err != nil {
		return nil, err
	}
	return dialRaw(ctx, o.hc, o.url(i), tok)
}

// room is the id of the run's i-th room.
func (o *options) room(i int) string { return fmt.Sprintf("%s-r%d", o.Prefix, i) }

// createRooms creates n rooms as the run's owner, over one connection.
func (o *options) createRooms(ctx context.Context, n int) ([]string, error) {
	c, err := o.dial(ctx, 0, o.Prefix+"-owner")
	if err != nil {
		return nil, fmt.Errorf("owner: %w", err)
	}
	defer c.close()
	rooms := make([]string, n)
	for i := range rooms {
		rooms[i] = o.room(i)
		f := chat.ClientFrame{Type: chat.FrameCreate, Ref: "c" + strconv.Itoa(i), Room: rooms[i], ID: "create-" + rooms[i]}
		for {
			_, err := c.roundTrip(ctx, f)
			var ce *chat.Error
			if errors.As(err, &ce) && ce.Code == chat.ErrRateLimited {
				// chatd's default send rate: wait, same id.
				select {
				case <-time.After(100 * time.Millisecond):
					continue
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			if err != nil {
				return nil, fmt.Errorf("create %s: %w", rooms[i], err)
			}
			break
		}
	}
	return rooms, nil
}

// parallel runs fn(i) for i in [0, n) with at most conc at once and returns
// the first error.
func parallel(ctx context.Context, n, conc int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	sem := make(chan struct{}, conc)
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}(i)
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

// progress prints line() to stderr every second until stop is called.
func (o *options) progress(name string, line func() string) (stop func()) {
	if o.Quiet {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	start := time.Now()
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(o.stderr, "[%s %3.0fs] %s\n", name, time.Since(start).Seconds(), line())
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// report writes the result: JSON on stdout if asked, a table on stderr.
func (o *options) report(v any, rows [][2]string) error {
	tw := tabwriter.NewWriter(o.stderr, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", r[0], r[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if o.JSON {
		return json.NewEncoder(o.stdout).Encode(v)
	}
	return nil
}

// serverStats samples chatd's CPU and RSS when its pid is known.
type serverStats struct {
	pid   int
	cpu0  time.Duration
	self0 time.Duration
	t0    time.Time
}

func (o *options) startStats() *serverStats {
	s := &serverStats{pid: o.PID, self0: selfCPU(), t0: time.Now()}
	if s.pid > 0 {
		s.cpu0, _ = procCPU(s.pid)
	}
	return s
}

// resources is CPU use over a run, in cores (CPU seconds per second).
type resources struct {
	ClientCPU   float64 `json:"client_cpu_cores"`
	ServerCPU   float64 `json:"server_cpu_cores,omitempty"`
	ServerRSSMB float64 `json:"server_rss_mib,omitempty"`
	ServerPID   int     `json:"server_pid,omitempty"`
}

func (s *serverStats) stop() resources {
	el := time.Since(s.t0).Seconds()
	r := resources{ClientCPU: round3((selfCPU() - s.self0).Seconds() / el), ServerPID: s.pid}
	if s.pid > 0 {
		if c, err := procCPU(s.pid); err == nil {
			r.ServerCPU = round3((c - s.cpu0).Seconds() / el)
		}
		if rss, err := procRSS(s.pid); err == nil {
			r.ServerRSSMB = round3(float64(rss) / (1 << 20))
		}
	}
	return r
}

func (r resources) String() string {
	s := fmt.Sprintf("chatbench %.2f cores", r.ClientCPU)
	if r.ServerPID > 0 {
		s += fmt.Sprintf(", chatd (pid %d) %.2f cores, RSS %.1f MiB", r.ServerPID, r.ServerCPU, r.ServerRSSMB)
	}
	return s
}
