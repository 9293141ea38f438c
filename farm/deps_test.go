package farm

import (
	"os/exec"
	"strings"
	"testing"
)

// TestFarmImportsNoInfrastructure keeps the model free of the Raft node,
// the HTTP framework and the stores: the agent and every dialect import it.
func TestFarmImportsNoInfrastructure(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/hashicorp/raft", "github.com/gin-gonic/", "go.etcd.io/bbolt", "github.com/boltdb/", "github.com/croftfarm/croft/raftstore"} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("farm imports %s", dep)
			}
		}
	}
}
