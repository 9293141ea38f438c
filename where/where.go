// Package where is a safe evaluator for the SQL WHERE clauses Coalition's
// web UI sends to /api/jobs/where/ and /api/jobs/count/where/. Upstream
// pastes the clause into a sqlite query; Croft has no SQL database, so it
// parses the subset of SQLite expressions such clauses use and evaluates it
// over one job row at a time.
//
// Semantics follow SQLite where it matters for filtering:
//   - NULL is three-valued: comparisons with NULL, and NOT/AND/OR over NULL,
//     give NULL, and a row matches only when the result is true. So both
//     "x = NULL" and "NOT (x = NULL)" match nothing, exactly as in sqlite.
//   - Numbers compare numerically (int against float exactly); strings
//     compare bytewise; a number against a string that is a well-formed
//     number compares numerically; otherwise numbers sort before strings.
//     (SQLite decides this from column affinity; Croft's rows are already
//     typed, so the looser rule gives the same answers for the job table.)
//   - Integer arithmetic that overflows becomes float, division by zero
//     gives NULL, and strings used as numbers take their numeric prefix.
//   - LIKE is case-insensitive for ASCII only, with % and _ wildcards and an
//     optional ESCAPE character; GLOB is case-sensitive with * ? and [...].
//   - Column names are case-insensitive and reach Row folded to lower case.
//
// The clause comes from the network and runs over every job of the farm, so
// its work is bounded (see Budget): every value it builds is capped at
// MaxValueBytes, LIKE and GLOB patterns at MaxPatternBytes (their
// matching is linear in text times pattern), and MatchBudget charges each
// node and each byte of string work against a budget shared by all rows,
// checking the request's context as it goes.
//
// It knows nothing of jobs, HTTP or the replicated state: the caller
// supplies each row as a Row, which reads a column by name (see DESIGN.md).
package where

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The evaluation errors. Each error Compile, Match and MatchBudget
// return wraps exactly one of them, or the context's error, so the HTTP edge
// can pick a status with errors.Is. Recommended mapping: ErrBadClause 400,
// ErrTooLarge 413, ErrBudget 422 (the same request will fail the
// same way again, so it is the client's to narrow, not a transient 503),
// context.Canceled 499 and context.DeadlineExceeded 503.
var (
	// ErrBadClause is a malformed clause, one over a static limit (length,
	// nesting, nodes, IN list, LIKE/GLOB pattern), an unknown column or a
	// column of an unsupported type.
	ErrBadClause = errors.New("bad where clause")
	// ErrTooLarge is an intermediate value that would exceed
	// MaxValueBytes, such as a concatenation of long titles.
	ErrTooLarge = errors.New("where clause builds a value larger than allowed")
	// ErrBudget is a Budget run out: the query needs more work than
	// allowed over the rows it was given.
	ErrBudget = errors.New("the query needs more work than allowed; narrow it")
)

const (
	// whereMaxLen bounds the clause; the UI's clauses are a few hundred bytes.
	whereMaxLen = 4096
	// whereMaxDepth bounds parser recursion (parentheses, NOT and unary
	// minus chains, function arguments) so hostile input cannot blow the stack.
	whereMaxDepth = 64
	// whereMaxNodes bounds a compiled clause, and so the fixed work of one
	// row; a flat chain of 300 ORed comparisons is about 900 nodes.
	whereMaxNodes = 2048
	// whereMaxInList bounds the elements of one IN list: enough for a
	// pasted selection of job ids, which whereMaxLen bounds anyway.
	whereMaxInList = 1024
)

// The limits of evaluation.
const (
	// MaxValueBytes caps every string evaluation builds (by ||,
	// LOWER, UPPER): one larger fails with ErrTooLarge before it is
	// allocated. Column values are read, not built, and are not capped.
	MaxValueBytes = 1 << 20
	// MaxPatternBytes caps LIKE and GLOB patterns, at compile time for
	// literal ones and at evaluation for computed ones (ErrBadClause), so
	// that matching, linear in text times pattern, stays cheap per byte of
	// text. SQLite allows 50,000; UI patterns are a few words.
	MaxPatternBytes = 256
	// DefaultSteps is a sensible budget for one query over the whole
	// farm. A step is about the work of evaluating one node of the clause,
	// some 100-150 instructions or 10-25 ns, and string work is charged at
	// the same rate, so a hostile clause stops after about a second of CPU
	// (0.2-1.6 s measured), while UI filters, 6-33 steps a row, run over a
	// million jobs with 2 to 10 times room to spare.
	DefaultSteps = 64_000_000

	// whereBytesPerStep is what a step buys of linear string work: copying
	// (0.5 ns a byte with allocation) or comparing (far less; overcharged
	// for simplicity).
	whereBytesPerStep = 16
	// whereRuneCost is what counting the runes of a byte costs, in copied
	// bytes (1 ns a byte).
	whereRuneCost = 2
	// whereNumberCost is what reading a byte of text as a number costs, in
	// copied bytes: scanning it, and shortening a long numeral for strconv
	// (3 ns a byte). A text that is not a number stops the scan at once
	// and is overcharged, but only long texts are charged at all.
	whereNumberCost = 6
	// whereMatchPerStep is what a step buys of LIKE/GLOB matching, in units
	// of inner loop iterations, each one pattern character against one of
	// text: 1 for an ASCII character (2-3 ns), whereMatchWide for others.
	whereMatchPerStep = 4
	// whereMatchWide is what an iteration over a multibyte character costs.
	whereMatchWide = 4
	// whereMatchChunk is how many matching iterations go by between two
	// charges, so that one long match still stops on time.
	whereMatchChunk = 1024
	// whereCtxEvery is how many steps go by between two looks at the
	// context: a few tens of microseconds, and a negligible cost.
	whereCtxEvery = 4096
)

// Budget bounds the work of evaluating a clause over many rows: pass the
// same Budget to every MatchBudget call of one query. It is not safe for
// concurrent use. Once it has run out or its context is done, every later
// call returns the same error.
type Budget struct {
	ctx     context.Context
	steps   int64 // as given
	left    int64 // steps left; below zero means spent
	checkAt int64 // look at the context (and at left) when left drops below
	err     error // sticky: the first error that stopped evaluation
	used    int64 // the steps spent when err was set
	peak    int   // the largest value built, for tests
}

// NewBudget returns a budget of steps (DefaultSteps if steps <= 0;
// math.MaxInt64 for practically none) whose evaluation also stops when ctx
// is done.
func NewBudget(ctx context.Context, steps int64) *Budget {
	if ctx == nil {
		ctx = context.Background()
	}
	if steps <= 0 {
		steps = DefaultSteps
	}
	b := &Budget{ctx: ctx, steps: steps, left: steps}
	b.checkAt = max(steps-whereCtxEvery, 0)
	return b
}

// Spent returns how many steps have been charged so far (at most the
// budget).
func (b *Budget) Spent() int64 {
	if b.err != nil {
		return b.used
	}
	return b.steps - b.left
}

// Err returns the error that stopped evaluation, if any.
func (b *Budget) Err() error { return b.err }

// spend charges n steps. A nil budget is unlimited (Match). The fast path
// is a subtraction and a comparison; the context is consulted only every
// whereCtxEvery steps.
func (b *Budget) spend(n int64) error {
	if b == nil {
		return nil
	}
	b.left -= n
	if b.left >= b.checkAt {
		return nil
	}
	return b.slow()
}

func (b *Budget) slow() error {
	switch {
	case b.err != nil:
	case b.left < 0:
		b.err = fmt.Errorf("%w (the budget is %d steps)", ErrBudget, b.steps)
	case b.ctx.Err() != nil:
		b.err = fmt.Errorf("where clause evaluation stopped: %w", b.ctx.Err())
	default:
		b.checkAt = max(b.left-whereCtxEvery, 0)
		return nil
	}
	b.used = min(b.steps-b.left, b.steps)
	b.left, b.checkAt = -1, 0 // keep failing fast
	return b.err
}

// bytes charges linear work over n bytes; short strings ride on the step
// of their node.
func (b *Budget) bytes(n int) error {
	if n < whereBytesPerStep || b == nil {
		return nil // inlined: the common case costs a comparison
	}
	return b.spendBytes(n)
}

func (b *Budget) spendBytes(n int) error {
	if n < whereBytesPerStep {
		return nil
	}
	return b.spend(int64(n / whereBytesPerStep))
}

// compare charges a comparison of two non-NULL values: a text compared
// with a number is read as a number.
func (b *Budget) compare(x, y whereValue) error {
	if len(x.s)+len(y.s) == 0 { // only text values have an s
		return nil // inlined: numbers cost nothing beyond their node
	}
	return b.compareText(x, y)
}

func (b *Budget) compareText(x, y whereValue) error {
	n := len(x.s) + len(y.s)
	if x.kind != y.kind {
		n *= whereNumberCost
	}
	return b.bytes(n)
}

// build checks and charges a string of n bytes about to be built, before
// it is.
func (b *Budget) build(n int) error {
	if n > MaxValueBytes {
		return fmt.Errorf("%w: a value of %d bytes, the limit is %d", ErrTooLarge, n, MaxValueBytes)
	}
	if b != nil && n > b.peak {
		b.peak = n
	}
	return b.bytes(n)
}

// Row looks up a column of the row; ok is false for an unknown column.
// The value is int64, float64, string or nil (SQL NULL); other integer
// kinds, float32 and bool are accepted too.
type Row func(column string) (value any, ok bool)

// Clause is a compiled WHERE clause. It is immutable and safe for concurrent
// use by multiple goroutines.
type Clause struct {
	root  whereNode // nil for an empty clause
	cols  []string
	steps int64 // the node steps of one row: no node is evaluated twice
}

// Compile parses a WHERE clause; an empty clause matches every row.
// Errors wrap ErrBadClause and give the byte offset of the problem.
func Compile(clause string) (*Clause, error) {
	if len(clause) > whereMaxLen {
		return nil, fmt.Errorf("%w: clause is %d bytes, the limit is %d", ErrBadClause, len(clause), whereMaxLen)
	}
	toks, err := whereLex(clause)
	if err != nil {
		return nil, err
	}
	if toks[0].kind == whereTEOF {
		return &Clause{}, nil
	}
	p := &whereParser{toks: toks, seen: map[string]bool{}}
	root, err := p.parseExpr()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != whereTEOF {
		return nil, p.errorf(t, "unexpected %s after the expression", t.describe())
	}
	nodes, steps := whereCountNodes(root)
	if nodes > whereMaxNodes {
		return nil, fmt.Errorf("%w: clause has %d nodes, the limit is %d", ErrBadClause, nodes, whereMaxNodes)
	}
	return &Clause{root: root, cols: p.cols, steps: int64(steps)}, nil
}

// whereCountNodes returns the number of nodes of a compiled clause and the
// steps they cost: 1 each, more for the dearer kinds (arithmetic 4, || 3;
// LIKE and GLOB, ABS and unary minus 2), so that a step stays near the same
// CPU time whatever the node.
func whereCountNodes(n whereNode) (nodes, steps int) {
	var walk func(n whereNode)
	walk = func(n whereNode) {
		nodes++
		steps++
		switch n := n.(type) {
		case *whereNeg:
			steps++
			walk(n.x)
		case *whereNot:
			walk(n.x)
		case *whereLogic:
			for _, x := range n.xs {
				walk(x)
			}
		case *whereCmpNode:
			walk(n.l)
			walk(n.r)
		case *whereIs:
			walk(n.l)
			walk(n.r)
		case *whereArithNode:
			steps += 3
			walk(n.l)
			walk(n.r)
		case *whereConcat:
			steps += 2
			walk(n.l)
			walk(n.r)
		case *whereIn:
			walk(n.x)
			if n.ints != nil { // a lookup: the elements are not evaluated
				nodes += len(n.list)
				break
			}
			for _, x := range n.list {
				walk(x)
			}
		case *whereBetween:
			walk(n.x)
			walk(n.lo)
			walk(n.hi)
		case *whereLike:
			steps++
			walk(n.x)
			walk(n.pat)
		case *whereFunc:
			if n.name == "ABS" {
				steps++
			}
			for _, x := range n.args {
				walk(x)
			}
		}
	}
	walk(n)
	return nodes, steps
}

// whereIntSet returns the elements of an IN list as a set if they are all
// integer literals, and nil otherwise.
func whereIntSet(list []whereNode) map[int64]struct{} {
	set := make(map[int64]struct{}, len(list))
	for _, e := range list {
		lit, ok := e.(*whereLit)
		if !ok || lit.v.kind != whereInt {
			return nil
		}
		set[lit.v.i] = struct{}{}
	}
	return set
}

// Match evaluates the clause over r with no budget and no context: the
// value and pattern caps still hold, but nothing bounds the total work, so
// a query over many rows should use MatchBudget. A nil or empty Clause
// matches every row.
func (w *Clause) Match(r Row) (bool, error) {
	return w.MatchBudget(r, nil)
}

// MatchBudget evaluates the clause over r, charging its work to b (nil: no
// limit). Errors wrap ErrBadClause (an unknown column, a computed pattern over
// MaxPatternBytes), ErrTooLarge, ErrBudget, or the error of
// b's context once it is done.
func (w *Clause) MatchBudget(r Row, b *Budget) (bool, error) {
	if b != nil && b.err != nil {
		return false, b.err
	}
	if w == nil || w.root == nil {
		return true, nil
	}
	// Every node costs a step, charged for the row up front rather than
	// node by node, which is an upper bound (AND and OR stop early) and
	// keeps the per-node cost of budgeting to nothing.
	if err := b.spend(w.steps); err != nil {
		return false, err
	}
	v, err := w.root.eval(r, b)
	if err == nil {
		err = b.bytes(whereNumberCost * v.textLen())
	}
	if err != nil {
		return false, err
	}
	return v.truth(), nil
}

// Columns returns the column names the clause uses, lower-cased, in order of
// first use, so the caller can reject unknown ones up front.
func (w *Clause) Columns() []string {
	if w == nil {
		return nil
	}
	return append([]string(nil), w.cols...)
}

// ---- values ----

type whereKind uint8

const (
	whereNull whereKind = iota
	whereInt
	whereFloat
	whereText
)

// whereValue is a SQL value. A struct rather than an any so that evaluating
// a row does not allocate. Only text values have a non-empty s.
type whereValue struct {
	kind whereKind
	i    int64
	f    float64
	s    string
}

func whereIntVal(i int64) whereValue     { return whereValue{kind: whereInt, i: i} }
func whereTextVal(s string) whereValue   { return whereValue{kind: whereText, s: s} }
func whereFloatVal(f float64) whereValue { return whereValue{kind: whereFloat, f: f} }

// whereBool is SQLite's boolean: the integers 0 and 1.
func whereBool(b bool) whereValue {
	if b {
		return whereIntVal(1)
	}
	return whereIntVal(0)
}

// whereFromAny converts a Row value.
func whereFromAny(v any, col string) (whereValue, error) {
	switch x := v.(type) {
	case nil:
		return whereValue{}, nil
	case int64:
		return whereIntVal(x), nil
	case int:
		return whereIntVal(int64(x)), nil
	case int32:
		return whereIntVal(int64(x)), nil
	case int16:
		return whereIntVal(int64(x)), nil
	case int8:
		return whereIntVal(int64(x)), nil
	case uint32:
		return whereIntVal(int64(x)), nil
	case uint16:
		return whereIntVal(int64(x)), nil
	case uint8:
		return whereIntVal(int64(x)), nil
	case uint64:
		if x > math.MaxInt64 {
			return whereFloatVal(float64(x)), nil
		}
		return whereIntVal(int64(x)), nil
	case uint:
		if uint64(x) > math.MaxInt64 {
			return whereFloatVal(float64(x)), nil
		}
		return whereIntVal(int64(x)), nil
	case bool:
		return whereBool(x), nil
	case float64:
		return whereFloat64(x), nil
	case float32:
		return whereFloat64(float64(x)), nil
	case string:
		return whereTextVal(x), nil
	}
	return whereValue{}, fmt.Errorf("%w: column %q has unsupported type %T", ErrBadClause, col, v)
}

// whereFloat64 maps NaN to NULL, as SQLite does when storing a NaN.
func whereFloat64(f float64) whereValue {
	if math.IsNaN(f) {
		return whereValue{}
	}
	return whereFloatVal(f)
}

// textLen is the length of a string value, the bytes a numeric reading
// of it may scan; 0 for other kinds, whose s is always empty.
func (v whereValue) textLen() int { return len(v.s) }

// truth is SQLite's notion of a true WHERE result: NULL is false and a
// string counts by its numeric prefix ('1abc' is true, 'abc' false).
func (v whereValue) truth() bool {
	switch v.kind {
	case whereInt:
		return v.i != 0
	case whereFloat:
		return v.f != 0
	case whereText:
		n := whereNumPrefix(v.s)
		return (n.kind == whereInt && n.i != 0) || (n.kind == whereFloat && n.f != 0)
	}
	return false
}

// text renders v as SQLite's CAST(v AS TEXT) would; NULL has no text and
// callers check for it first.
func (v whereValue) text() string {
	switch v.kind {
	case whereInt:
		return strconv.FormatInt(v.i, 10)
	case whereFloat:
		return whereFloatText(v.f)
	}
	return v.s
}

// whereFloatText approximates sqlite's "%!.15g": 15 significant digits and
// always a decimal point, so 2.0 reads back as a float.
func whereFloatText(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	s := strconv.FormatFloat(f, 'g', 15, 64)
	if strings.Contains(s, ".") {
		return s
	}
	if e := strings.IndexByte(s, 'e'); e >= 0 {
		return s[:e] + ".0" + s[e:]
	}
	return s + ".0"
}

// numeric converts v for arithmetic: strings take their numeric prefix.
func (v whereValue) numeric() whereValue {
	if v.kind == whereText {
		return whereNumPrefix(v.s)
	}
	return v
}

func whereIsSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func whereIsDigit(c byte) bool { return '0' <= c && c <= '9' }

// whereScanNumber scans a decimal number at the start of s (after leading
// spaces): sign, digits, fraction, exponent. It returns where the number
// starts and ends, whether it is integer-shaped, and whether it had a digit.
func whereScanNumber(s string) (start, end int, isInt, ok bool) {
	i := 0
	for i < len(s) && whereIsSpace(s[i]) {
		i++
	}
	start = i
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits := 0
	for i < len(s) && whereIsDigit(s[i]) {
		i++
		digits++
	}
	isInt = true
	if i < len(s) && s[i] == '.' {
		j := i + 1
		frac := 0
		for j < len(s) && whereIsDigit(s[j]) {
			j++
			frac++
		}
		if digits+frac > 0 {
			i, digits, isInt = j, digits+frac, false
		}
	}
	if digits == 0 {
		return start, start, false, false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		j := i + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		if j < len(s) && whereIsDigit(s[j]) {
			for j < len(s) && whereIsDigit(s[j]) {
				j++
			}
			i, isInt = j, false
		}
	}
	return start, i, isInt, true
}

// whereNumeralMax is the longest numeral handed to strconv as it is. A
// string column can hold a megabyte of digits, and strconv, linear but
// slow on such numerals, also copies all of one into its range error.
const whereNumeralMax = 64

// whereParseNumber converts a string whereScanNumber accepted. Integers too
// big for int64 become floats, as in SQLite.
func whereParseNumber(num string, isInt bool) whereValue {
	if isInt {
		if v, ok := whereParseInt(num); ok {
			return v
		}
	}
	if len(num) > whereNumeralMax {
		num = whereShortNumeral(num)
	}
	f, _ := strconv.ParseFloat(num, 64) // syntax already checked; range errors give ±Inf
	return whereFloat64(f)
}

// whereParseInt is strconv.ParseInt(num, 10, 64) for an integer numeral
// (sign and digits), without its error path.
func whereParseInt(num string) (whereValue, bool) {
	neg := num[0] == '-'
	if num[0] == '+' || num[0] == '-' {
		num = num[1:]
	}
	num = strings.TrimLeft(num, "0")
	if len(num) > 19 { // 19 digits cannot overflow a uint64
		return whereValue{}, false
	}
	var u uint64
	for i := 0; i < len(num); i++ {
		u = u*10 + uint64(num[i]-'0')
	}
	switch {
	case !neg && u <= math.MaxInt64:
		return whereIntVal(int64(u)), true
	case neg && u <= 1<<63:
		return whereIntVal(int64(-u)), true // -(1<<63) wraps to MinInt64
	}
	return whereValue{}, false
}

// whereShortNumeral rewrites a numeral whereScanNumber accepted as
// [-]0.DIGITSeEXP with at most 800 significant digits, plus a final 1 when
// nonzero digits were dropped. ParseFloat gives the same float for both:
// it keeps 800 digits and such a flag itself, enough to round exactly (a
// point halfway between two float64s has at most 767 significant digits).
func whereShortNumeral(num string) string {
	const keep = 800
	b := make([]byte, 0, keep+32)
	i := 0
	if num[0] == '+' || num[0] == '-' {
		if num[0] == '-' {
			b = append(b, '-')
		}
		i++
	}
	b = append(b, '0', '.')
	exp := 0 // the value is 0.DIGITS times 10^exp
	n, point, dropped := 0, false, false
	for ; i < len(num) && num[i] != 'e' && num[i] != 'E'; i++ {
		switch c := num[i]; {
		case c == '.':
			point = true
		case c == '0' && n == 0: // a leading zero
			if point {
				exp--
			}
		default:
			if !point {
				exp++
			}
			if n < keep {
				b, n = append(b, c), n+1
			} else if c != '0' {
				dropped = true
			}
		}
	}
	if n == 0 {
		return string(b[:len(b)-1]) // [-]0.
	}
	if dropped {
		b = append(b, '1')
	}
	if i < len(num) { // the exponent: [eE][+-]digits
		i++
		neg := num[i] == '-'
		if num[i] == '+' || num[i] == '-' {
			i++
		}
		e := 0
		for ; i < len(num); i++ {
			if e < 1e8 { // saturate: far past any float64 already
				e = e*10 + int(num[i]-'0')
			}
		}
		if neg {
			e = -e
		}
		exp += e
	}
	exp = min(max(exp, -1000), 1000) // 0 and ±Inf already
	b = append(b, 'e')
	return string(strconv.AppendInt(b, int64(exp), 10))
}

// whereNumPrefix is SQLite's string-to-number cast: the longest numeric
// prefix, or 0.
func whereNumPrefix(s string) whereValue {
	start, end, isInt, ok := whereScanNumber(s)
	if !ok {
		return whereIntVal(0)
	}
	return whereParseNumber(s[start:end], isInt)
}

// whereTextNumber reports whether all of s (bar surrounding spaces) is a
// number, and its value.
func whereTextNumber(s string) (whereValue, bool) {
	start, end, isInt, ok := whereScanNumber(s)
	if !ok {
		return whereValue{}, false
	}
	for i := end; i < len(s); i++ {
		if !whereIsSpace(s[i]) {
			return whereValue{}, false
		}
	}
	return whereParseNumber(s[start:end], isInt), true
}

// whereCompare orders two non-NULL values.
func whereCompare(a, b whereValue) int {
	aText, bText := a.kind == whereText, b.kind == whereText
	switch {
	case aText && bText:
		return strings.Compare(a.s, b.s)
	case aText:
		if n, ok := whereTextNumber(a.s); ok {
			return whereCompareNum(n, b)
		}
		return 1 // numbers sort before text
	case bText:
		if n, ok := whereTextNumber(b.s); ok {
			return whereCompareNum(a, n)
		}
		return -1
	}
	return whereCompareNum(a, b)
}

func whereCompareNum(a, b whereValue) int {
	switch {
	case a.kind == whereInt && b.kind == whereInt:
		return whereCmp3(a.i < b.i, a.i > b.i)
	case a.kind == whereInt:
		return whereCompareIntFloat(a.i, b.f)
	case b.kind == whereInt:
		return -whereCompareIntFloat(b.i, a.f)
	}
	return whereCmp3(a.f < b.f, a.f > b.f)
}

func whereCmp3(less, greater bool) int {
	switch {
	case less:
		return -1
	case greater:
		return 1
	}
	return 0
}

// whereCompareIntFloat compares exactly, where float64(i) would round
// integers above 2^53.
func whereCompareIntFloat(i int64, f float64) int {
	if f >= 9223372036854775808.0 {
		return -1
	}
	if f < -9223372036854775808.0 {
		return 1
	}
	t := int64(f) // in range, truncates toward zero
	if c := whereCmp3(i < t, i > t); c != 0 {
		return c
	}
	frac := f - float64(t) // exact: the fraction of a float is representable
	return whereCmp3(frac > 0, frac < 0)
}

// whereArith applies + - * / to two non-NULL numbers.
func whereArith(op byte, a, b whereValue) whereValue {
	if a.kind == whereInt && b.kind == whereInt {
		x, y := a.i, b.i
		switch op {
		case '+':
			s := x + y
			if (x > 0 && y > 0 && s < 0) || (x < 0 && y < 0 && s >= 0) {
				break // overflow: redo in float below
			}
			return whereIntVal(s)
		case '-':
			d := x - y
			if (x >= 0 && y < 0 && d < 0) || (x < 0 && y > 0 && d >= 0) {
				break
			}
			return whereIntVal(d)
		case '*':
			p := x * y
			if x != 0 && (p/x != y || (x == -1 && y == math.MinInt64) || (y == -1 && x == math.MinInt64)) {
				break
			}
			return whereIntVal(p)
		case '/':
			if y == 0 {
				return whereValue{}
			}
			if x == math.MinInt64 && y == -1 {
				break
			}
			return whereIntVal(x / y)
		}
	}
	x, y := a.float(), b.float()
	var r float64
	switch op {
	case '+':
		r = x + y
	case '-':
		r = x - y
	case '*':
		r = x * y
	case '/':
		if y == 0 {
			return whereValue{}
		}
		r = x / y
	}
	return whereFloat64(r)
}

func (v whereValue) float() float64 {
	if v.kind == whereInt {
		return float64(v.i)
	}
	return v.f
}

// ---- pattern matching ----

func whereLowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// whereFoldEq compares two encoded characters, folding ASCII case only
// (SQLite's LIKE without ICU). Comparing bytes keeps invalid UTF-8 exact.
func whereFoldEq(a, b string) bool {
	if a == b {
		return true
	}
	return len(a) == 1 && len(b) == 1 && whereLowerASCII(a[0]) == whereLowerASCII(b[0])
}

// whereLikeMatch reports whether s matches the LIKE pattern pat: % is any
// run, _ any one character; esc, if not -1, makes the next pattern character
// literal. Every other pattern character, _ and escaped ones included,
// matches exactly one character of s, so one backtrack point (the last %)
// is enough. Each backtrack moves its start in s one character on, and
// between two backtracks the loop walks the pattern at most once, so it
// runs O(len(pat)*len(s)) times whatever the pattern. The iterations are
// charged to b.
func whereLikeMatch(pat, s string, esc rune, b *Budget) (bool, error) {
	pi, si := 0, 0
	starP, starS := -1, 0
	work := int64(0)
	for si < len(s) {
		if work++; work >= whereMatchChunk {
			if err := b.spend(work / whereMatchPerStep); err != nil {
				return false, err
			}
			work %= whereMatchPerStep
		}
		if pi < len(pat) {
			// The common case, ASCII on both sides and no escape.
			if pb, sb := pat[pi], s[si]; pb < utf8.RuneSelf && sb < utf8.RuneSelf && rune(pb) != esc {
				switch {
				case pb == '%':
					pi++
					starP, starS = pi, si
					continue
				case pb == '_' || whereLowerASCII(pb) == whereLowerASCII(sb):
					pi, si = pi+1, si+1
					continue
				}
				goto mismatch
			}
			work += whereMatchWide - 1
			pc, pn := utf8.DecodeRuneInString(pat[pi:])
			literal := false
			if esc >= 0 && pc == esc {
				if pi+pn >= len(pat) {
					return false, nil // a dangling escape matches nothing
				}
				pi += pn
				pc, pn = utf8.DecodeRuneInString(pat[pi:])
				literal = true
			}
			sc, sn := utf8.DecodeRuneInString(s[si:])
			switch {
			case !literal && pc == '%':
				pi += pn
				starP, starS = pi, si
				continue
			case !literal && pc == '_':
				pi, si = pi+pn, si+sn
				continue
			case (pc == sc && pc != utf8.RuneError) || whereFoldEq(pat[pi:pi+pn], s[si:si+sn]):
				pi, si = pi+pn, si+sn
				continue
			}
		}
	mismatch:
		if starP < 0 {
			return false, nil
		}
		_, sn := utf8.DecodeRuneInString(s[starS:])
		starS += sn
		pi, si = starP, starS
	}
	if work >= whereMatchPerStep {
		if err := b.spend(work / whereMatchPerStep); err != nil {
			return false, err
		}
	}
	for pi < len(pat) {
		if (esc >= 0 && rune(pat[pi]) == esc) || pat[pi] != '%' {
			return false, nil
		}
		pi++
	}
	return true, nil
}

// whereGlobMatch reports whether s matches the GLOB pattern pat: * any run,
// ? any one character, [...] a character class ([^...] negated, a-z ranges).
// Case-sensitive. A class without its closing ] matches nothing, as in SQLite.
// As in whereLikeMatch, everything but * matches exactly one character (a
// class too), so the work is O(len(pat)*len(s)); scanning a class counts
// as its length in iterations.
func whereGlobMatch(pat, s string, b *Budget) (bool, error) {
	pi, si := 0, 0
	starP, starS := -1, 0
	work := int64(0)
	for si < len(s) {
		if work++; work >= whereMatchChunk {
			if err := b.spend(work / whereMatchPerStep); err != nil {
				return false, err
			}
			work %= whereMatchPerStep
		}
		if pi < len(pat) {
			sc, sn := utf8.DecodeRuneInString(s[si:])
			if sn > 1 || pat[pi] >= utf8.RuneSelf {
				work += whereMatchWide - 1
			}
			switch pat[pi] {
			case '*':
				pi++
				starP, starS = pi, si
				continue
			case '?':
				pi, si = pi+1, si+sn
				continue
			case '[':
				end, ok := whereGlobClass(pat, pi, sc)
				if end < 0 {
					return false, nil
				}
				work += int64(end - pi)
				if ok {
					pi, si = end, si+sn
					continue
				}
			default:
				_, pn := utf8.DecodeRuneInString(pat[pi:])
				if pat[pi:pi+pn] == s[si:si+sn] {
					pi, si = pi+pn, si+sn
					continue
				}
			}
		}
		if starP < 0 {
			return false, nil
		}
		_, sn := utf8.DecodeRuneInString(s[starS:])
		starS += sn
		pi, si = starP, starS
	}
	if work >= whereMatchPerStep {
		if err := b.spend(work / whereMatchPerStep); err != nil {
			return false, err
		}
	}
	for pi < len(pat) && pat[pi] == '*' {
		pi++
	}
	return pi == len(pat), nil
}

// whereGlobClass matches c against the class starting at pat[pi] == '['. It
// returns the offset after the closing ], or -1 if there is none.
func whereGlobClass(pat string, pi int, c rune) (end int, ok bool) {
	i := pi + 1
	neg := false
	if i < len(pat) && pat[i] == '^' {
		neg = true
		i++
	}
	match := false
	first := true
	for i < len(pat) {
		if pat[i] == ']' && !first {
			return i + 1, match != neg
		}
		first = false
		lo, n := utf8.DecodeRuneInString(pat[i:])
		i += n
		hi := lo
		if i+1 < len(pat) && pat[i] == '-' && pat[i+1] != ']' {
			hi, n = utf8.DecodeRuneInString(pat[i+1:])
			i += 1 + n
		}
		if lo <= c && c <= hi {
			match = true
		}
	}
	return -1, false
}

// ---- lexer ----

type whereTokKind uint8

const (
	whereTEOF whereTokKind = iota
	whereTIdent
	whereTKeyword // text is upper-cased
	whereTString
	whereTNumber
	whereTOp
)

type whereTok struct {
	kind whereTokKind
	text string     // identifier, keyword, operator or string contents
	val  whereValue // numbers
	off  int        // byte offset in the clause, for error messages
}

func (t whereTok) describe() string {
	switch t.kind {
	case whereTEOF:
		return "end of clause"
	case whereTString:
		s := t.text
		if len(s) > 20 {
			s = s[:20] + "..."
		}
		return "string " + strconv.Quote(s)
	case whereTKeyword:
		return "keyword " + t.text
	case whereTNumber:
		return "number " + t.val.text()
	}
	return strconv.Quote(t.text)
}

// whereKeywords are reserved: they never name a column. The ones the
// evaluator does not implement are here so that they fail clearly.
var whereKeywords = map[string]bool{
	"AND": true, "OR": true, "NOT": true, "IN": true, "IS": true, "NULL": true,
	"LIKE": true, "GLOB": true, "BETWEEN": true, "ESCAPE": true, "TRUE": true,
	"FALSE": true, "ISNULL": true, "NOTNULL": true,
	"SELECT": true, "FROM": true, "WHERE": true, "ORDER": true, "BY": true,
	"GROUP": true, "HAVING": true, "LIMIT": true, "OFFSET": true, "UNION": true,
	"EXISTS": true, "CASE": true, "WHEN": true, "THEN": true, "ELSE": true,
	"END": true, "CAST": true, "COLLATE": true, "MATCH": true, "REGEXP": true,
	"DISTINCT": true,
}

func whereIsIdentStart(c byte) bool {
	return c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || c >= 0x80
}

func whereIsIdentChar(c byte) bool { return whereIsIdentStart(c) || whereIsDigit(c) || c == '$' }

func whereLexErr(off int, format string, args ...any) error {
	return fmt.Errorf("%w: %s at offset %d", ErrBadClause, fmt.Sprintf(format, args...), off)
}

func whereLex(src string) ([]whereTok, error) {
	var toks []whereTok
	i := 0
	for {
		// Skip spaces and comments.
		for i < len(src) {
			switch {
			case whereIsSpace(src[i]):
				i++
				continue
			case strings.HasPrefix(src[i:], "--"):
				if n := strings.IndexByte(src[i:], '\n'); n >= 0 {
					i += n + 1
				} else {
					i = len(src)
				}
				continue
			case strings.HasPrefix(src[i:], "/*"):
				if n := strings.Index(src[i+2:], "*/"); n >= 0 {
					i += n + 4
				} else {
					i = len(src) // sqlite accepts an unterminated comment at the end
				}
				continue
			}
			break
		}
		if i >= len(src) {
			return append(toks, whereTok{kind: whereTEOF, off: i}), nil
		}
		c, start := src[i], i
		switch {
		case c == '\'':
			s, end, err := whereLexQuoted(src, i, "string literal")
			if err != nil {
				return nil, err
			}
			toks, i = append(toks, whereTok{kind: whereTString, text: s, off: start}), end
		case c == '"' || c == '`':
			s, end, err := whereLexQuoted(src, i, "quoted identifier")
			if err != nil {
				return nil, err
			}
			if s == "" {
				return nil, whereLexErr(start, "empty quoted identifier")
			}
			toks, i = append(toks, whereTok{kind: whereTIdent, text: s, off: start}), end
		case c == '[':
			n := strings.IndexByte(src[i+1:], ']')
			if n < 0 {
				return nil, whereLexErr(start, "unterminated [identifier]")
			}
			if n == 0 {
				return nil, whereLexErr(start, "empty quoted identifier")
			}
			toks, i = append(toks, whereTok{kind: whereTIdent, text: src[i+1 : i+1+n], off: start}), i+n+2
		case whereIsDigit(c) || (c == '.' && i+1 < len(src) && whereIsDigit(src[i+1])):
			v, end, err := whereLexNumber(src, i)
			if err != nil {
				return nil, err
			}
			toks, i = append(toks, whereTok{kind: whereTNumber, val: v, text: src[i:end], off: start}), end
		case whereIsIdentStart(c):
			for i < len(src) && whereIsIdentChar(src[i]) {
				i++
			}
			word := src[start:i]
			if up := strings.ToUpper(word); whereKeywords[up] {
				toks = append(toks, whereTok{kind: whereTKeyword, text: up, off: start})
			} else {
				toks = append(toks, whereTok{kind: whereTIdent, text: word, off: start})
			}
		default:
			op := ""
			if i+1 < len(src) {
				switch two := src[i : i+2]; two {
				case "==", "!=", "<>", "<=", ">=", "||":
					op = two
				}
			}
			if op == "" {
				switch c {
				case '=', '<', '>', '(', ')', ',', '+', '-', '*', '/':
					op = src[i : i+1]
				default:
					r, _ := utf8.DecodeRuneInString(src[i:])
					return nil, whereLexErr(start, "unexpected character %q", r)
				}
			}
			toks, i = append(toks, whereTok{kind: whereTOp, text: op, off: start}), i+len(op)
		}
	}
}

// whereLexQuoted reads a quoted token at src[i], where a doubled quote stands
// for one, and returns its contents and the offset after it.
func whereLexQuoted(src string, i int, what string) (string, int, error) {
	q := src[i]
	var b strings.Builder
	j, from := i+1, i+1
	for j < len(src) {
		if src[j] != q {
			j++
			continue
		}
		if j+1 < len(src) && src[j+1] == q {
			b.WriteString(src[from : j+1])
			j += 2
			from = j
			continue
		}
		if b.Len() == 0 {
			return src[from:j], j + 1, nil // the common case: no escapes, no copy
		}
		b.WriteString(src[from:j])
		return b.String(), j + 1, nil
	}
	return "", 0, whereLexErr(i, "unterminated %s", what)
}

// whereLexNumber reads a numeric literal at src[i]: decimal, float with
// optional exponent, or 0x hex (64-bit two's complement, as in SQLite).
func whereLexNumber(src string, i int) (whereValue, int, error) {
	start := i
	var v whereValue
	if src[i] == '0' && i+2 < len(src) && (src[i+1] == 'x' || src[i+1] == 'X') && whereIsHex(src[i+2]) {
		i += 2
		for i < len(src) && whereIsHex(src[i]) {
			i++
		}
		if i-start-2 > 16 {
			return v, 0, whereLexErr(start, "hex literal too big")
		}
		u, _ := strconv.ParseUint(src[start+2:i], 16, 64)
		v = whereIntVal(int64(u))
	} else {
		_, end, isInt, _ := whereScanNumber(src[i:]) // starts with a digit or .digit
		// An exponent marker without digits is an error here, not a stop.
		if j := i + end; j < len(src) && (src[j] == 'e' || src[j] == 'E') {
			return v, 0, whereLexErr(start, "malformed number %q", whereSnippet(src[start:]))
		}
		i += end
		v = whereParseNumber(src[start:i], isInt)
	}
	if i < len(src) && (whereIsIdentChar(src[i]) || src[i] == '.') {
		return v, 0, whereLexErr(start, "malformed number %q", whereSnippet(src[start:]))
	}
	return v, i, nil
}

func whereIsHex(c byte) bool {
	return whereIsDigit(c) || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// whereSnippet shortens s to its first word for an error message.
func whereSnippet(s string) string {
	i := 0
	for i < len(s) && i < 20 && (whereIsIdentChar(s[i]) || s[i] == '.' || s[i] == '+' || s[i] == '-') {
		i++
	}
	if i == 0 && len(s) > 0 {
		i = 1
	}
	return s[:i]
}

// ---- parser ----

// whereParser is a recursive-descent parser over SQLite's precedence, from
// loosest: OR; AND; NOT; = == != <> IS IN LIKE GLOB BETWEEN; < <= > >=;
// + -; * /; ||; unary - +.
type whereParser struct {
	toks  []whereTok
	pos   int
	depth int
	cols  []string
	seen  map[string]bool
}

func (p *whereParser) peek() whereTok { return p.toks[p.pos] }

func (p *whereParser) next() whereTok {
	t := p.toks[p.pos]
	if t.kind != whereTEOF {
		p.pos++
	}
	return t
}

// peek2 looks one token past the current one (EOF at the end).
func (p *whereParser) peek2() whereTok {
	if p.pos+1 < len(p.toks) {
		return p.toks[p.pos+1]
	}
	return p.toks[len(p.toks)-1]
}

func (t whereTok) isKw(kw string) bool { return t.kind == whereTKeyword && t.text == kw }
func (t whereTok) isOp(op string) bool { return t.kind == whereTOp && t.text == op }

func (p *whereParser) errorf(t whereTok, format string, args ...any) error {
	return whereLexErr(t.off, format, args...)
}

func (p *whereParser) expectOp(op string) error {
	if t := p.next(); !t.isOp(op) {
		return p.errorf(t, "expected %q, found %s", op, t.describe())
	}
	return nil
}

// enter guards every recursive descent; leave must follow a nil error.
func (p *whereParser) enter() error {
	p.depth++
	if p.depth > whereMaxDepth {
		return p.errorf(p.peek(), "expression nested deeper than %d", whereMaxDepth)
	}
	return nil
}

func (p *whereParser) leave() { p.depth-- }

func (p *whereParser) parseExpr() (whereNode, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	return p.parseLogic("OR")
}

// parseLogic parses a chain of ORs (of ANDs) into one n-ary node.
func (p *whereParser) parseLogic(kw string) (whereNode, error) {
	sub := p.parseNot
	if kw == "OR" {
		sub = func() (whereNode, error) { return p.parseLogic("AND") }
	}
	x, err := sub()
	if err != nil {
		return nil, err
	}
	if !p.peek().isKw(kw) {
		return x, nil
	}
	n := &whereLogic{or: kw == "OR", xs: []whereNode{x}}
	for p.peek().isKw(kw) {
		p.next()
		y, err := sub()
		if err != nil {
			return nil, err
		}
		n.xs = append(n.xs, y)
	}
	return n, nil
}

func (p *whereParser) parseNot() (whereNode, error) {
	if !p.peek().isKw("NOT") {
		return p.parseEquality()
	}
	p.next()
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	x, err := p.parseNot()
	if err != nil {
		return nil, err
	}
	return &whereNot{x: x}, nil
}

func (p *whereParser) parseEquality() (whereNode, error) {
	l, err := p.parseRelational()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		switch {
		case t.isOp("=") || t.isOp("==") || t.isOp("!=") || t.isOp("<>"):
			p.next()
			r, err := p.parseRelational()
			if err != nil {
				return nil, err
			}
			op := whereEQ
			if t.text == "!=" || t.text == "<>" {
				op = whereNE
			}
			l = &whereCmpNode{op: op, l: l, r: r}
		case t.isKw("IS"):
			p.next()
			not := false
			if p.peek().isKw("NOT") {
				p.next()
				not = true
			}
			r, err := p.parseRelational()
			if err != nil {
				return nil, err
			}
			l = &whereIs{l: l, r: r, not: not}
		case t.isKw("ISNULL"), t.isKw("NOTNULL"):
			p.next()
			l = &whereIs{l: l, r: &whereLit{}, not: t.text == "NOTNULL"}
		case t.isKw("NOT"):
			// Only a negated postfix operator can follow an operand; any
			// other NOT is left for the caller to reject.
			switch n := p.peek2(); {
			case n.isKw("IN"), n.isKw("LIKE"), n.isKw("GLOB"), n.isKw("BETWEEN"), n.isKw("NULL"):
				p.next()
				if l, err = p.parsePostfix(l, true); err != nil {
					return nil, err
				}
			default:
				return l, nil
			}
		case t.isKw("IN"), t.isKw("LIKE"), t.isKw("GLOB"), t.isKw("BETWEEN"):
			if l, err = p.parsePostfix(l, false); err != nil {
				return nil, err
			}
		default:
			return l, nil
		}
	}
}

// parsePostfix parses IN, LIKE, GLOB, BETWEEN or (after NOT) NULL applied to l.
func (p *whereParser) parsePostfix(l whereNode, not bool) (whereNode, error) {
	t := p.next()
	switch t.text {
	case "NULL": // x NOT NULL
		return &whereIs{l: l, r: &whereLit{}, not: true}, nil
	case "IN":
		if err := p.expectOp("("); err != nil {
			return nil, err
		}
		n := &whereIn{x: l, not: not}
		if p.peek().isOp(")") {
			p.next()
			return n, nil // x IN () is valid sqlite and always false
		}
		for {
			if p.peek().isKw("SELECT") {
				return nil, p.errorf(p.peek(), "subqueries are not supported")
			}
			if len(n.list) == whereMaxInList {
				return nil, p.errorf(p.peek(), "IN list longer than %d elements", whereMaxInList)
			}
			y, err := p.parseExpr()
			if err != nil {
				return nil, err
			}
			n.list = append(n.list, y)
			if !p.peek().isOp(",") {
				break
			}
			p.next()
		}
		n.ints = whereIntSet(n.list)
		return n, p.expectOp(")")
	case "LIKE", "GLOB":
		pt := p.peek()
		pat, err := p.parseRelational()
		if err != nil {
			return nil, err
		}
		if lit, ok := pat.(*whereLit); ok && lit.v.kind != whereNull && len(lit.v.text()) > MaxPatternBytes {
			return nil, p.errorf(pt, "%s pattern is %d bytes, the limit is %d", t.text, len(lit.v.text()), MaxPatternBytes)
		}
		n := &whereLike{x: l, pat: pat, esc: -1, glob: t.text == "GLOB", not: not}
		if p.peek().isKw("ESCAPE") {
			e := p.next()
			if n.glob {
				return nil, p.errorf(e, "ESCAPE is only allowed with LIKE")
			}
			s := p.next()
			r, size := utf8.DecodeRuneInString(s.text)
			if s.kind != whereTString || size != len(s.text) || r == utf8.RuneError {
				return nil, p.errorf(s, "ESCAPE needs a one-character string, found %s", s.describe())
			}
			n.esc = r
		}
		return n, nil
	default: // BETWEEN
		lo, err := p.parseRelational()
		if err != nil {
			return nil, err
		}
		if a := p.next(); !a.isKw("AND") {
			return nil, p.errorf(a, "expected AND in BETWEEN, found %s", a.describe())
		}
		hi, err := p.parseRelational()
		if err != nil {
			return nil, err
		}
		return &whereBetween{x: l, lo: lo, hi: hi, not: not}, nil
	}
}

func (p *whereParser) parseRelational() (whereNode, error) {
	l, err := p.parseAdditive()
	if err != nil {
		return nil, err
	}
	for {
		var op whereCmpOp
		switch t := p.peek(); {
		case t.isOp("<"):
			op = whereLT
		case t.isOp("<="):
			op = whereLE
		case t.isOp(">"):
			op = whereGT
		case t.isOp(">="):
			op = whereGE
		default:
			return l, nil
		}
		p.next()
		r, err := p.parseAdditive()
		if err != nil {
			return nil, err
		}
		l = &whereCmpNode{op: op, l: l, r: r}
	}
}

// parseBinary parses a left-associative chain of the given operators.
func (p *whereParser) parseBinary(sub func() (whereNode, error), ops string) (whereNode, error) {
	l, err := sub()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind != whereTOp || len(t.text) != 1 || !strings.Contains(ops, t.text) {
			return l, nil
		}
		p.next()
		r, err := sub()
		if err != nil {
			return nil, err
		}
		l = &whereArithNode{op: t.text[0], l: l, r: r}
	}
}

func (p *whereParser) parseAdditive() (whereNode, error) {
	return p.parseBinary(p.parseMultiplicative, "+-")
}

func (p *whereParser) parseMultiplicative() (whereNode, error) {
	return p.parseBinary(p.parseConcat, "*/")
}

func (p *whereParser) parseConcat() (whereNode, error) {
	l, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	for p.peek().isOp("||") {
		p.next()
		r, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		l = &whereConcat{l: l, r: r}
	}
	return l, nil
}

func (p *whereParser) parseUnary() (whereNode, error) {
	t := p.peek()
	if !t.isOp("-") && !t.isOp("+") {
		return p.parsePrimary()
	}
	p.next()
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	x, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	if t.text == "+" {
		return x, nil // unary plus is a no-op in SQLite, even on strings
	}
	if lit, ok := x.(*whereLit); ok && lit.v.kind == whereInt && lit.v.i != math.MinInt64 {
		return &whereLit{v: whereIntVal(-lit.v.i)}, nil // fold negative literals
	}
	return &whereNeg{x: x}, nil
}

func (p *whereParser) parsePrimary() (whereNode, error) {
	t := p.next()
	switch t.kind {
	case whereTNumber:
		return &whereLit{v: t.val}, nil
	case whereTString:
		return &whereLit{v: whereTextVal(t.text)}, nil
	case whereTIdent:
		if p.peek().isOp("(") {
			return p.parseCall(t)
		}
		name := strings.ToLower(t.text)
		if !p.seen[name] {
			p.seen[name] = true
			p.cols = append(p.cols, name)
		}
		return &whereCol{name: name}, nil
	case whereTKeyword:
		switch t.text {
		case "NULL":
			return &whereLit{}, nil
		case "TRUE":
			return &whereLit{v: whereIntVal(1)}, nil
		case "FALSE":
			return &whereLit{v: whereIntVal(0)}, nil
		case "SELECT", "EXISTS":
			return nil, p.errorf(t, "subqueries are not supported")
		}
		return nil, p.errorf(t, "unexpected keyword %s, expected an expression", t.text)
	case whereTOp:
		if t.text == "(" {
			x, err := p.parseExpr()
			if err != nil {
				return nil, err
			}
			return x, p.expectOp(")")
		}
	}
	return nil, p.errorf(t, "unexpected %s, expected an expression", t.describe())
}

// whereFuncs are the scalar functions a UI filter might plausibly use, with
// their argument counts (max -1: variadic).
var whereFuncs = map[string]struct{ min, max int }{
	"LOWER":    {1, 1},
	"UPPER":    {1, 1},
	"LENGTH":   {1, 1},
	"ABS":      {1, 1},
	"IFNULL":   {2, 2},
	"COALESCE": {2, -1},
}

func (p *whereParser) parseCall(name whereTok) (whereNode, error) {
	fn := strings.ToUpper(name.text)
	arity, ok := whereFuncs[fn]
	if !ok {
		return nil, p.errorf(name, "unknown function %s()", name.text)
	}
	p.next() // (
	n := &whereFunc{name: fn}
	if !p.peek().isOp(")") {
		for {
			x, err := p.parseExpr()
			if err != nil {
				return nil, err
			}
			n.args = append(n.args, x)
			if !p.peek().isOp(",") {
				break
			}
			p.next()
		}
	}
	if err := p.expectOp(")"); err != nil {
		return nil, err
	}
	if len(n.args) < arity.min || (arity.max >= 0 && len(n.args) > arity.max) {
		return nil, p.errorf(name, "wrong number of arguments to %s()", fn)
	}
	return n, nil
}

// ---- evaluation ----

// whereNode is a compiled expression. eval charges b the string work it
// does, before doing it (MatchBudget charges the nodes themselves).
type whereNode interface {
	eval(r Row, b *Budget) (whereValue, error)
}

type whereLit struct{ v whereValue }

func (n *whereLit) eval(Row, *Budget) (whereValue, error) { return n.v, nil }

type whereCol struct{ name string }

func (n *whereCol) eval(r Row, b *Budget) (whereValue, error) {
	if r == nil {
		return whereValue{}, fmt.Errorf("%w: unknown column %q", ErrBadClause, n.name)
	}
	v, ok := r(n.name)
	if !ok {
		return whereValue{}, fmt.Errorf("%w: unknown column %q", ErrBadClause, n.name)
	}
	return whereFromAny(v, n.name)
}

type whereNeg struct{ x whereNode }

func (n *whereNeg) eval(r Row, b *Budget) (whereValue, error) {
	v, err := n.x.eval(r, b)
	if err != nil || v.kind == whereNull {
		return whereValue{}, err
	}
	if err := b.bytes(whereNumberCost * v.textLen()); err != nil {
		return whereValue{}, err
	}
	v = v.numeric()
	if v.kind == whereInt {
		if v.i == math.MinInt64 {
			return whereFloatVal(-float64(v.i)), nil
		}
		return whereIntVal(-v.i), nil
	}
	return whereFloatVal(-v.f), nil
}

type whereNot struct{ x whereNode }

func (n *whereNot) eval(r Row, b *Budget) (whereValue, error) {
	v, err := n.x.eval(r, b)
	if err != nil || v.kind == whereNull {
		return whereValue{}, err
	}
	if err := b.bytes(whereNumberCost * v.textLen()); err != nil {
		return whereValue{}, err
	}
	return whereBool(!v.truth()), nil
}

// whereLogic is an n-ary AND or OR with SQLite's three-valued logic; it
// stops at the first operand that decides the result.
type whereLogic struct {
	or bool
	xs []whereNode
}

func (n *whereLogic) eval(r Row, b *Budget) (whereValue, error) {
	sawNull := false
	for _, x := range n.xs {
		v, err := x.eval(r, b)
		if err != nil {
			return whereValue{}, err
		}
		if v.kind == whereNull {
			sawNull = true
			continue
		}
		if v.kind == whereInt { // the result of a comparison: no call
			if (v.i != 0) == n.or {
				return whereBool(n.or), nil
			}
			continue
		}
		if err := b.bytes(whereNumberCost * v.textLen()); err != nil {
			return whereValue{}, err
		}
		if v.truth() == n.or {
			return whereBool(n.or), nil
		}
	}
	if sawNull {
		return whereValue{}, nil
	}
	return whereBool(!n.or), nil
}

type whereCmpOp uint8

const (
	whereEQ whereCmpOp = iota
	whereNE
	whereLT
	whereLE
	whereGT
	whereGE
)

type whereCmpNode struct {
	op   whereCmpOp
	l, r whereNode
}

func (n *whereCmpNode) eval(r Row, b *Budget) (whereValue, error) {
	x, y, err := whereEval2(r, b, n.l, n.r)
	if err != nil || x.kind == whereNull || y.kind == whereNull {
		return whereValue{}, err
	}
	var c int
	if x.kind == whereInt && y.kind == whereInt { // the common case, inline
		c = whereCmp3(x.i < y.i, x.i > y.i)
	} else {
		if err := b.compare(x, y); err != nil {
			return whereValue{}, err
		}
		c = whereCompare(x, y)
	}
	switch n.op {
	case whereEQ:
		return whereBool(c == 0), nil
	case whereNE:
		return whereBool(c != 0), nil
	case whereLT:
		return whereBool(c < 0), nil
	case whereLE:
		return whereBool(c <= 0), nil
	case whereGT:
		return whereBool(c > 0), nil
	}
	return whereBool(c >= 0), nil
}

// whereEval2 evaluates the operands of a binary node.
func whereEval2(r Row, b *Budget, l, rt whereNode) (x, y whereValue, err error) {
	if x, err = l.eval(r, b); err != nil {
		return
	}
	y, err = rt.eval(r, b)
	return
}

// whereIs is SQLite's IS / IS NOT: equality where NULL equals NULL.
type whereIs struct {
	l, r whereNode
	not  bool
}

func (n *whereIs) eval(r Row, b *Budget) (whereValue, error) {
	x, y, err := whereEval2(r, b, n.l, n.r)
	if err != nil {
		return whereValue{}, err
	}
	var eq bool
	switch {
	case x.kind == whereNull || y.kind == whereNull:
		eq = x.kind == y.kind
	default:
		if err := b.compare(x, y); err != nil {
			return whereValue{}, err
		}
		eq = whereCompare(x, y) == 0
	}
	return whereBool(eq != n.not), nil
}

type whereArithNode struct {
	op   byte // + - * /
	l, r whereNode
}

func (n *whereArithNode) eval(r Row, b *Budget) (whereValue, error) {
	x, y, err := whereEval2(r, b, n.l, n.r)
	if err != nil || x.kind == whereNull || y.kind == whereNull {
		return whereValue{}, err
	}
	if err := b.bytes(whereNumberCost * (x.textLen() + y.textLen())); err != nil {
		return whereValue{}, err
	}
	return whereArith(n.op, x.numeric(), y.numeric()), nil
}

type whereConcat struct{ l, r whereNode }

func (n *whereConcat) eval(r Row, b *Budget) (whereValue, error) {
	x, y, err := whereEval2(r, b, n.l, n.r)
	if err != nil || x.kind == whereNull || y.kind == whereNull {
		return whereValue{}, err
	}
	xs, ys := x.text(), y.text()
	if err := b.build(len(xs) + len(ys)); err != nil {
		return whereValue{}, err
	}
	return whereTextVal(xs + ys), nil
}

// whereIn is x [NOT] IN (list): true if some element equals x; otherwise
// NULL if x or some element is NULL; otherwise false.
type whereIn struct {
	x    whereNode
	list []whereNode
	// ints is the list as a set when it is all integer literals (a pasted
	// selection of ids): an integer x is then looked up, not compared with
	// each element, so a long list costs a step, not one per element.
	ints map[int64]struct{}
	not  bool
}

func (n *whereIn) eval(r Row, b *Budget) (whereValue, error) {
	if len(n.list) == 0 {
		return whereBool(n.not), nil
	}
	v, err := n.x.eval(r, b)
	if err != nil || v.kind == whereNull {
		return whereValue{}, err
	}
	if n.ints != nil && v.kind == whereInt {
		_, ok := n.ints[v.i]
		return whereBool(ok != n.not), nil
	}
	sawNull := false
	for _, e := range n.list {
		w, err := e.eval(r, b)
		if err != nil {
			return whereValue{}, err
		}
		if w.kind == whereNull {
			sawNull = true
			continue
		}
		if err := b.compare(v, w); err != nil {
			return whereValue{}, err
		}
		if whereCompare(v, w) == 0 {
			return whereBool(!n.not), nil
		}
	}
	if sawNull {
		return whereValue{}, nil
	}
	return whereBool(n.not), nil
}

type whereBetween struct {
	x, lo, hi whereNode
	not       bool
}

// eval is x >= lo AND x <= hi, with the same NULL rules as that expansion.
func (n *whereBetween) eval(r Row, b *Budget) (whereValue, error) {
	v, lo, err := whereEval2(r, b, n.x, n.lo)
	if err != nil {
		return whereValue{}, err
	}
	hi, err := n.hi.eval(r, b)
	if err != nil {
		return whereValue{}, err
	}
	if v.kind == whereNull {
		return whereValue{}, nil
	}
	if lo.kind != whereNull {
		if err := b.compare(v, lo); err != nil {
			return whereValue{}, err
		}
	}
	if hi.kind != whereNull {
		if err := b.compare(v, hi); err != nil {
			return whereValue{}, err
		}
	}
	// Each bound is true, false, or unknown (NULL).
	loOK, loNull := lo.kind != whereNull && whereCompare(v, lo) >= 0, lo.kind == whereNull
	hiOK, hiNull := hi.kind != whereNull && whereCompare(v, hi) <= 0, hi.kind == whereNull
	switch {
	case (!loNull && !loOK) || (!hiNull && !hiOK):
		return whereBool(n.not), nil
	case loNull || hiNull:
		return whereValue{}, nil
	}
	return whereBool(!n.not), nil
}

type whereLike struct {
	x, pat whereNode
	esc    rune // -1: none
	glob   bool
	not    bool
}

// errPattern is the error of a computed pattern over MaxPatternBytes.
func (n *whereLike) errPattern(size int) error {
	op := "LIKE"
	if n.glob {
		op = "GLOB"
	}
	return fmt.Errorf("%w: %s pattern is %d bytes, the limit is %d", ErrBadClause, op, size, MaxPatternBytes)
}

func (n *whereLike) eval(r Row, b *Budget) (whereValue, error) {
	v, p, err := whereEval2(r, b, n.x, n.pat)
	if err != nil || v.kind == whereNull || p.kind == whereNull {
		return whereValue{}, err
	}
	// Literal patterns were checked at compile time; computed ones, such as
	// a column or a concatenation, can only be checked now.
	pat := p.text()
	if len(pat) > MaxPatternBytes {
		return whereValue{}, n.errPattern(len(pat))
	}
	var ok bool
	if n.glob {
		ok, err = whereGlobMatch(pat, v.text(), b)
	} else {
		ok, err = whereLikeMatch(pat, v.text(), n.esc, b)
	}
	if err != nil {
		return whereValue{}, err
	}
	return whereBool(ok != n.not), nil
}

type whereFunc struct {
	name string // upper case, as in whereFuncs
	args []whereNode
}

func (n *whereFunc) eval(r Row, b *Budget) (whereValue, error) {
	if n.name == "COALESCE" || n.name == "IFNULL" {
		// Lazy, like SQLite: later arguments are not evaluated.
		for _, a := range n.args {
			v, err := a.eval(r, b)
			if err != nil || v.kind != whereNull {
				return v, err
			}
		}
		return whereValue{}, nil
	}
	v, err := n.args[0].eval(r, b)
	if err != nil || v.kind == whereNull {
		return whereValue{}, err
	}
	switch n.name {
	case "LOWER", "UPPER":
		s := v.text()
		// Checked whether or not a letter changes: the result is a new
		// value of that size as far as the caller can tell.
		if err := b.build(len(s)); err != nil {
			return whereValue{}, err
		}
		if n.name == "LOWER" {
			return whereTextVal(whereMapASCII(s, 'A', 'Z', 'a'-'A')), nil
		}
		return whereTextVal(whereMapASCII(s, 'a', 'z', 'A'-'a')), nil
	case "LENGTH":
		s := v.text()
		if err := b.bytes(whereRuneCost * len(s)); err != nil {
			return whereValue{}, err
		}
		return whereIntVal(int64(utf8.RuneCountInString(s))), nil
	}
	// ABS
	if err := b.bytes(whereNumberCost * v.textLen()); err != nil {
		return whereValue{}, err
	}
	v = v.numeric()
	switch {
	case v.kind == whereFloat:
		return whereFloatVal(math.Abs(v.f)), nil
	case v.i == math.MinInt64:
		return whereFloatVal(-float64(v.i)), nil
	case v.i < 0:
		return whereIntVal(-v.i), nil
	}
	return v, nil
}

// whereMapASCII shifts bytes in lo..hi by delta: SQLite's lower() and
// upper() only change ASCII letters.
func whereMapASCII(s string, lo, hi byte, delta int) string {
	i := 0
	for i < len(s) && (s[i] < lo || s[i] > hi) {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if lo <= b[i] && b[i] <= hi {
			b[i] = byte(int(b[i]) + delta)
		}
	}
	return string(b)
}
