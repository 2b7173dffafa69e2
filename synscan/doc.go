// Package synscan finds open TCP ports, the way ifl scan and ifl probe
// need them: quickly, and without a connection per closed port.
//
// Raw mode (NewRaw, needs CAP_NET_RAW) sends SYN segments built with
// gopacket on raw IPv4 and IPv6 sockets at a paced rate (the IPv4 header
// is ours, the IPv6 header the kernel's, from the source address given
// with each segment; the TCP checksum is computed here over the
// pseudo-header of either), while one reader, behind kernel filters that
// pass only TCP to our source ports, takes up to 16 segments from a socket
// with each recvmmsg(2) and matches replies statelessly: each probe's
// sequence number is a keyed hash of its 4-tuple, so a SYN-ACK or RST is
// accepted only if its acknowledgement number proves it answers our
// probe. SYN-ACK means open, RST closed, and
// nothing after the retries filtered. The kernel, which knows of no
// connection on our source port, answers each SYN-ACK with a RST, which
// closes the half-open connection on the target. Memory is bounded by the
// probes in flight (the rate times the time a probe may wait), not by the
// number of targets. New runs the same scan over any PacketIO, such as a
// test's network. An on-link IPv4 host whose MAC a sweep learned (AddLink,
// Learn) gets its SYNs as Ethernet frames to that MAC, with no neighbour
// resolution by the kernel in between. Probes are queued as the pacer
// lets them go, and a goroutine of their own sends them a batch at a
// time, with one sendmmsg(2) for the probes in a row to one socket.
//
// # Timing
//
// A probe waits for its answer as long as its host's round trip says
// (RFC 6298's timeout: once the round trip is known the same for each
// try, four times it for the last; doubled for each try while it is not;
// Karn's rule: answers to retries measure nothing), within a floor of
// 5 ms and Config.Timeout. A
// host's round trip comes from a Target's RTT (an ARP reply's, say) and
// from its answers; a host without either waits as the hosts that came
// without a hint answer, and Timeout before any has. The sending rate is
// a window, as TCP's congestion window: it starts at Config.Rate, halves
// when the kernel has no room for a probe or answers come only to
// retries, and grows back while answers keep up.
//
// Connect mode (NewConnect) gives the same results with connect(2), for a
// process without the capability.
//
// Both implement Scanner; Stream takes targets as they come (from an ARP
// sweep, say) and sends results as they are known.
package synscan
