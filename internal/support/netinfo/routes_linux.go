package netinfo

import (
	"net"
	"net/netip"
	"os"
	"sort"
	"syscall"
	"unsafe"
)

// DefaultRoutes reads the main routing tables (IPv4 and IPv6) over netlink
// and returns the routes to 0.0.0.0/0 and ::/0, IPv4 first.
func DefaultRoutes() ([]Route, error) {
	names := map[int]string{}
	if ifis, err := net.Interfaces(); err == nil {
		for _, ifi := range ifis {
			names[ifi.Index] = ifi.Name
		}
	}
	var out []Route
	for _, fam := range []struct {
		af   int
		name string
	}{{syscall.AF_INET, "inet"}, {syscall.AF_INET6, "inet6"}} {
		rib, err := syscall.NetlinkRIB(syscall.RTM_GETROUTE, fam.af)
		if err != nil {
			if fam.af == syscall.AF_INET6 {
				continue // IPv6 may be disabled
			}
			return nil, os.NewSyscallError("netlink route dump", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(rib)
		if err != nil {
			return nil, os.NewSyscallError("netlink parse", err)
		}
		for _, m := range msgs {
			if r, ok := parseDefaultRoute(m, names); ok {
				r.Family = fam.name
				out = append(out, r)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Family < out[j].Family })
	return out, nil
}

func parseDefaultRoute(m syscall.NetlinkMessage, names map[int]string) (Route, bool) {
	if m.Header.Type != syscall.RTM_NEWROUTE || len(m.Data) < syscall.SizeofRtMsg {
		return Route{}, false
	}
	rt := (*syscall.RtMsg)(unsafe.Pointer(&m.Data[0]))
	if rt.Dst_len != 0 || rt.Table != syscall.RT_TABLE_MAIN || rt.Type != syscall.RTN_UNICAST {
		return Route{}, false
	}
	attrs, err := syscall.ParseNetlinkRouteAttr(&m)
	if err != nil {
		return Route{}, false
	}
	var r Route
	for _, a := range attrs {
		switch a.Attr.Type {
		case syscall.RTA_GATEWAY:
			if ip, ok := netip.AddrFromSlice(a.Value); ok {
				r.Gateway = ip.Unmap()
			}
		case syscall.RTA_OIF:
			if len(a.Value) >= 4 {
				r.Interface = names[int(*(*uint32)(unsafe.Pointer(&a.Value[0])))]
			}
		}
	}
	return r, true
}
