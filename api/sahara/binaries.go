package sahara

import (
	"encoding/json"
	"errors"
	"github.com/croftfarm/croft/api/ids"
	"net/http"
	"net/url"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service"
)

// Job binaries are templates of their project the farm cannot run (no
// command), of two types of their own (raftstore/DESIGN.md, "Sahara job
// binaries"): a job-binary-internal holds its script as the template's
// Main; a job binary its name, url and description in the Doc. The
// template's name is a drawn one (Sahara names need not be unique, core
// template names are).
const (
	typeInternal = "sahara.job-binary-internal"
	typeBinary   = "sahara.job-binary"
	// Schemes of the urls Croft runs from.
	schemeInternal = "internal-db://"
	schemeFile     = "file://"
)

// binaryDoc is the Doc of both kinds of binary.
type binaryDoc struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	URL         string `json:"url,omitempty"`
}

func docOf(t *raftstore.Template) binaryDoc {
	var d binaryDoc
	_ = json.Unmarshal(t.Spec.Doc, &d) // our own documents; a bad one shows empty
	return d
}

// findTyped returns the template a Sahara id names if it has type typ and
// tenant pid may see it (its own, or public).
func (h *Handler) findTyped(pid, id, typ string) (raftstore.Template, bool) {
	cid, ok := coreID(id)
	if !ok {
		return raftstore.Template{}, false
	}
	t, ok := h.store.State().Template(cid)
	if !ok || t.Spec.Type != typ || t.Project != pid && !t.Spec.Public {
		return raftstore.Template{}, false
	}
	return t, true
}

// eachVisible calls fn with every template of a kind keep takes that
// tenant pid sees (its own, and the public ones), a page of the state at a
// time, until fn returns false: nothing is gathered here.
func (h *Handler) eachVisible(pid string, keep func(typ string) bool, fn func(*raftstore.Template) bool) {
	st, after := h.store.State(), ""
	for {
		page, next, more := st.TemplatesAfter(after, raftstore.ScanLimit)
		for i := range page {
			if t := &page[i]; keep(t.Spec.Type) && (t.Project == pid || t.Spec.Public) && !fn(t) {
				return
			}
		}
		if !more {
			return
		}
		after = next
	}
}

func is(typ string) func(string) bool { return func(t string) bool { return t == typ } }

// internalView renders a job-binary-internal.
func internalView(t *raftstore.Template) obj {
	return obj{"id": ids.Dashed(t.ID), "tenant_id": t.Project, "name": docOf(t).Name, "datasize": len(t.Spec.Main),
		"is_public": t.Spec.Public, "is_protected": t.Spec.Protected,
		"created_at": timeOf(t.Created, templateTime), "updated_at": updatedAt(t)}
}

// binaryView renders a job binary (mains and libs of a job show these).
func binaryView(t *raftstore.Template) obj {
	d := docOf(t)
	return obj{"id": ids.Dashed(t.ID), "tenant_id": t.Project, "name": d.Name, "description": d.Description, "url": d.URL,
		"is_public": t.Spec.Public, "is_protected": t.Spec.Protected,
		"created_at": timeOf(t.Created, templateTime), "updated_at": updatedAt(t)}
}

func updatedAt(t *raftstore.Template) any {
	if t.Updated == t.Created {
		return nil
	}
	return timeOf(t.Updated, templateTime)
}

var binarySorts = map[string]string{"id": "id", "name": "name", "created_at": "created_at", "updated_at": "updated_at"}

// createInternal answers PUT /job-binary-internals/<name>: the body is
// the raw script (python-saharaclient sends no Content-Type).
func (h *Handler) createInternal(c *gin.Context) {
	pid, ok := project(c, true)
	if !ok {
		return
	}
	name := c.Param("name")
	body, err := apierr.ReadBody(c, MaxBinaryBytes)
	if err == nil {
		err = checkName("name", name)
	}
	if err == nil && (!utf8.Valid(body) || strings.IndexByte(string(body), 0) >= 0) {
		err = validation("the script must be UTF-8 text without NUL bytes")
	}
	if err != nil {
		Abort(c, err)
		return
	}
	doc, _ := json.Marshal(binaryDoc{Name: name})
	drawn, err := service.NewID() // Sahara's names need not be unique: the template's is drawn
	if err != nil {
		Abort(c, err)
		return
	}
	t, err := h.ops.CreateTemplate(c, pid, raftstore.TemplateSpec{Name: "sahara-binary-internal-" + drawn, Type: typeInternal, Main: string(body), Doc: doc})
	if err != nil {
		Abort(c, err)
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"job_binary_internal": internalView(&t)})
}

func (h *Handler) listInternals(c *gin.Context) {
	h.listOf(c, typeInternal, "binaries", internalView)
}

func (h *Handler) listBinaries(c *gin.Context) {
	h.listOf(c, typeBinary, "binaries", binaryView)
}

func (h *Handler) listOf(c *gin.Context, typ, key string, view func(*raftstore.Template) obj) {
	pid, ok := project(c, false)
	if !ok {
		return
	}
	q, err := parseList(c, binarySorts)
	if err != nil {
		Abort(c, err)
		return
	}
	l := lister{q: q}
	h.eachVisible(pid, is(typ), func(t *raftstore.Template) bool { return l.add(view(t)) })
	l.answer(c, key)
}

func (h *Handler) showInternal(c *gin.Context) {
	h.showOf(c, typeInternal, "job_binary_internal", internalView)
}

func (h *Handler) showBinary(c *gin.Context) {
	h.showOf(c, typeBinary, "job_binary", binaryView)
}

func (h *Handler) showOf(c *gin.Context, typ, key string, view func(*raftstore.Template) obj) {
	pid, ok := project(c, false)
	if !ok {
		return
	}
	id := param(c, paramOf(typ))
	t, ok := h.findTyped(pid, id, typ)
	if !ok {
		Abort(c, notFound(id))
		return
	}
	c.JSON(http.StatusOK, gin.H{key: view(&t)})
}

func paramOf(typ string) string {
	if typ == typeInternal {
		return "name"
	}
	return "id"
}

// internalData answers a job-binary-internal's script.
func (h *Handler) internalData(c *gin.Context) {
	pid, ok := project(c, false)
	if !ok {
		return
	}
	t, ok := h.findTyped(pid, c.Param("name"), typeInternal)
	if !ok {
		Abort(c, notFound(c.Param("name")))
		return
	}
	c.Data(http.StatusOK, "application/octet-stream", []byte(t.Spec.Main))
}

// createBinary answers POST /job-binaries {"name", "url", "description"}.
// The url is internal-db://<id of a job-binary-internal of the tenant>
// or file://<absolute path on the agents>.
func (h *Handler) createBinary(c *gin.Context) {
	pid, ok := project(c, true)
	if !ok {
		return
	}
	m, err := readJSON(c)
	if err == nil {
		err = onlyKeys(m, "name", "url", "description", "extra", "is_public", "is_protected")
	}
	var d binaryDoc
	var pub, prot *bool
	if err == nil {
		d.Name, err = optString(m, "name", 4*MaxNameChars)
	}
	if err == nil {
		err = checkName("name", d.Name)
	}
	if err == nil {
		d.Description, err = optString(m, "description", MaxDescriptionBytes)
	}
	if err == nil {
		d.URL, err = optString(m, "url", MaxURLBytes)
	}
	if err == nil {
		err = h.checkURL(pid, d.URL)
	}
	if err == nil {
		pub, err = optBool(m, "is_public")
	}
	if err == nil {
		prot, err = optBool(m, "is_protected")
	}
	if err != nil {
		Abort(c, err)
		return
	}
	doc, _ := json.Marshal(d)
	drawn, err := service.NewID()
	if err != nil {
		Abort(c, err)
		return
	}
	t, err := h.ops.CreateTemplate(c, pid, raftstore.TemplateSpec{Name: "sahara-binary-" + drawn, Type: typeBinary, Doc: doc,
		Public: pub != nil && *pub, Protected: prot != nil && *prot})
	if err != nil {
		Abort(c, err)
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"job_binary": binaryView(&t)})
}

// checkURL checks a job binary's url: a job-binary-internal the tenant
// sees, or an absolute clean path on the agents.
func (h *Handler) checkURL(pid, u string) error {
	switch {
	case strings.HasPrefix(u, schemeInternal):
		id := strings.TrimPrefix(u, schemeInternal)
		if _, ok := h.findTyped(pid, id, typeInternal); !ok {
			return invalidRef("JobBinaryInternal with id '%s' doesn't exist", apierr.Truncate(id, 64))
		}
		return nil
	case strings.HasPrefix(u, schemeFile):
		p := strings.TrimPrefix(u, schemeFile)
		if un, err := url.PathUnescape(p); err == nil {
			p = un
		}
		if !path.IsAbs(p) || path.Clean(p) != p || strings.ContainsAny(p, "\x00\r\n") {
			return invalidData("file:// url: an absolute, clean path on the agents expected")
		}
		return nil
	}
	return invalidData("url: Croft runs binaries from internal-db://<id> or file://<path> (swift, s3, manila and hdfs are not supported)")
}

// filePath is the agents' path of a file:// url.
func filePath(u string) string {
	p := strings.TrimPrefix(u, schemeFile)
	if un, err := url.PathUnescape(p); err == nil {
		return un
	}
	return p
}

func (h *Handler) deleteInternal(c *gin.Context) {
	h.deleteOf(c, typeInternal, "name")
}

func (h *Handler) deleteBinary(c *gin.Context) {
	h.deleteOf(c, typeBinary, "id")
}

// deleteOf deletes a binary of the tenant: refused (DELETION_FAILED)
// while a job binary or a job of the tenant references it.
func (h *Handler) deleteOf(c *gin.Context, typ, p string) {
	pid, ok := project(c, true)
	if !ok {
		return
	}
	id := param(c, p)
	t, ok := h.findTyped(pid, id, typ)
	if !ok {
		Abort(c, notFound(id))
		return
	}
	if t.Project != pid {
		Abort(c, saharaErr(http.StatusBadRequest, "DELETION_FAILED", "%s belongs to another tenant", ids.Dashed(t.ID)))
		return
	}
	if h.referenced(pid, t.ID) {
		Abort(c, saharaErr(http.StatusBadRequest, "DELETION_FAILED", "Job binary %s is referenced", ids.Dashed(t.ID)))
		return
	}
	if err := h.ops.DeleteTemplate(c, t.ID); err != nil {
		if errors.Is(err, raftstore.ErrProtected) {
			err = saharaErr(http.StatusBadRequest, "DELETION_FAILED", "%s is protected", ids.Dashed(t.ID))
		}
		Abort(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// referenced reports whether a job binary's url or a job's mains or libs
// name binary id (core id) among the tenant's templates.
func (h *Handler) referenced(pid, id string) bool {
	found := false
	h.eachVisible(pid, func(string) bool { return true }, func(t *raftstore.Template) bool {
		if t.Project != pid {
			return true
		}
		switch {
		case t.Spec.Type == typeBinary:
			if u := docOf(t).URL; strings.HasPrefix(u, schemeInternal) {
				if cid, ok := coreID(strings.TrimPrefix(u, schemeInternal)); ok && cid == id {
					found = true
				}
			}
		case jobTypes[t.Spec.Type]:
			d := jobDocOf(t)
			for _, r := range append(append([]string{}, d.Mains...), d.Libs...) {
				found = found || r == id
			}
		}
		return !found
	})
	return found
}
