package farm

import (
	"errors"
	"fmt"
	"strings"
)

// A job template (Sahara's job templates, a saved job to run again) holds
// a command template: one shell command line with placeholders that an
// execution fills:
//
//	{main}  the template's main reference: an inline script, a path or
//	        the name of a binary, as its type wants; one shell word
//	{args}  the execution's arguments, each one shell word, separated by
//	        spaces (nothing when there are none)
//
// Values are single-quoted as in interpreter templates (ShellQuote), so an
// argument with spaces or quotes reaches the program as it was given. The
// execution's parameters are not placeholders: they become environment
// variables of the job, which the command reads as "$NAME". "{{" and "}}"
// stand for a literal brace; any other brace is an error.
//
// For example, a Shell template running an inline script:
//
//	command: sh -c {main} sh {args}
//	main:    echo "hello $1"; exit "${CODE:-0}"
//
// executed with args ["world"] and params {"CODE": "3"} runs
// sh -c 'echo "hello $1"; exit "${CODE:-0}"' sh 'world' with CODE=3.
const (
	PlaceholderMain = "main"
	PlaceholderArgs = "args"
)

// MaxCommandTemplateBytes bounds a job template's command.
const MaxCommandTemplateBytes = 16 << 10

// ErrCommandTemplate means a job template's command is too long, holds a
// NUL byte or a line break, or an unknown or unclosed placeholder.
var ErrCommandTemplate = errors.New("invalid command template")

// commandGrammar is that of job templates' commands.
var commandGrammar = grammar{ErrCommandTemplate, MaxCommandTemplateBytes, []string{PlaceholderMain, PlaceholderArgs}}

// CheckCommandTemplate checks a job template's command: its size, no NUL
// or line break, every placeholder known and closed.
func CheckCommandTemplate(tmpl string) error {
	_, err := parseTemplate(tmpl, commandGrammar)
	return err
}

// ExpandCommand fills a command template: {main} with main as one shell
// word, {args} with each of args as one shell word.
func ExpandCommand(tmpl, main string, args []string) (string, error) {
	parts, err := parseTemplate(tmpl, commandGrammar)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, p := range parts {
		switch {
		case !p.hole:
			b.WriteString(p.text)
		case p.text == PlaceholderMain:
			b.WriteString(ShellQuote(main))
		case p.text == PlaceholderArgs:
			for i, a := range args {
				if i > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(ShellQuote(a))
			}
		default:
			return "", fmt.Errorf("%w: no value for {%s}", ErrCommandTemplate, p.text)
		}
	}
	return b.String(), nil
}

// ExpandedCommandBytes is the length ExpandCommand's result would have,
// without building it: a bound checked before the work (a template with
// {args} 64 times over a large list of arguments would be large).
func ExpandedCommandBytes(tmpl, main string, args []string) (int, error) {
	parts, err := parseTemplate(tmpl, commandGrammar)
	if err != nil {
		return 0, err
	}
	quoted := func(s string) int { return len(s) + 2 + 3*strings.Count(s, "'") }
	argBytes := max(len(args)-1, 0)
	for _, a := range args {
		argBytes += quoted(a)
	}
	n := 0
	for _, p := range parts {
		switch {
		case !p.hole:
			n += len(p.text)
		case p.text == PlaceholderMain:
			n += quoted(main)
		case p.text == PlaceholderArgs:
			n += argBytes
		}
	}
	return n, nil
}
