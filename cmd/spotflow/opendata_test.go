package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestRun_PublishesOpenDataWithItsDescription reads the open data as the
// public would from `spotflow run`: the CSV with its header, and the
// dataset's description naming its licence.
func TestRun_PublishesOpenDataWithItsDescription(t *testing.T) {
	t.Parallel()
	m, _ := startMain(t, "*:latency=1ms")
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Get("http://" + m.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	resp, body := get("/open-data/requests-monthly.csv")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") ||
		!strings.HasPrefix(body, "month,municipality,service_code,submitted,completed,") {
		t.Errorf("the CSV: %d %s\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	resp, body = get("/open-data/dataset.jsonld")
	var dataset map[string]any
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &dataset) != nil ||
		!strings.Contains(body, "creativecommons.org/licenses/by/4.0") || !strings.Contains(body, "dcat:Dataset") {
		t.Errorf("the description: %d\n%s", resp.StatusCode, body)
	}
}
