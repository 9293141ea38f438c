// Package native serves Croft's own REST API, under /croft/v1.
package native
