package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// maxFaultsBody bounds the body of PUT /faults.
const maxFaultsBody = 1 << 20

// controlHandler returns the HTTP API of the control socket. shutdown is called, once the
// response is on its way, when a client asks the store to stop.
func controlHandler(b *behaviour, shutdown func()) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /faults", func(w http.ResponseWriter, r *http.Request) {
		faults, err := decodeFaults(http.MaxBytesReader(w, r.Body, maxFaultsBody))
		if err == nil {
			err = b.setFaults(faults)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, b.faults())
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, b.snapshot())
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		b.reset()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /shutdown", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		shutdown()
	})
	return mux
}

// decodeFaults reads a JSON list of faults; unknown fields are errors, so that a misspelt
// field does not silently leave a fault without its errno or delay.
func decodeFaults(r io.Reader) ([]fault, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var faults []fault
	if err := dec.Decode(&faults); err != nil {
		return nil, fmt.Errorf("decoding faults: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("decoding faults: data after the list")
	}
	return faults, nil
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		// The status is sent already; the client sees a truncated body.
		return
	}
}
