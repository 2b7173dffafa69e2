package inventory

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// EtcdConfig is how to reach the store.
type EtcdConfig struct {
	Endpoints []string
	Prefix    string // without a trailing /
	// TLS: a CA to check the members with (else the system's, with
	// etcds://), and a client certificate and key.
	TLS        bool
	CA         string
	Cert, Key  string
	User       string
	Password   string // read from a file, never given on a command line
	Dial       time.Duration
	Request    time.Duration
	passwordAt string
}

// Defaults for EtcdConfig.
const (
	DefaultEtcdPrefix  = "/ifl"
	DefaultEtcdDial    = 5 * time.Second
	DefaultEtcdRequest = 10 * time.Second
)

// ParseEtcd reads a store URL: etcd://HOST:PORT[,HOST:PORT...][/PREFIX]
// with the options ca=FILE, cert=FILE, key=FILE, user=NAME,
// password-file=FILE, dial-timeout=DURATION and timeout=DURATION;
// etcds:// is TLS with the system's CAs unless ca= names one.
func ParseEtcd(spec string) (EtcdConfig, error) {
	bad := func(format string, a ...any) (EtcdConfig, error) {
		return EtcdConfig{}, fmt.Errorf("inventory: store %s: %s", spec, fmt.Sprintf(format, a...))
	}
	u, err := url.Parse(spec)
	if err != nil || (u.Scheme != "etcd" && u.Scheme != "etcds") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return bad("want etcd://HOST:2379,HOST:2379/PREFIX, options after ?: ca=, cert=, key=, user=, password-file=, dial-timeout=, timeout= (no user or password in the URL)")
	}
	cfg := EtcdConfig{Prefix: strings.TrimRight(u.Path, "/"), TLS: u.Scheme == "etcds", Dial: DefaultEtcdDial, Request: DefaultEtcdRequest}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultEtcdPrefix
	}
	for _, h := range strings.Split(u.Host, ",") {
		if h == "" || !strings.Contains(h, ":") {
			return bad("endpoint %q: want HOST:PORT", h)
		}
		// https:// once the options are read: ca=, cert= and key= ask
		// for TLS too.
		cfg.Endpoints = append(cfg.Endpoints, "http://"+h)
	}
	for k, vs := range u.Query() {
		if len(vs) != 1 || vs[0] == "" {
			return bad("option %s: want one value", k)
		}
		v := vs[0]
		switch k {
		case "ca":
			cfg.CA, cfg.TLS = v, true
		case "cert":
			cfg.Cert, cfg.TLS = v, true
		case "key":
			cfg.Key, cfg.TLS = v, true
		case "user":
			cfg.User = v
		case "password-file":
			cfg.passwordAt = v
		case "dial-timeout", "timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return bad("%s=%s: want a duration such as 5s", k, v)
			}
			if k == "timeout" {
				cfg.Request = d
			} else {
				cfg.Dial = d
			}
		default:
			return bad("unknown option %q: want ca, cert, key, user, password-file, dial-timeout or timeout", k)
		}
	}
	if cfg.TLS {
		for i, e := range cfg.Endpoints {
			cfg.Endpoints[i] = "https://" + strings.TrimPrefix(e, "http://")
		}
	}
	if (cfg.Cert == "") != (cfg.Key == "") {
		return bad("cert= and key= go together")
	}
	if (cfg.User == "") != (cfg.passwordAt == "") {
		return bad("user= and password-file= go together (a password is never given on a command line)")
	}
	if cfg.passwordAt != "" {
		b, err := os.ReadFile(cfg.passwordAt)
		if err != nil {
			return bad("password-file: %v", err)
		}
		cfg.Password = strings.TrimRight(string(b), "\r\n")
	}
	return cfg, nil
}
