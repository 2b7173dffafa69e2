package cli

import (
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/ifl-project/ifl/internal/controller/inventory"
	"github.com/ifl-project/ifl/internal/support/untrusted"
)

// printChanges tells people what a probe changed in the inventory. Hosts
// go by their inventory name, the one Ansible uses (ifl chose it, see
// internal/controller/inventory/names.go); what an agent chose (hostnames, label
// keys) goes through untrusted.Text.
func printChanges(env *Env, ch *inventory.Changes) {
	if ch == nil || ch.Empty() {
		return
	}
	for _, c := range ch.New {
		fmt.Fprintf(env.Stderr, "new:       %s at %s (%s)%s\n", c.Name, c.To, c.Identity, hostnameNote(c))
	}
	for _, c := range ch.Moved {
		fmt.Fprintf(env.Stderr, "moved:     %s %s -> %s\n", c.Name, c.From, c.To)
	}
	for _, c := range ch.Renamed {
		note := ""
		if c.OldName != "" {
			note = ", was " + c.OldName
		}
		fmt.Fprintf(env.Stderr, "renamed:   %s: hostname %s -> %s (%s%s)\n", c.Name, untrusted.Text(c.From), untrusted.Text(c.To), c.Identity, note)
	}
	for _, c := range ch.Unseen {
		fmt.Fprintf(env.Stderr, "not seen:  %s at %s, for %s\n", c.Name, c.From, age(c.Unseen))
	}
	for _, w := range ch.Warnings {
		fmt.Fprintf(env.Stderr, "warning:   %s\n", w.Text(untrusted.Text))
	}
}

// hostnameNote names the hostname when the inventory name is not it.
func hostnameNote(c inventory.HostChange) string {
	if c.Hostname == c.Name {
		return ""
	}
	return ", hostname " + untrusted.Cell(c.Hostname, 80)
}

// logChanges records each change as one event.
func logChanges(log zerolog.Logger, ch *inventory.Changes) {
	if ch == nil {
		return
	}
	for _, c := range ch.New {
		log.Info().Str("event", "host_new").Str("name", c.Name).Str("hostname", c.Hostname).Str("address", c.To).Str("identity", c.Identity).Msg("new host")
	}
	for _, c := range ch.Moved {
		log.Info().Str("event", "host_moved").Str("name", c.Name).Str("hostname", c.Hostname).Str("from", c.From).Str("to", c.To).Str("identity", c.Identity).Msg("host moved")
	}
	for _, c := range ch.Renamed {
		log.Info().Str("event", "host_renamed").Str("name", c.Name).Str("old_name", c.OldName).Str("from", c.From).Str("to", c.To).Str("identity", c.Identity).Msg("host renamed")
	}
	for _, c := range ch.Unseen {
		log.Warn().Str("event", "host_unseen").Str("name", c.Name).Str("hostname", c.Hostname).Str("address", c.From).Float64("unseen_seconds", c.Unseen.Seconds()).Str("identity", c.Identity).Msg("host not seen")
	}
	for _, w := range ch.Warnings {
		event := "identity_conflict"
		if w.Kind == inventory.KindLabels {
			event = "labels_dropped"
		}
		// The message may reach a terminal (the console writer does not
		// escape it); the fields carry the exact bytes, JSON-escaped.
		log.Warn().Str("event", event).Str("kind", w.Kind).Str("identity", w.Identity).Str("name", w.Name).Str("hostname", w.Hostname).
			Str("address", w.Addr).Str("other_identity", w.OtherIdentity).Str("other_name", w.OtherName).Str("other_hostname", w.OtherHostname).
			Str("other_address", w.OtherAddr).Msg(w.Text(untrusted.Text))
	}
}

func age(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return d.Round(time.Second).String()
}
