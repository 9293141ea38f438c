package agent

import (
	"os/exec"
	"strings"
	"testing"
)

// TestAgentImportsNothingOfTheCoordinator keeps the agent on the wire
// types and the neutral model: it runs on render nodes, apart from the
// FSM and the coordinators' packages.
func TestAgentImportsNothingOfTheCoordinator(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/croftfarm/croft/raftstore", "github.com/croftfarm/croft/coordinator", "github.com/hashicorp/raft", "github.com/gin-gonic/"} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("agent imports %s", dep)
			}
		}
	}
}
