package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/ifl-project/ifl/internal/controller/announce"
	"github.com/ifl-project/ifl/internal/controller/engine"
	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/controller/metrics"
	"github.com/ifl-project/ifl/internal/controller/verify"
	"github.com/ifl-project/ifl/internal/support/sdnotify"
)

// ServiceFlags are ifl probe --watch's flags as a service.
type ServiceFlags struct {
	Announcements string `placeholder:"[ADDR]:PORT" help:"With --watch: listen on this UDP port (e.g. :7441) for agents' announcements of their new addresses, and verify each announcing address at once with the handshake, within the targets and a bound (1,024 at once, then 100 a second, on top of the sweeps' --rate); off by default. Pings tell agents the port."`
	Metrics       string `placeholder:"[ADDR]:PORT" help:"With --watch: serve Prometheus metrics at http://ADDR:PORT/metrics (ADDR 127.0.0.1 when left out); off by default."`
}

const serviceHelp = `--watch as a service: --announcements :7441 listens for agents'
announcements (an agent sends one from each new address the moment it
has it, to the controllers whose pings asked for it, and to those in its
agent.yaml under controllers:). An announcement is only a hint: ifl
verifies the agent with the handshake at the address the datagram came
from, never at an address written in it, only inside the targets, and at
most 1,024 addresses at once then 100 a second (on top of the sweeps'
--rate); then it records the move of a host the inventory knows as a
probe would, logged with "via": "announcement" (a new host waits for
the next probe). A lost announcement costs only time: the next probe
finds the move.
--metrics 127.0.0.1:9174 serves Prometheus metrics (README: Metrics).
Under systemd (Type=notify) ifl says READY when the first round is done,
and WATCHDOG while rounds keep completing: a round must end within
WatchdogSec past the interval, or systemd restarts the controller.`

// check checks the service flags against --watch.
func (f *ServiceFlags) check(watch time.Duration) error {
	for _, fl := range []struct{ name, v string }{{"--announcements", f.Announcements}, {"--metrics", f.Metrics}} {
		if fl.v == "" {
			continue
		}
		if watch == 0 {
			return fmt.Errorf("%s works with --watch only: a single probe has no time to listen", fl.name)
		}
		if _, err := announce.ParseAddr(fl.v); err != nil {
			return fmt.Errorf("%s %w", fl.name, err)
		}
	}
	return nil
}

// roundHook, if set, is called before each round of a watch: tests make
// a controller hang with it.
var roundHook func()

// service is what a watch runs beside its rounds: the announcement
// listener, the metrics, systemd's notifications.
type service struct {
	r       *rounds
	log     zerolog.Logger
	metrics *metrics.Metrics
	ann     *announce.Listener

	// record is held by each round for its record alone: an
	// announcement verified while a sweep runs is recorded at once, and
	// the sweep's record, later, does not undo it (engine.Round.Record).
	record sync.Mutex

	last     atomic.Int64 // when the last round ended (the service started), Unix nanoseconds
	readyOne sync.Once
	stopping []func()
	wg       sync.WaitGroup
}

// startService opens what the flags ask for and starts serving it.
func (r *rounds) startService(ctx context.Context, log zerolog.Logger) (*service, error) {
	f := r.cmd.ServiceFlags
	s := &service{r: r, log: log}
	s.last.Store(time.Now().UnixNano())
	if f.Announcements != "" {
		ap, _ := announce.ParseAddr(f.Announcements)
		pc, err := announce.Listen(ap)
		if err != nil {
			return nil, fmt.Errorf("--announcements %s: %w (another controller listening? choose another port)", f.Announcements, err)
		}
		set := r.cmd.TargetFlags.set
		s.ann = announce.New(announce.Config{Key: r.v.Key, Port: r.v.Port, Accept: func(a netip.Addr) bool { return set != nil && set.Contains(a.WithZone("")) }})
		// Pings tell agents where to announce.
		r.v.AnnouncePort = uint16(pc.LocalAddr().(*net.UDPAddr).Port)
		actx, cancel := context.WithCancel(ctx)
		s.stopping = append(s.stopping, cancel)
		s.wg.Go(func() {
			if err := s.ann.Serve(actx, pc); err != nil {
				s.error(metrics.StageAnnounce, "announce_failed", err)
			}
		})
		s.wg.Go(func() { s.announcementRounds(actx) })
		log.Info().Str("event", "listening").Str("proto", "udp").Str("addr", pc.LocalAddr().String()).Msg("listening for announcements")
	}
	if f.Metrics != "" || f.Announcements != "" {
		var stats func() announce.Stats
		if s.ann != nil {
			stats = s.ann.Stats
		}
		s.metrics = metrics.New(stats)
		if r.cmd.Broadcast {
			s.metrics.HostsFrom(metrics.KindBroadcast)
		}
	}
	if f.Metrics != "" {
		ap, _ := announce.ParseAddr(f.Metrics)
		if !ap.Addr().IsValid() {
			ap = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ap.Port())
		}
		ln, err := net.Listen("tcp", ap.String())
		if err != nil {
			s.stop()
			return nil, fmt.Errorf("--metrics %s: %w", f.Metrics, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", s.metrics.Handler())
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		s.stopping = append(s.stopping, func() { srv.Close() })
		s.wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error().Str("event", "metrics_failed").Err(err).Msg("serving metrics failed")
			}
		})
		log.Info().Str("event", "listening").Str("proto", "tcp").Str("addr", ln.Addr().String()).Msg("serving metrics")
	}
	if wd, on, err := sdnotify.WatchdogInterval(); err != nil {
		log.Warn().Str("event", "watchdog").Err(err).Msg("not sending WATCHDOG: systemd will restart the controller")
	} else if on {
		wctx, cancel := context.WithCancel(ctx)
		s.stopping = append(s.stopping, cancel)
		s.wg.Go(func() { s.watchdog(wctx, wd) })
	}
	return s, nil
}

// stop stops what the service started and waits for it.
func (s *service) stop() {
	if s == nil {
		return
	}
	sdnotify.Notify(sdnotify.Stopping)
	for _, f := range s.stopping {
		f()
	}
	s.wg.Wait()
}

// starting is called as a round starts: it runs the test hook.
func (s *service) starting() {
	if roundHook != nil {
		roundHook()
	}
}

// hold holds the record until the returned function is called, after
// the round's record.
func (s *service) hold() func() {
	if s == nil {
		return func() {}
	}
	s.record.Lock()
	return s.record.Unlock
}

// roundDone is told of each round of the watch, sweep or broadcast, once
// it is recorded.
func (s *service) roundDone(run *probeRun, broadcast bool) {
	if s == nil {
		return
	}
	s.last.Store(time.Now().UnixNano())
	s.readyOne.Do(func() {
		if err := sdnotify.Notify(sdnotify.Ready); err != nil {
			s.log.Warn().Str("event", "notify").Err(err).Msg("telling systemd the controller is ready failed")
		}
	})
	if s.metrics == nil || run == nil {
		return
	}
	kind := metrics.KindSweep
	if broadcast {
		kind = metrics.KindBroadcast
	}
	s.observe(kind, run.round, run.changes, run.stateErr)
}

// observe puts a round in the metrics.
func (s *service) observe(kind string, round *engine.Round, ch *inventory.Changes, stateErr error) {
	if s.metrics == nil {
		return
	}
	if round != nil && !round.Complete {
		s.metrics.Error(metrics.StageProbe)
	}
	if stateErr != nil {
		s.metrics.Error(metrics.StageState)
	}
	hosts := -1
	if s.r.store != nil {
		if st, err := s.r.store.Load(context.Background()); err == nil {
			hosts = len(st.Hosts)
		}
	}
	s.metrics.Round(kind, round, ch, hosts)
}

func (s *service) error(stage, event string, err error) {
	s.log.Error().Str("event", event).Err(err).Msg(event)
	if s.metrics != nil {
		s.metrics.Error(stage)
	}
}

// announcementRounds verifies the addresses that announcements came
// from, as they come, and records what it verified.
func (s *service) announcementRounds(ctx context.Context) {
	log := s.log.With().Str("via", "announcement").Logger()
	for {
		hints, err := s.ann.Take(ctx)
		if err != nil {
			return
		}
		addrs := make([]netip.Addr, len(hints))
		for i, h := range hints {
			addrs[i] = h.Addr
		}
		round, err := engine.Announced(ctx, addrs, s.announceVerifier(), engine.RoundOptions{Pace: s.ann.Pace})
		if ctx.Err() != nil {
			s.ann.Done(hints)
			return
		}
		var ch *inventory.Changes
		var stateErr error
		if s.r.store != nil {
			release := s.hold()
			ch, stateErr = round.Record(context.WithoutCancel(ctx), s.r.store, s.r.site, time.Now().UTC())
			release()
		}
		s.ann.Done(hints)
		// In the metrics before the log says so, as a sweep's round: a
		// reader of the log then finds the round in a scrape.
		s.observe(metrics.KindAnnouncement, round, ch, stateErr)
		switch {
		case err != nil:
			log.Error().Str("event", "probe_failed").Err(err).Msg("verifying announcing addresses failed")
		case stateErr != nil:
			log.Error().Str("event", "state_failed").Err(stateErr).Msg("updating the inventory failed")
		default:
			logChanges(log, ch)
			log.Info().Str("event", "announced").Int("addresses", len(addrs)).Int("agents", len(round.Observations)).
				Float64("seconds", round.Elapsed.Seconds()).Msg("verified announcing addresses")
		}
	}
}

// announceVerifier is the sweeps' verifier for one announcement round,
// with at most announce.Burst verifications in flight: announcements
// may make the controller dial no more than that at once, whatever
// --concurrency allows a sweep.
func (s *service) announceVerifier() *verify.Verifier {
	v := *s.r.v
	if v.Concurrency <= 0 || v.Concurrency > announce.Burst {
		v.Concurrency = announce.Burst
	}
	return &v
}

// watchdog tells systemd the controller is alive every half interval,
// while the last round ended less than the watch interval and one
// watchdog interval ago: a controller whose rounds stop is restarted.
func (s *service) watchdog(ctx context.Context, wd time.Duration) {
	t := time.NewTicker(wd / 2)
	defer t.Stop()
	for {
		if s.alive(time.Now(), wd) {
			if err := sdnotify.Notify(sdnotify.Watchdog); err != nil {
				s.log.Warn().Str("event", "watchdog").Err(err).Msg("telling systemd the controller is alive failed")
			}
		} else {
			s.log.Error().Str("event", "hung").Dur("since_round", time.Since(time.Unix(0, s.last.Load()))).Msg("no round ended within the watch interval and the watchdog interval: not telling systemd the controller is alive")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// alive reports whether the last round ended (or the service started)
// within the watch interval and wd before now.
func (s *service) alive(now time.Time, wd time.Duration) bool {
	return now.Sub(time.Unix(0, s.last.Load())) <= s.r.cmd.Watch+wd
}
