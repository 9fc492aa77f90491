// Package jsonapi holds the conventions that spotflow's JSON APIs over HTTP
// share (the desk API, the operator API): how an answer is written, and the
// body of every error, with a stable code for programs, a message for people
// and, where one is at fault, the field. It imports only the standard
// library.
package jsonapi

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Error is the body of an error answer, under the key "error".
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// Write answers status with v as JSON.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// Refusals is implemented by a ResponseWriter that wants to know the code of
// every error answered through it, such as one that counts refusals.
type Refusals interface {
	Refused(code string)
}

// WriteError answers status with e, and tells w's Refusals, if it has them,
// e's code.
func WriteError(w http.ResponseWriter, status int, e Error) {
	if r, ok := w.(Refusals); ok {
		r.Refused(e.Code)
	}
	Write(w, status, map[string]Error{"error": e})
}

// CountRefusals wraps h so that refused is told the code of every error it
// answers. A nil refused returns h.
func CountRefusals(refused func(code string), h http.HandlerFunc) http.HandlerFunc {
	if refused == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		h(&refusalWriter{ResponseWriter: w, refused: refused}, r)
	}
}

type refusalWriter struct {
	http.ResponseWriter
	refused func(code string)
}

func (w *refusalWriter) Refused(code string) { w.refused(code) }

// Unwrap lets http.ResponseController reach the connection.
func (w *refusalWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// WriteTooMany answers 429 Too Many Requests with a Retry-After of
// retryAfter seconds (at least one) and e.
func WriteTooMany(w http.ResponseWriter, retryAfter int, e Error) {
	w.Header().Set("Retry-After", strconv.Itoa(max(retryAfter, 1)))
	WriteError(w, http.StatusTooManyRequests, e)
}
