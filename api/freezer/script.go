package freezer

import (
	"encoding/json"
	"fmt"
	"strings"

	farmcmd "github.com/croftfarm/croft/farm"
	"github.com/croftfarm/croft/raftstore"
)

// FreezerAgent is the program a non-exec action runs on the client.
const FreezerAgent = "freezer-agent"

// script renders a job's actions as the shell script its run executes
// on the client, doing what freezer-scheduler does with a job:
//   - actions run in order; once one failed, the others are skipped
//     unless mandatory;
//   - each action is tried max_retries times (default 1),
//     max_retries_interval seconds apart (default 60);
//   - an exec action runs its command through the shell; another runs
//     freezer-agent with the action's parameters as flags, and a client
//     without freezer-agent fails the action with a clear message;
//   - the run exits 0 when every action that ran succeeded, else 1.
//
// The script fits raftstore.MaxArgsBytes (it is the run's argument) or is refused (ErrTooLarge).
func script(jobID string, actions []any) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "# Freezer job %s: %d action(s), run by croft as freezer-scheduler would\nfailed=0\n", jobID, len(actions))
	for i, e := range actions {
		a := e.(document) // checkActions: objects
		fa := a["freezer_action"].(document)
		name := actionName(fa)
		tries, ok := integer(a["max_retries"])
		if !ok || tries < 1 {
			tries = defaultTries
		}
		interval, ok := integer(a["max_retries_interval"])
		if !ok {
			interval = defaultRetryInterval
		}
		mandatory, _ := a["mandatory"].(bool)
		label := fmt.Sprintf("action %d (%s)", i+1, name)
		cmd := ""
		if name == "exec" {
			cmd = "/bin/sh -c " + farmcmd.ShellQuote(str(fa, "command"))
		} else {
			cmd = FreezerAgent + flags(fa)
		}
		cond := `[ "$failed" -eq 0 ]`
		if mandatory {
			cond = "true"
		}
		fmt.Fprintf(&b, "if %s; then\n", cond)
		if name != "exec" {
			fmt.Fprintf(&b, "  if ! command -v %s >/dev/null 2>&1; then\n", FreezerAgent)
			fmt.Fprintf(&b, "    echo %s >&2\n    failed=1\n  else\n", farmcmd.ShellQuote("croft: "+label+" needs "+FreezerAgent+", which is not installed on this host"))
		} else {
			b.WriteString("  if true; then\n")
		}
		fmt.Fprintf(&b, "    n=0\n    while :; do\n      n=$((n+1))\n      echo %s\n", farmcmd.ShellQuote("croft: "+label+", try ")+`"$n of `+fmt.Sprint(tries)+`"`)
		fmt.Fprintf(&b, "      if %s; then break; fi\n", cmd)
		fmt.Fprintf(&b, "      if [ \"$n\" -ge %d ]; then echo %s >&2; failed=1; break; fi\n", tries, farmcmd.ShellQuote("croft: "+label+" failed"))
		fmt.Fprintf(&b, "      sleep %d\n    done\n  fi\nelse\n  echo %s\nfi\n", interval, farmcmd.ShellQuote("croft: skipping "+label+": an earlier action failed"))
	}
	b.WriteString("exit \"$failed\"\n")
	if b.Len() > raftstore.MaxArgsBytes {
		return "", fmt.Errorf("%w: the job's actions make a %d-byte script, the limit is %d", raftstore.ErrTooLarge, b.Len(), raftstore.MaxArgsBytes)
	}
	return b.String(), nil
}

// flags renders an action's parameters as freezer-agent's command-line
// flags, in key order: key_name becomes --key-name; true is the bare
// flag, false and null are left out (freezer-agent's default), other
// values follow quoted.
func flags(fa document) string {
	var b strings.Builder
	for _, k := range sortedKeys(fa) {
		flag := " --" + strings.ReplaceAll(k, "_", "-")
		switch v := fa[k].(type) {
		case bool:
			if v {
				b.WriteString(flag)
			}
		case nil:
		case json.Number:
			b.WriteString(flag + " " + farmcmd.ShellQuote(v.String()))
		case string:
			b.WriteString(flag + " " + farmcmd.ShellQuote(v))
		}
	}
	return b.String()
}
