package client

// The Coalition JSON shapes (api-dialects.md §2.5). The server renders
// these types and the client decodes them, so the field names live here once.

// Job is a Coalition job as returned by GET /api/jobs and friends.
type Job struct {
	ID              int64   `json:"id"`
	Parent          int64   `json:"parent"`
	Title           string  `json:"title"`
	Command         string  `json:"command"`
	Dir             string  `json:"dir"`
	Environment     string  `json:"environment"`
	State           string  `json:"state"`
	Paused          int     `json:"paused"`
	Worker          string  `json:"worker"`
	StartTime       int64   `json:"start_time"`
	Duration        int64   `json:"duration"`
	PingTime        int64   `json:"ping_time"`
	RunDone         int     `json:"run_done"`
	Retry           int     `json:"retry"`
	Timeout         int64   `json:"timeout"`
	Priority        int     `json:"priority"`
	Affinity        string  `json:"affinity"`
	AffinityBits    uint64  `json:"affinity_bits"`
	User            string  `json:"user"`
	Finished        int     `json:"finished"`
	Errors          int     `json:"errors"`
	Working         int     `json:"working"`
	Total           int     `json:"total"`
	TotalFinished   int     `json:"total_finished"`
	TotalErrors     int     `json:"total_errors"`
	TotalWorking    int     `json:"total_working"`
	URL             string  `json:"url"`
	Progress        float64 `json:"progress"`
	ProgressPattern string  `json:"progress_pattern"`
	HAffinity       uint64  `json:"h_affinity"`
	HPriority       uint64  `json:"h_priority"`
	HPaused         int     `json:"h_paused"`
	HDepth          int     `json:"h_depth"`
	// Project is Croft's: the job's project.
	Project string `json:"project"`
	// Dependencies is set only by GET /api/jobs/{id}.
	Dependencies *[]int64 `json:"dependencies,omitempty"`
}

// Worker is a Coalition worker as returned by GET /api/workers.
type Worker struct {
	Name         string  `json:"name"`
	StartTime    float64 `json:"start_time"`
	IP           string  `json:"ip"`
	Affinity     string  `json:"affinity"`
	State        string  `json:"state"`
	Finished     int     `json:"finished"`
	Error        int     `json:"error"`
	LastJob      int64   `json:"last_job"`
	CurrentEvent int64   `json:"current_event"`
	CPU          string  `json:"cpu"`
	FreeMemory   int64   `json:"free_memory"`
	TotalMemory  int64   `json:"total_memory"`
	Active       int     `json:"active"`
	PingTime     int64   `json:"ping_time"`
}

// Event is a Coalition event: one attempt of a job on a worker.
type Event struct {
	ID       int64  `json:"id"`
	Worker   string `json:"worker"`
	JobID    int64  `json:"job_id"`
	JobTitle string `json:"job_title"`
	State    string `json:"state"`
	Start    int64  `json:"start"`
	Duration int64  `json:"duration"`
}

// NewJob is the body of PUT /api/jobs. Nil fields take Coalition's defaults.
type NewJob struct {
	Parent          *int64  `json:"parent,omitempty"`
	Title           string  `json:"title,omitempty"`
	Command         string  `json:"command,omitempty"`
	Dir             string  `json:"dir,omitempty"`
	Environment     string  `json:"environment,omitempty"`
	State           string  `json:"state,omitempty"`
	Paused          *bool   `json:"paused,omitempty"`
	Timeout         *int64  `json:"timeout,omitempty"`
	Priority        *int    `json:"priority,omitempty"`
	Retry           *int    `json:"retry,omitempty"`
	Affinity        string  `json:"affinity,omitempty"`
	User            string  `json:"user,omitempty"`
	URL             string  `json:"url,omitempty"`
	ProgressPattern string  `json:"progress_pattern,omitempty"`
	Dependencies    []int64 `json:"dependencies,omitempty"`
	// Project is Croft's: the job's project (default: the token's only
	// project, else "default").
	Project string `json:"project,omitempty"`
}
