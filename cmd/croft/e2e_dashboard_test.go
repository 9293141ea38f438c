package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/croftfarm/croft/api/client"
)

// chromium finds a Chromium to drive: $CROFT_CHROMIUM, else chromium on
// the PATH (Debian's package), else "".
func chromium() string {
	if p := os.Getenv("CROFT_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// artifacts is where the browser tests leave their screenshots:
// $CROFT_ARTIFACTS, else the test's temporary directory.
func artifacts(t *testing.T) string {
	dir := os.Getenv("CROFT_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDashboardInABrowser drives the dashboard of `croft dev` in headless
// Chromium as a person would: signs in with the admin token, submits a job
// from the page and sees it finish, reads its log, pauses a job, sees why
// another waits, and sees a worker's CPU; it saves screenshots.
func TestDashboardInABrowser(t *testing.T) {
	chrome := chromium()
	if chrome == "" {
		t.Skip("SKIP: chromium is not installed (apt-get install chromium, or set CROFT_CHROMIUM): the dashboard's browser test needs it")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	dev := start(t, "dev", "--data-dir", data, "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0")
	token := adminToken(t, data)
	c := client.NewWith(client.Options{Token: token}, dev.url)
	shots := artifacts(t)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.Headless,
		chromedp.WindowSize(1500, 950), chromedp.UserDataDir(filepath.Join(dir, "chromium")), chromedp.Flag("disable-gpu", true))
	alloc, stopBrowser := chromedp.NewExecAllocator(context.Background(), opts...)
	defer stopBrowser() // ends the browser process
	browser, closeTab := chromedp.NewContext(alloc)
	defer closeTab()
	if err := chromedp.Do(browser); err != nil { // starts the browser, with no deadline of its own
		t.Fatalf("start %s: %v", chrome, err)
	}
	step := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(browser, 60*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			shot(t, browser, filepath.Join(shots, "failed.png"))
			t.Fatalf("%s: %v (screenshot in %s)", what, err, shots)
		}
	}
	// waitFor polls a JavaScript predicate in the page.
	waitFor := func(expr string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(50*time.Second))
	}

	step("sign in",
		chromedp.Navigate(dev.url+"/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Click(chromedp.ID("login-button")),
		chromedp.WaitVisible(chromedp.ID("submit-form")),
		waitFor(`document.getElementById('who').textContent.includes('signed in')`))

	step("submit a job from the page",
		chromedp.SendKeys(chromedp.CSS(`#submit-form input[name=title]`), "from the page"),
		chromedp.SendKeys(chromedp.CSS(`#submit-form input[name=command]`), "echo hello-from-the-dashboard; echo progress 50%"),
		chromedp.Click(chromedp.CSS(`#submit-form button[type=submit]`)),
		waitFor(`document.getElementById('status').textContent.startsWith('submitted job')`))
	status, err := chromedp.Run(browser, chromedp.TextContent(chromedp.ID("status")))
	if err != nil {
		t.Fatal(err)
	}
	id, err := strconv.ParseInt(strings.TrimPrefix(strings.TrimSpace(status), "submitted job "), 10, 64)
	if err != nil {
		t.Fatalf("status %q: %v", status, err)
	}
	if j, err := c.Job(context.Background(), id); err != nil || j.Title != "from the page" {
		t.Fatalf("the job the page submitted: %+v, %v", j, err)
	}

	// A job no worker can take (its affinity is nowhere), to pause and to ask about.
	stuck, err := c.CreateJob(context.Background(), client.NewJob{Title: "stuck", Command: "true", Affinity: "nowhere"})
	if err != nil {
		t.Fatal(err)
	}
	row := func(id int64) string { return fmt.Sprintf(`.vrow[data-id="%d"]`, id) }
	step("the job finishes in the page",
		waitFor(fmt.Sprintf(`!!document.querySelector('%s .s-finished')`, row(id))),
		waitFor(fmt.Sprintf(`!!document.querySelector('%s')`, row(stuck))))
	shot(t, browser, filepath.Join(shots, "dashboard-jobs.png"))

	step("pause a job from the page",
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector('%s button[data-act=pause]').click()`, row(stuck))),
		waitFor(fmt.Sprintf(`!!document.querySelector('%s .s-paused')`, row(stuck))))
	if j, err := c.Job(context.Background(), stuck); err != nil || j.Paused != 1 {
		t.Fatalf("the job paused from the page: %+v, %v", j, err)
	}

	step("open the finished job and read its log",
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector('%s').click()`, row(id))),
		chromedp.WaitVisible(chromedp.ID("log")),
		waitFor(`document.getElementById('log').textContent.includes('hello-from-the-dashboard')`),
		waitFor(`document.querySelectorAll('table .s-finished').length > 0`)) // its run
	shot(t, browser, filepath.Join(shots, "dashboard-job-log.png"))

	step("see why the stuck job waits",
		chromedp.Navigate(fmt.Sprintf("%s/#/job/%d", dev.url, stuck)),
		waitFor(`(document.getElementById('why') || {textContent: ''}).textContent.includes('paused')`),
		waitFor(`document.getElementById('why').textContent.includes('affinity nowhere')`))
	shot(t, browser, filepath.Join(shots, "dashboard-why.png"))

	step("filter by state",
		chromedp.Navigate(dev.url+"/#/jobs?state=paused"),
		waitFor(fmt.Sprintf(`!!document.querySelector('%s .s-paused')`, row(stuck))),
		waitFor(fmt.Sprintf(`!document.querySelector('%s')`, row(id))))

	// A big group: the page holds only the rows in view, and reaches the last.
	const many = 5000
	batch := []map[string]any{{"title": "many", "paused": true}}
	for i := 0; i < many; i++ {
		batch = append(batch, map[string]any{"parent_ref": 1, "title": fmt.Sprint("frame ", i), "command": "true"})
	}
	var made struct{ IDs []int64 }
	if err := c.Do(context.Background(), "POST", "/croft/v1/jobs", map[string]any{"jobs": batch}, &made); err != nil || len(made.IDs) != many+1 {
		t.Fatalf("create %d jobs: %v", many, err)
	}
	step("a group of 5000 jobs, virtualised",
		chromedp.Navigate(fmt.Sprintf("%s/#/jobs?parent=%d", dev.url, made.IDs[0])),
		waitFor(fmt.Sprintf(`!!document.querySelector('%s')`, row(made.IDs[1]))),
		waitFor(`document.querySelector('.crumbs').textContent === 'root / many'`),
		waitFor(`document.querySelectorAll('.vrow').length < 100`),
		chromedp.Evaluate[chromedp.Void](`(() => { const p = document.querySelector('.vport'); p.scrollTop = p.scrollHeight; })()`),
		waitFor(fmt.Sprintf(`!!document.querySelector('%s')`, row(made.IDs[many]))),
		waitFor(`document.querySelectorAll('.vrow').length < 100`))
	shot(t, browser, filepath.Join(shots, "dashboard-many.png"))

	// The other dialects' objects: a session, a template and its execution.
	var sess, tmpl, exe struct{ ID string }
	ctx := context.Background()
	if err := c.Do(ctx, "POST", "/croft/v1/sessions", map[string]any{"kind": "group", "name": "nightly"}, &sess); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, "POST", "/croft/v1/templates", map[string]any{"name": "hello", "type": "Shell", "command": "echo {main}", "main": "hi"}, &tmpl); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, "POST", "/croft/v1/templates/"+tmpl.ID+"/execute", map[string]any{}, &exe); err != nil {
		t.Fatal(err)
	}
	step("sessions, templates, executions",
		chromedp.Navigate(dev.url+"/#/sessions"),
		waitFor(`[...document.querySelectorAll('.vrow')].some((r) => r.textContent.includes('nightly'))`),
		chromedp.Navigate(dev.url+"/#/templates"),
		waitFor(`[...document.querySelectorAll('.vrow')].some((r) => r.textContent.includes('echo {main}'))`),
		chromedp.Navigate(dev.url+"/#/executions"),
		waitFor(fmt.Sprintf(`[...document.querySelectorAll('.vrow')].some((r) => r.textContent.includes('%s') && !!r.querySelector('.s-finished'))`, exe.ID)))

	step("see a worker's CPU",
		chromedp.Navigate(dev.url+"/#/workers"),
		waitFor(`[...document.querySelectorAll('#workers .cpu-text')].some((e) => /\d+% of \d+/.test(e.textContent))`))
	shot(t, browser, filepath.Join(shots, "dashboard-workers.png"))
	step("drain a worker from the page",
		chromedp.Click(chromedp.CSS(`#workers button[data-act="drain"]`)),
		waitFor(`[...document.querySelectorAll('#workers td')].some((e) => e.textContent === 'disabled')`))
	ws, err := c.Workers(ctx)
	if err != nil || len(ws) == 0 || ws[0].Active != 0 {
		t.Fatalf("after the drain button: workers %+v (%v)", ws, err)
	}
	if err := c.SetWorkersActive(ctx, true, ws[0].Name); err != nil {
		t.Fatal(err)
	}

	step("see the cluster",
		chromedp.Navigate(dev.url+"/#/cluster"),
		waitFor(`(document.getElementById('cluster') || {textContent: ''}).textContent.includes('healthy')`))
	t.Logf("screenshots in %s", shots)
}

// shot saves a PNG of the page's viewport.
func shot(t *testing.T, browser context.Context, file string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(browser, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Errorf("screenshot %s: %v", file, err)
		return
	}
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Error(err)
	}
}
