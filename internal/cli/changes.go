package cli

import (
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/ifl-project/ifl/internal/inventory"
)

// printChanges tells people what a probe changed in the inventory.
func printChanges(env *Env, ch *inventory.Changes) {
	if ch == nil || ch.Empty() {
		return
	}
	for _, c := range ch.New {
		fmt.Fprintf(env.Stderr, "new:       %s at %s (%s)\n", c.Hostname, c.To, c.Identity)
	}
	for _, c := range ch.Moved {
		fmt.Fprintf(env.Stderr, "moved:     %s %s -> %s\n", c.Hostname, c.From, c.To)
	}
	for _, c := range ch.Renamed {
		fmt.Fprintf(env.Stderr, "renamed:   %s -> %s (%s)\n", c.From, c.To, c.Identity)
	}
	for _, c := range ch.Unseen {
		fmt.Fprintf(env.Stderr, "not seen:  %s at %s, for %s\n", c.Hostname, c.From, age(c.Unseen))
	}
	for _, c := range ch.Conflicts {
		fmt.Fprintf(env.Stderr, "warning:   %s\n", c)
	}
}

// logChanges records each change as one event.
func logChanges(log zerolog.Logger, ch *inventory.Changes) {
	if ch == nil {
		return
	}
	for _, c := range ch.New {
		log.Info().Str("event", "host_new").Str("hostname", c.Hostname).Str("ip", c.To).Str("identity", c.Identity).Msg("new host")
	}
	for _, c := range ch.Moved {
		log.Info().Str("event", "host_moved").Str("hostname", c.Hostname).Str("from", c.From).Str("to", c.To).Str("identity", c.Identity).Msg("host moved")
	}
	for _, c := range ch.Renamed {
		log.Info().Str("event", "host_renamed").Str("from", c.From).Str("to", c.To).Str("identity", c.Identity).Msg("host renamed")
	}
	for _, c := range ch.Unseen {
		log.Warn().Str("event", "host_unseen").Str("hostname", c.Hostname).Str("ip", c.From).Dur("unseen", c.Unseen).Str("identity", c.Identity).Msg("host not seen")
	}
	for _, c := range ch.Conflicts {
		log.Warn().Str("event", "identity_conflict").Msg(c)
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
