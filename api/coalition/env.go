package coalition

import "github.com/croftfarm/croft/raftstore"

// Coalition writes a job's environment as one text: KEY=VALUE entries
// separated by newlines or the two characters `\n`. The farm keeps a map;
// this dialect converts at its edge, both ways, in these two functions.
//
// The text is also kept beside the map (raftstore.Job.Environment): a map
// cannot say back what a client wrote when the text has duplicate keys,
// lines without "=", spaces or either separator, and Coalition clients get
// their text back byte for byte, as before. A job whose environment another
// dialect set (a map, no text) shows as the map's KEY=VALUE lines in key
// order.

// fromCoalitionEnv is the map for a Coalition environment text (never nil,
// so that an edit to "" clears the map).
func fromCoalitionEnv(text string) map[string]string {
	if env := raftstore.EnvFromText(text); env != nil {
		return env
	}
	return map[string]string{}
}

// coalitionEnv is the environment text a Coalition client sees.
func coalitionEnv(text string, env map[string]string) string {
	if text != "" || len(env) == 0 {
		return text
	}
	return raftstore.EnvText(env)
}
