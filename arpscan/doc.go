// Package arpscan finds the live hosts of a directly attached IPv4 segment
// with ARP (RFC 826): one sender paces broadcast requests at a controlled
// rate (writing them on a socket per CPU) while one reader collects the
// replies, silent addresses are retried (more often once the sweep has seen
// hosts that answer lose requests), and each answer carries the host's MAC
// address, its vendor from the IEEE registry, and the round-trip time.
//
// Open a Scanner on an interface with Dial (this needs CAP_NET_RAW), then
// Scan a list of addresses:
//
//	s, err := arpscan.Dial("eth0")
//	...
//	defer s.Close()
//	results, stats, err := s.Scan(ctx, addrs, nil, nil)
//
// A sweep never blocks on one address: its length grows with the number of
// addresses at the send rate, plus one timeout at the end.
package arpscan
