// Package agent is the ifl agent: it listens on one TCP port and answers
// authenticated pings (package proto) with this host's facts, and nothing
// else.
//
// Create one with New and run it with Serve; Reload swaps the accepted
// network keys and the labels while it runs (the CLI does so on SIGHUP).
// The agent needs no privilege: facts come from uname(2), sysinfo(2),
// /etc/machine-id, /etc/os-release and netlink, never from a command.
//
// Limits protect it from the network it listens on: a deadline for the
// handshake and between requests, a cap on verified connections in all
// and per source address, a cap on connections not verified yet, and a
// budget of failed hellos per source address. Over a cap, a newcomer
// takes the place of a connection of the source holding the most, so
// idle sockets, floods and a key holder's idle connections cannot lock a
// controller out from elsewhere; an agent with no place that can be
// given up answers busy. A connection is verified by the controller's
// first request, not by its hello, which anyone who saw it could replay.
//
// ServeDiscovery answers discovery queries on a socket from
// ListenDiscovery: only those sent on the agent's link (TTL 255) from an
// address of it, within one budget of answers for every source together.
package agent
