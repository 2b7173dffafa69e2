package inventory

import (
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/ifl-project/ifl/proto"
)

// fleet is a probe of n hosts on 198.18.0.0/15, each with MaxLabels
// labels that every host shares: as many groups, each of n hosts.
func fleet(n int) []Observation {
	labels := map[string]string{}
	for i := range MaxLabels {
		labels[fmt.Sprintf("k%02d", i)] = "v"
	}
	var obs []Observation
	for i := range n {
		a := netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)})
		obs = append(obs, Observation{Identity: fmt.Sprintf("%032x", i), Addr: a, Port: 7440, Facts: &proto.Facts{
			Hostname: fmt.Sprintf("h%d", i), Labels: labels,
			Interfaces: []proto.Interface{{Name: "eth0", MAC: fmt.Sprintf("02:00:00:%02x:%02x:%02x", byte(i>>16), byte(i>>8), byte(i)), Addrs: []string{a.String() + "/16"}}},
		}})
	}
	return obs
}

func BenchmarkBuildAnsible(b *testing.B) {
	for _, n := range []int{1000, 4000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s := New()
			s.Apply(t0, fleet(n), all, true)
			b.ResetTimer()
			for range b.N {
				s.BuildAnsible(t0, time.Hour, PreferIPv4)
			}
		})
	}
}

func BenchmarkApply(b *testing.B) {
	for _, n := range []int{1000, 4000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			obs := fleet(n)
			s := New()
			s.Apply(t0, obs, all, true)
			b.ResetTimer()
			for i := range b.N {
				s.Apply(t0.Add(time.Duration(i+1)*time.Minute), obs, all, true)
			}
		})
	}
}

// BenchmarkList reads a state of n hosts with two labels each from its
// file and prints the answer to --list, as ifl inventory --list does: the
// cost per host should not grow with n.
func BenchmarkList(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "inventory.json")
			if err := WriteFile(path, Synthetic(n)); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				s, err := Load(path)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.WriteList(io.Discard, t0, 24*time.Hour, PreferIPv4); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/host")
		})
	}
}

// BenchmarkHost is BenchmarkList for --host NAME.
func BenchmarkHost(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "inventory.json")
			if err := WriteFile(path, Synthetic(n)); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				s, err := Load(path)
				if err != nil {
					b.Fatal(err)
				}
				if ok, err := s.WriteHost(io.Discard, "h000500", t0, 24*time.Hour, PreferIPv4); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/host")
		})
	}
}
