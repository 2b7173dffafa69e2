//go:build !linux

package agent

import (
	"fmt"
	"runtime"

	"github.com/ifl-project/ifl/proto"
)

// CollectFacts is implemented on Linux only.
func CollectFacts(version string, labels map[string]string) (*proto.Facts, error) {
	return nil, fmt.Errorf("agent: collecting facts is not implemented on %s", runtime.GOOS)
}
