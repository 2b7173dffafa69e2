// Package responder stands in for many hosts of a test LAN at once: one
// process, on one link of the LAN's bridge, answers ARP requests and TCP
// SYNs for a set of IPv4 addresses, each host with its own MAC (MAC) and
// its group's behaviour (Group): ports open (a SYN-ACK), closed (a reset,
// the default) or filtered (nothing), a delay before every reply, and a
// share of requests lost.
//
// A LAN of namespaces gives every host a kernel and a port on the bridge,
// and the bridge copies every broadcast to every port: a sweep of a large
// LAN costs the machine's CPUs a copy per host per request, which no
// switched LAN puts on a scanner. Behind a responder the bridge has one
// port for all of them, so that what a benchmark measures is the scanner.
//
// Nothing is kept per connection, and nothing grows with the traffic: a
// SYN-ACK's sequence number is a keyed hash of the connection's addresses
// and ports; frames are read and answered one at a time into buffers
// allocated once; a delayed reply waits in a queue of Config.Queue slots
// (DefaultQueue), past which it is dropped and counted, as by a full
// device. The frames of a reset or a SYN-ACK are Linux's (sequence 0 and
// window 0 for a reset; the MSS and first window of a 1500-byte link for a
// SYN-ACK, with no other option). Nothing else is answered: the scanner's
// resets and ACKs, ICMP, IPv6, fragments; a TCP connection never gets past
// its SYN-ACK.
//
// A scanner whose kernel answers a SYN-ACK (a port it has no socket for)
// with a reset needs a neighbour entry for the host it resets, and the
// kernel's neighbour table is one for the whole machine: the test LANs
// drop those resets in the scanner's namespace before they take an entry
// (package testnet; the README's Test network section says why).
package responder
