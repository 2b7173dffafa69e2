package agent

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ifl-project/ifl/internal/support/netinfo"
	"github.com/ifl-project/ifl/proto"
)

// Paths read for facts, in order of preference. Variables so tests can
// point them at fixtures.
var (
	machineIDPaths = []string{"/etc/machine-id", "/var/lib/dbus/machine-id"}
	osReleasePaths = []string{"/etc/os-release", "/usr/lib/os-release"}
)

// CollectFacts gathers this host's facts the way a hardened unit allows:
// interfaces and routes through netlink, never /proc/net (hidden under
// ProcSubset=pid) nor by running a command; the hostname from uname(2),
// since /proc/sys may be hidden too.
func CollectFacts(version string, labels map[string]string) (*proto.Facts, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return nil, err
	}
	f := &proto.Facts{
		Hostname:     unix.ByteSliceToString(uts.Nodename[:]),
		Kernel:       unix.ByteSliceToString(uts.Release[:]),
		MachineID:    firstLine(machineIDPaths),
		OS:           readOSRelease(osReleasePaths),
		AgentVersion: version,
		Labels:       labels,
		Time:         time.Now().UTC().Truncate(time.Millisecond),
	}
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err == nil {
		f.UptimeSeconds = int64(si.Uptime)
	}
	ifs, err := interfaces()
	if err != nil {
		return nil, err
	}
	f.Interfaces = ifs
	f.DefaultRoutes, err = defaultRoutes()
	if err != nil {
		return nil, err
	}
	return f, nil
}

func interfaces() ([]proto.Interface, error) {
	links, err := netinfo.Links()
	if err != nil {
		return nil, err
	}
	out := make([]proto.Interface, 0, len(links))
	for _, l := range links {
		pi := proto.Interface{Name: l.Name, MTU: l.MTU, Flags: flagNames(l.Flags), Addrs: []string{}}
		if len(l.HardwareAddr) > 0 {
			pi.MAC = l.HardwareAddr.String()
		}
		for _, p := range l.Prefixes {
			pi.Addrs = append(pi.Addrs, p.String())
		}
		out = append(out, pi)
	}
	return out, nil
}

func flagNames(f net.Flags) []string {
	// net.Flags.String joins with "|"; the wire carries a list.
	s := f.String()
	if s == "0" {
		return []string{}
	}
	return strings.Split(s, "|")
}

func defaultRoutes() ([]proto.Route, error) {
	rs, err := netinfo.DefaultRoutes()
	if err != nil {
		return nil, err
	}
	out := make([]proto.Route, 0, len(rs))
	for _, r := range rs {
		pr := proto.Route{Family: r.Family, Interface: r.Interface}
		if r.Gateway.IsValid() {
			pr.Gateway = r.Gateway.String()
		}
		out = append(out, pr)
	}
	return out, nil
}

func firstLine(paths []string) string {
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if s := strings.TrimSpace(string(b)); s != "" {
			return strings.SplitN(s, "\n", 2)[0]
		}
	}
	return ""
}

func readOSRelease(paths []string) proto.OSRelease {
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		return parseOSRelease(b)
	}
	return proto.OSRelease{ID: "linux", PrettyName: "Linux"}
}

// parseOSRelease reads the os-release(5) shell-like KEY=value format.
func parseOSRelease(b []byte) proto.OSRelease {
	var r proto.OSRelease
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		v = strings.Trim(v, `"'`)
		switch k {
		case "ID":
			r.ID = v
		case "VERSION_ID":
			r.VersionID = v
		case "PRETTY_NAME":
			r.PrettyName = v
		}
	}
	if r.ID == "" {
		r.ID = "linux"
	}
	if r.PrettyName == "" {
		r.PrettyName = "Linux"
	}
	return r
}
