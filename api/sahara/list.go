package sahara

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/raftstore"
)

// A list: every visible object rendered, filtered by the query's column
// filters, sorted by sort_by (id by default; ties by id), then paged by
// limit and marker as Sahara's _get_prev_and_next_objects does.

// obj is a rendered Sahara object.
type obj = map[string]any

// listQuery is a list's query: limit (0: all), marker, sort field and
// direction, and the column filters.
type listQuery struct {
	limit   int
	marker  string
	hasMark bool
	sortBy  string
	desc    bool
	filters map[string]string
}

// parseList reads a list's query; sortable maps a sort_by field to the
// column of the rendered object it sorts by.
func parseList(c *gin.Context, sortable map[string]string) (listQuery, error) {
	q := listQuery{sortBy: "id", filters: map[string]string{}}
	values := c.Request.URL.Query()
	if len(values) > MaxFilters+3 {
		return q, invalidData("too many query parameters (at most %d filters)", MaxFilters)
	}
	for k, vs := range values {
		v := vs[len(vs)-1]
		if len(v) > MaxQueryValueBytes || len(k) > MaxQueryValueBytes || strings.IndexByte(v+k, 0) >= 0 {
			return q, invalidData("query parameter %q: too long, or holds a NUL byte", apierr.Truncate(k, 64))
		}
		switch k {
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return q, invalidData("'limit' must be positive integer")
			}
			q.limit = min(n, MaxLimit)
		case "marker":
			q.marker, q.hasMark = v, true
		case "sort_by":
			f := strings.TrimPrefix(v, "-")
			col, ok := sortable[f]
			if !ok {
				return q, invalidData("Unknown field for sorting: %s", apierr.Truncate(f, 64))
			}
			q.sortBy, q.desc = col, strings.HasPrefix(v, "-")
		default:
			q.filters[k] = v
		}
	}
	return q, nil
}

// render is a column's value as a filter compares it and a sort orders it.
func render(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	default:
		return fmt.Sprint(x)
	}
}

// column is an object's value of column col; "a.b" reads a nested map.
func column(o obj, col string) any {
	if a, b, ok := strings.Cut(col, "."); ok {
		m, _ := o[a].(map[string]any)
		return m[b]
	}
	return o[col]
}

// keeps reports whether o passes the column filters: each an exact match
// (booleans case-insensitively, as Python's "True" reaches SQL).
func (q *listQuery) keeps(o obj) bool {
	for k, want := range q.filters {
		v, ok := o[k]
		if !ok {
			return false
		}
		got := render(v)
		if _, isBool := v.(bool); isBool {
			if !strings.EqualFold(got, want) {
				return false
			}
		} else if got != want {
			return false
		}
	}
	return true
}

// MaxListed bounds the objects one list request gathers (those its
// column filters keep) to sort and page them: memory of a request stays
// bounded whatever the farm's size. Past it: 413, narrow the list.
const MaxListed = 10_000

// lister gathers the objects of a list that pass its filters, at most
// MaxListed (then err is set and add reports false: stop).
type lister struct {
	q   listQuery
	all []obj
	err error
}

func (l *lister) add(o obj) bool {
	if !l.q.keeps(o) {
		return true
	}
	if len(l.all) == MaxListed {
		l.err = fmt.Errorf("%w: more than %d objects to list: narrow the list with column filters", raftstore.ErrTooLarge, MaxListed)
		return false
	}
	l.all = append(l.all, o)
	return true
}

// answer answers the list under key: sorted, paged, with its markers.
func (l *lister) answer(c *gin.Context, key string) {
	if l.err != nil {
		Abort(c, l.err)
		return
	}
	out, markers, err := l.q.page(l.all)
	if err != nil {
		Abort(c, err)
		return
	}
	body := gin.H{key: out}
	if markers != nil {
		body["markers"] = markers
	}
	c.JSON(http.StatusOK, body)
}

// page sorts and pages objects (filtered as they were gathered): the page
// and the markers ("markers" key present only as Sahara includes it). An
// unknown marker is 404.
func (q *listQuery) page(objs []obj) ([]obj, obj, error) {
	if objs == nil {
		objs = []obj{} // an empty list is [], not null
	}
	sort.SliceStable(objs, func(i, j int) bool {
		a, b := render(column(objs[i], q.sortBy)), render(column(objs[j], q.sortBy))
		if a == b {
			return render(objs[i]["id"]) < render(objs[j]["id"])
		}
		return a < b != q.desc
	})
	limit := q.limit
	if limit == 0 {
		limit = len(objs)
	}
	var prev, next any
	start := 0
	if q.hasMark {
		p := -1
		for i, o := range objs {
			if o["id"] == q.marker {
				p = i
				break
			}
		}
		if p < 0 {
			return nil, nil, notFound(q.marker)
		}
		start = p + 1
		if p+limit < len(objs) {
			next = objs[p+limit]["id"]
		}
		if p-limit >= 0 {
			prev = objs[p-limit]["id"]
		}
	} else if limit < len(objs) {
		next = objs[limit-1]["id"]
	}
	end := min(start+limit, len(objs))
	out := objs[start:end]
	if prev == nil && next == nil && !q.hasMark {
		return out, nil, nil
	}
	return out, obj{"prev": prev, "next": next}, nil
}
