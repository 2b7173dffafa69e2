package metrics_test

import (
	"maps"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ifl-project/ifl/internal/controller/announce"
	"github.com/ifl-project/ifl/internal/controller/engine"
	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/controller/metrics"
	"github.com/ifl-project/ifl/internal/controller/verify"
)

// Scrape reads the metrics as Prometheus would: through the handler,
// with Prometheus' own text parser.
func Scrape(t *testing.T, m *metrics.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("scrape does not parse: %v\n%s", err, rec.Body)
	}
	return fams
}

// Series lists a family's series as name{label="value",...} value.
func Series(f *dto.MetricFamily) []string {
	var out []string
	for _, m := range f.Metric {
		var ls []string
		for _, l := range m.Label {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		v := 0.0
		switch {
		case m.Counter != nil:
			v = m.Counter.GetValue()
		case m.Gauge != nil:
			v = m.Gauge.GetValue()
		case m.Histogram != nil:
			v = float64(m.Histogram.GetSampleCount())
		}
		out = append(out, f.GetName()+"{"+strings.Join(ls, ",")+"} "+strconv.FormatFloat(v, 'g', -1, 64))
	}
	slices.Sort(out)
	return out
}

// TestMetricsBeforeAnyRound: every series shows from the start, at
// zero, so that an alert on a missing round has something to compare.
func TestMetricsBeforeAnyRound(t *testing.T) {
	var st announce.Stats
	st.Received, st.Accepted = 5, 1
	st.Refused[announce.Key] = 4
	fams := Scrape(t, metrics.New(func() announce.Stats { return st }))
	for name, want := range map[string][]string{
		"ifl_announcements_received_total": {"ifl_announcements_received_total{} 5"},
		"ifl_announcements_refused_total": {
			"ifl_announcements_refused_total{reason=budget} 0", "ifl_announcements_refused_total{reason=form} 0",
			"ifl_announcements_refused_total{reason=full} 0", "ifl_announcements_refused_total{reason=key} 4",
			"ifl_announcements_refused_total{reason=port} 0", "ifl_announcements_refused_total{reason=replay} 0",
			"ifl_announcements_refused_total{reason=source} 0", "ifl_announcements_refused_total{reason=stale} 0"},
		"ifl_hosts": {"ifl_hosts{status=agent} 0", "ifl_hosts{status=busy} 0", "ifl_hosts{status=error} 0",
			"ifl_hosts{status=identity-mismatch} 0", "ifl_hosts{status=not-agent} 0", "ifl_hosts{status=rejected} 0"},
		"ifl_errors_total": {"ifl_errors_total{stage=announce} 0", "ifl_errors_total{stage=probe} 0", "ifl_errors_total{stage=state} 0"},
	} {
		f := fams[name]
		if f == nil {
			t.Errorf("no %s", name)
			continue
		}
		if got := Series(f); !slices.Equal(got, want) {
			t.Errorf("%s:\n got %q\nwant %q", name, got, want)
		}
	}
}

// TestMetricsOfRounds: a sweep sets the hosts by status and the unseen
// ones; each round counts its duration, outcome and changes by kind.
func TestMetricsOfRounds(t *testing.T) {
	m := metrics.New(nil)
	sweep := &engine.Round{Complete: true, Elapsed: 2 * time.Second, Results: []verify.Result{
		{Status: verify.Agent}, {Status: verify.Agent}, {Status: verify.Rejected}, {Status: verify.NotAgent}}}
	m.Round(metrics.KindSweep, sweep, &inventory.Changes{New: make([]inventory.HostChange, 2), Unseen: make([]inventory.HostChange, 1)}, 3)
	ann := &engine.Round{Complete: true, Elapsed: 20 * time.Millisecond, Observations: make([]inventory.Observation, 1)}
	m.Round(metrics.KindAnnouncement, ann, &inventory.Changes{Moved: make([]inventory.HostChange, 1)}, 3)
	m.Round(metrics.KindSweep, &engine.Round{Elapsed: time.Second}, nil, -1)
	m.Error(metrics.StageProbe)
	fams := Scrape(t, m)
	for name, want := range map[string][]string{
		"ifl_hosts": {"ifl_hosts{status=agent} 2", "ifl_hosts{status=busy} 0", "ifl_hosts{status=error} 0",
			"ifl_hosts{status=identity-mismatch} 0", "ifl_hosts{status=not-agent} 1", "ifl_hosts{status=rejected} 1"},
		"ifl_hosts_unseen":                 {"ifl_hosts_unseen{} 1"},
		"ifl_inventory_hosts":              {"ifl_inventory_hosts{} 3"},
		"ifl_announcements_verified_total": {"ifl_announcements_verified_total{} 1"},
		"ifl_errors_total":                 {"ifl_errors_total{stage=announce} 0", "ifl_errors_total{stage=probe} 1", "ifl_errors_total{stage=state} 0"},
		"ifl_round_duration_seconds": {"ifl_round_duration_seconds{kind=announcement} 1", "ifl_round_duration_seconds{kind=broadcast} 0",
			"ifl_round_duration_seconds{kind=sweep} 2"},
		"ifl_rounds_total": {"ifl_rounds_total{kind=announcement,outcome=complete} 1", "ifl_rounds_total{kind=announcement,outcome=incomplete} 0",
			"ifl_rounds_total{kind=broadcast,outcome=complete} 0", "ifl_rounds_total{kind=broadcast,outcome=incomplete} 0",
			"ifl_rounds_total{kind=sweep,outcome=complete} 1", "ifl_rounds_total{kind=sweep,outcome=incomplete} 1"},
	} {
		if got := Series(fams[name]); !slices.Equal(got, want) {
			t.Errorf("%s:\n got %q\nwant %q", name, got, want)
		}
	}
	changes := map[string]float64{}
	for _, s := range fams["ifl_changes_total"].Metric {
		if v := s.Counter.GetValue(); v > 0 {
			changes[s.Label[0].GetValue()+"/"+s.Label[1].GetValue()] = v
		}
	}
	if want := map[string]float64{"new/sweep": 2, "unseen/sweep": 1, "moved/announcement": 1}; !maps.Equal(changes, want) {
		t.Errorf("changes %v, want %v", changes, want)
	}
	if f := fams["ifl_last_round_timestamp_seconds"]; f == nil || len(f.Metric) != 2 {
		t.Errorf("last round timestamps: %v, want one for the sweep and one for the announcement round", Series(f))
	}
}

// TestMetricsOfBroadcastWatch: on a watch whose every round is a
// broadcast one, broadcast rounds set the hosts by status and the
// unseen ones; elsewhere, a broadcast round between sweeps leaves them
// as the last sweep set them.
func TestMetricsOfBroadcastWatch(t *testing.T) {
	bcast := &engine.Round{Complete: true, Elapsed: time.Second, Results: []verify.Result{{Status: verify.Agent}, {Status: verify.Rejected}}}
	unseen := &inventory.Changes{Unseen: make([]inventory.HostChange, 2)}
	for _, tc := range []struct {
		hostsFrom     string
		hosts, unseen []string
	}{
		{metrics.KindBroadcast, []string{"ifl_hosts{status=agent} 1", "ifl_hosts{status=busy} 0", "ifl_hosts{status=error} 0",
			"ifl_hosts{status=identity-mismatch} 0", "ifl_hosts{status=not-agent} 0", "ifl_hosts{status=rejected} 1"}, []string{"ifl_hosts_unseen{} 2"}},
		{"", []string{"ifl_hosts{status=agent} 0", "ifl_hosts{status=busy} 0", "ifl_hosts{status=error} 0",
			"ifl_hosts{status=identity-mismatch} 0", "ifl_hosts{status=not-agent} 0", "ifl_hosts{status=rejected} 0"}, []string{"ifl_hosts_unseen{} 0"}},
	} {
		m := metrics.New(nil)
		if tc.hostsFrom != "" {
			m.HostsFrom(tc.hostsFrom)
		}
		m.Round(metrics.KindBroadcast, bcast, unseen, 2)
		fams := Scrape(t, m)
		if got := Series(fams["ifl_hosts"]); !slices.Equal(got, tc.hosts) {
			t.Errorf("hosts from %q: ifl_hosts\n got %q\nwant %q", tc.hostsFrom, got, tc.hosts)
		}
		if got := Series(fams["ifl_hosts_unseen"]); !slices.Equal(got, tc.unseen) {
			t.Errorf("hosts from %q: ifl_hosts_unseen %q, want %q", tc.hostsFrom, got, tc.unseen)
		}
	}
}
