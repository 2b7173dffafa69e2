// Package metrics exposes a watching controller's state to Prometheus
// (ifl probe --watch --metrics): hosts by status, round durations,
// changes by kind, announcements received, verified and refused, and
// errors by stage. The agent has none: it stays small.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ifl-project/ifl/internal/controller/announce"
	"github.com/ifl-project/ifl/internal/controller/engine"
	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/controller/verify"
)

// Kinds of rounds, the label kind.
const (
	KindSweep        = "sweep"        // a probe of every target
	KindBroadcast    = "broadcast"    // a broadcast round
	KindAnnouncement = "announcement" // the verification of announcing addresses
)

// Stages of errors, the label stage.
const (
	StageProbe    = "probe"    // a round failed
	StageState    = "state"    // the inventory could not be updated
	StageAnnounce = "announce" // the announcement listener failed
)

// hostStatuses are the statuses ifl_hosts shows, each from the start.
var hostStatuses = []verify.Status{verify.Agent, verify.Busy, verify.Rejected, verify.Mismatch, verify.NotAgent, verify.Failed}

// Metrics are a controller's metrics, in a registry of their own.
type Metrics struct {
	reg         *prometheus.Registry
	hosts       *prometheus.GaugeVec
	unseen      prometheus.Gauge
	inventory   prometheus.Gauge
	duration    *prometheus.HistogramVec
	rounds      *prometheus.CounterVec
	last        *prometheus.GaugeVec
	changes     *prometheus.CounterVec
	errors      *prometheus.CounterVec
	annVerified prometheus.Counter
	// hostsKind is the kind of round ifl_hosts and ifl_hosts_unseen
	// show.
	hostsKind string
}

// New returns the metrics; ann, if not nil, tells the announcement
// listener's counts at each scrape.
func New(ann func() announce.Stats) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), hostsKind: KindSweep}
	m.hosts = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ifl_hosts",
		Help: "Addresses of the last sweep (broadcast round, where every round is one) whose port opened, by what they were: agent, busy, rejected (wrong key or clock), identity-mismatch, not-agent, error."}, []string{"status"})
	m.unseen = prometheus.NewGauge(prometheus.GaugeOpts{Name: "ifl_hosts_unseen",
		Help: "Hosts of the inventory that the last sweep (broadcast round, where every round is one) looked for and did not find."})
	m.inventory = prometheus.NewGauge(prometheus.GaugeOpts{Name: "ifl_inventory_hosts",
		Help: "Hosts in the inventory after the last round."})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ifl_round_duration_seconds",
		Help:    "How long rounds took, by kind: sweep, broadcast, announcement.",
		Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900}}, []string{"kind"})
	m.rounds = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ifl_rounds_total",
		Help: "Rounds run, by kind and outcome: complete, or incomplete (cut short or failed)."}, []string{"kind", "outcome"})
	m.last = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ifl_last_round_timestamp_seconds",
		Help: "When the last complete round of each kind ended, in Unix seconds: alert when time() minus it passes a few watch intervals."}, []string{"kind"})
	m.changes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ifl_changes_total",
		Help: "Changes recorded in the inventory, by kind (new, moved, renamed, unseen, warning) and by the kind of round that found them."}, []string{"kind", "via"})
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ifl_errors_total",
		Help: "Errors by stage: probe (a round failed), state (the inventory could not be updated), announce."}, []string{"stage"})
	m.annVerified = prometheus.NewCounter(prometheus.CounterOpts{Name: "ifl_announcements_verified_total",
		Help: "Announcing addresses where the handshake then verified an agent."})
	m.reg.MustRegister(m.hosts, m.unseen, m.inventory, m.duration, m.rounds, m.last, m.changes, m.errors, m.annVerified,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, s := range hostStatuses {
		m.hosts.WithLabelValues(s.String())
	}
	for _, k := range []string{KindSweep, KindBroadcast, KindAnnouncement} {
		m.duration.WithLabelValues(k)
		for _, o := range []string{"complete", "incomplete"} {
			m.rounds.WithLabelValues(k, o)
		}
		for _, c := range []string{"new", "moved", "renamed", "unseen", "warning"} {
			m.changes.WithLabelValues(c, k)
		}
	}
	for _, s := range []string{StageProbe, StageState, StageAnnounce} {
		m.errors.WithLabelValues(s)
	}
	if ann != nil {
		m.reg.MustRegister(&annCollector{stats: ann})
	}
	return m
}

// Round records one round, recorded in the inventory with the changes
// ch (nil if it was not), and the inventory's size after it (-1: not
// known).
func (m *Metrics) Round(kind string, r *engine.Round, ch *inventory.Changes, hosts int) {
	if r == nil {
		return
	}
	m.duration.WithLabelValues(kind).Observe(r.Elapsed.Seconds())
	outcome := "incomplete"
	if r.Complete {
		outcome = "complete"
		m.last.WithLabelValues(kind).Set(float64(time.Now().UnixNano()) / 1e9)
	}
	m.rounds.WithLabelValues(kind, outcome).Inc()
	if kind == m.hostsKind && r.Complete {
		n := map[verify.Status]int{}
		for _, res := range r.Results {
			n[res.Status]++
		}
		for _, s := range hostStatuses {
			m.hosts.WithLabelValues(s.String()).Set(float64(n[s]))
		}
		if ch != nil {
			m.unseen.Set(float64(len(ch.Unseen)))
		}
	}
	if kind == KindAnnouncement {
		m.annVerified.Add(float64(len(r.Observations)))
	}
	if hosts >= 0 {
		m.inventory.Set(float64(hosts))
	}
	if ch == nil {
		return
	}
	for c, n := range map[string]int{"new": len(ch.New), "moved": len(ch.Moved), "renamed": len(ch.Renamed), "unseen": len(ch.Unseen), "warning": len(ch.Warnings)} {
		m.changes.WithLabelValues(c, kind).Add(float64(n))
	}
}

// HostsFrom makes ifl_hosts and ifl_hosts_unseen show the rounds of
// kind (KindSweep until then): KindBroadcast for a watch whose every
// round is a broadcast one, which runs no sweep. Call it before any
// round.
func (m *Metrics) HostsFrom(kind string) { m.hostsKind = kind }

// Error counts an error of a stage.
func (m *Metrics) Error(stage string) { m.errors.WithLabelValues(stage).Inc() }

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// annCollector reads the announcement listener's counts at each scrape.
type annCollector struct {
	stats func() announce.Stats
}

var (
	annReceived = prometheus.NewDesc("ifl_announcements_received_total", "Datagrams read on the announcement port.", nil, nil)
	annAccepted = prometheus.NewDesc("ifl_announcements_accepted_total", "Announcements that made an address wait for verification (within the handshake budget).", nil, nil)
	annMerged   = prometheus.NewDesc("ifl_announcements_merged_total", "Announcements for an address already waiting for, or under, verification.", nil, nil)
	annRefused  = prometheus.NewDesc("ifl_announcements_refused_total", "Announcements refused, by reason: form, source (outside the targets), stale, key (wrong key or forged), port, replay, budget, full.", []string{"reason"}, nil)
)

func (c *annCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- annReceived
	ch <- annAccepted
	ch <- annMerged
	ch <- annRefused
}

func (c *annCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	ch <- prometheus.MustNewConstMetric(annReceived, prometheus.CounterValue, float64(st.Received))
	ch <- prometheus.MustNewConstMetric(annAccepted, prometheus.CounterValue, float64(st.Accepted))
	ch <- prometheus.MustNewConstMetric(annMerged, prometheus.CounterValue, float64(st.Merged))
	for _, r := range announce.Reasons() {
		ch <- prometheus.MustNewConstMetric(annRefused, prometheus.CounterValue, float64(st.Refused[r]), r.String())
	}
}
