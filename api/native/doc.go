// Package native serves Croft's own REST API (/croft/v1/...) over the neutral farm model.
package native
