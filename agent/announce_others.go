//go:build !linux

package agent

import (
	"context"
	"errors"
	"net/netip"
)

var errNoNetlink = errors.New("announcements follow addresses through netlink, which only Linux has")

// FollowAddrs fails: see the Linux version.
func FollowAddrs(ctx context.Context) (<-chan struct{}, error) { return nil, errNoNetlink }

func sendFrom(local netip.Addr, to netip.AddrPort, b []byte) error { return errNoNetlink }
