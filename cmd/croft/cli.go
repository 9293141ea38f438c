package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/croftfarm/croft/api/client"
)

// The client commands (docs/CLI.md): each takes the connection flags of
// cliFlags, prints a table (or JSON with --json) and exits 0 when it
// worked, 1 when the operation failed (or, for the waiting ones, a job
// failed), 2 on a command line mistake.

// clientCommands are the commands run against a cluster, by name.
var clientCommands = map[string]func(ctx context.Context, args []string, stdout io.Writer) error{
	"submit":     runSubmit,
	"jobs":       runJobs,
	"job":        runJob,
	"log":        runLog,
	"wait":       runWait,
	"pause":      jobAction("pause"),
	"start":      jobAction("start"),
	"reset":      jobAction("reset"),
	"retry":      jobAction("retry"),
	"cancel":     jobAction("cancel"),
	"delete":     jobAction("delete"),
	"workers":    runWorkers,
	"worker":     runWorker,
	"hosts":      runHosts,
	"sessions":   runSessions,
	"session":    runSession,
	"templates":  runTemplates,
	"template":   runTemplate,
	"execute":    runExecute,
	"executions": runExecutions,
	"execution":  runExecution,
}

// helpOut is where --help prints (run sets it to its stdout).
var helpOut io.Writer = os.Stdout

// defaultCoordinator is the coordinator of "croft dev" and "make run".
const defaultCoordinator = "http://127.0.0.1:19211"

// defaultTimeout bounds a command that does not wait for jobs.
const defaultTimeout = 15 * time.Second

// cliFlags are the flags every client command takes: where the cluster
// is, which token to use, and how long to try. Each setting comes from
// its flag, else the environment, else the config file (configKeys).
type cliFlags struct {
	coordinator string
	dataDir     string
	caFile      string
	configFile  string
	asJSON      bool
	timeout     time.Duration
	tokens      tokenFlags
	fs          *flag.FlagSet
}

// register adds the flags; defTimeout is the command's default deadline
// (0: none, for the commands that wait for jobs).
func (f *cliFlags) register(fs *flag.FlagSet) { f.registerTimeout(fs, defaultTimeout) }

func (f *cliFlags) registerTimeout(fs *flag.FlagSet, defTimeout time.Duration) {
	f.fs = fs
	fs.StringVar(&f.coordinator, "coordinator", "", "coordinator URLs, comma-separated (else $CROFT_COORDINATOR, the config file, "+defaultCoordinator+")")
	fs.StringVar(&f.dataDir, "data-dir", "", "a coordinator's data directory: its admin.token is used when no other token is given")
	fs.BoolVar(&f.asJSON, "json", false, "print JSON")
	fs.StringVar(&f.caFile, "ca-cert", "", "the farm's CA (PEM) that verifies https:// coordinators (else $CROFT_CA_CERT, the config file, the system's roots)")
	fs.StringVar(&f.configFile, "config", "", "config file (else $CROFT_CONFIG, else ~/.config/croft/config if it exists)")
	fs.DurationVar(&f.timeout, "timeout", defTimeout, "give up after this long in all (0: never)")
	f.tokens.register(fs, "token (else --token-file, $CROFT_TOKEN, the config file's token or token_file, or --data-dir's admin.token)")
}

// configKeys are the keys a config file may set.
var configKeys = []string{"coordinator", "token", "token_file", "ca_cert", "timeout"}

// parseConfig reads a config file: a JSON object of strings, or lines of
// "key = value" (# starts a comment line; a value may be quoted).
func parseConfig(data []byte) (map[string]string, error) {
	out := map[string]string{}
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		raw := map[string]any{}
		if err := json.Unmarshal(t, &raw); err != nil {
			return nil, err
		}
		for k, v := range raw {
			switch v := v.(type) {
			case string:
				out[k] = v
			case float64:
				out[k] = strconv.FormatFloat(v, 'f', -1, 64)
			default:
				return nil, fmt.Errorf("%s: a string is expected", k)
			}
		}
	} else {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || line[0] == '#' {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return nil, fmt.Errorf("line %d: key = value expected", n)
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if uq, err := strconv.Unquote(v); err == nil {
				v = uq
			}
			out[k] = v
		}
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	for k := range out {
		if !contains(configKeys, k) {
			return nil, fmt.Errorf("unknown key %q (known: %s)", k, strings.Join(configKeys, ", "))
		}
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// loadConfig reads --config, else $CROFT_CONFIG (both must exist), else
// the user's config file if there is one.
func (f *cliFlags) loadConfig() (map[string]string, error) {
	path, must := f.configFile, true
	if path == "" {
		path = os.Getenv("CROFT_CONFIG")
	}
	if path == "" {
		dir, err := os.UserConfigDir()
		if err != nil {
			return map[string]string{}, nil
		}
		path, must = filepath.Join(dir, "croft", "config"), false
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !must {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	conf, err := parseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return conf, nil
}

// settings are cliFlags resolved: flag > environment > config file.
type settings struct {
	coordinator, token, caFile string
	timeout                    time.Duration
}

func (f *cliFlags) isSet(name string) bool {
	set := false
	if f.fs != nil {
		f.fs.Visit(func(fl *flag.Flag) { set = set || fl.Name == name })
	}
	return set
}

// resolve applies the precedence flag > environment > config file.
func (f *cliFlags) resolve() (settings, error) {
	conf, err := f.loadConfig()
	if err != nil {
		return settings{}, err
	}
	first := func(vals ...string) string {
		for _, v := range vals {
			if v = strings.TrimSpace(v); v != "" {
				return v
			}
		}
		return ""
	}
	s := settings{
		coordinator: first(f.coordinator, os.Getenv("CROFT_COORDINATOR"), conf["coordinator"], defaultCoordinator),
		caFile:      first(f.caFile, os.Getenv("CROFT_CA_CERT"), conf["ca_cert"]),
		timeout:     f.timeout,
	}
	if !f.isSet("timeout") && conf["timeout"] != "" {
		if s.timeout, err = time.ParseDuration(conf["timeout"]); err != nil {
			return s, fmt.Errorf("config: timeout: %w", err)
		}
	}
	tokens := f.tokens
	if tokens.token == "" && tokens.file == "" && os.Getenv("CROFT_TOKEN") == "" {
		tokens.token, tokens.file = conf["token"], conf["token_file"]
	}
	if s.token, err = tokens.resolve(f.dataDir); err != nil {
		return s, err
	}
	return s, nil
}

// client returns a client that fails fast when no coordinator listens.
func (f *cliFlags) client() (*client.Client, error) {
	s, err := f.resolve()
	if err != nil {
		return nil, err
	}
	f.timeout = s.timeout
	conf, err := clientTLS(s.caFile)
	if err != nil {
		return nil, err
	}
	return client.NewWith(client.Options{Token: s.token, TLS: conf, FailFast: true}, s.coordinator), nil
}

// context bounds ctx by --timeout (none when 0).
func (f *cliFlags) context(ctx context.Context) (context.Context, context.CancelFunc) {
	if f.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, f.timeout)
}

// setup parses the command line (flags anywhere) and returns the
// positional arguments, a client and the command's context.
func (f *cliFlags) setup(ctx context.Context, fs *flag.FlagSet, args []string) ([]string, *client.Client, context.Context, context.CancelFunc, error) {
	rest, err := parseArgs(fs, args)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	c, err := f.client()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	cctx, cancel := f.context(ctx)
	return rest, c, cctx, cancel, nil
}

// newFlagSet returns a command's flag set; synopsis is shown by --help
// above the flags.
func newFlagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help" || arg == "help"
}

// groupHelp serves "croft GROUP" without a verb (usage error) and
// "croft GROUP --help" (the usage on stdout, exit 0).
func groupHelp(args []string, usage string) (bool, error) {
	if len(args) == 0 {
		return true, fmt.Errorf("%w: %s", errUsage, usage)
	}
	if isHelp(args[0]) {
		fmt.Fprintf(helpOut, "Usage: %s\n\nRun \"%s VERB --help\" for the flags of a verb.\n", usage, strings.Fields(usage)[0]+" "+strings.Fields(usage)[1])
		return true, nil
	}
	return false, nil
}

// parseID reads a job id.
func parseID(s string) (int64, error) {
	id, err := strconv.ParseInt(strings.TrimPrefix(s, "#"), 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%w: %q is not a job id (a positive integer)", errUsage, s)
	}
	return id, nil
}

// parseIDs reads one or more job ids.
func parseIDs(args []string, usage string) ([]int64, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("%w: %s", errUsage, usage)
	}
	ids := make([]int64, 0, len(args))
	for _, a := range args {
		for _, part := range strings.Split(a, ",") {
			if part == "" {
				continue
			}
			id, err := parseID(part)
			if err != nil {
				return nil, err
			}
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// errFailed makes the exit code 1 without more to say (the output said it).
var errFailed = errors.New("failed")
