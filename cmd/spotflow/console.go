package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/events/natsbus"
	"github.com/spotflow/spotflow/workers/postgres"
)

// consolePeople is the store as the console's pages of people and
// credentials use it, with agencies' credentials made here.
type consolePeople struct {
	*postgres.Store
}

// IssueAgencyCredential makes agency an nkey (its seed is the secret) or,
// with token, a token for status reports over HTTPS, on behalf of by.
func (c consolePeople) IssueAgencyCredential(ctx context.Context, agency string, token bool, by events.By) (string, string, error) {
	if token {
		return c.AddAgencyToken(ctx, agency, by.Actor)
	}
	seed, err := natsbus.NewSeed()
	if err != nil {
		return "", "", err
	}
	pub, err := seed.PublicKey()
	if err != nil {
		return "", "", err
	}
	if err := c.AddAgencyCredential(ctx, agency, pub, by.Actor); err != nil {
		return "", "", err
	}
	return string(seed), pub, nil
}

// auditExportHeader is the first line of an export of the audit log: what
// it is, the range, the chain's last link when it was made (to note down
// as an anchor), and how each link's hash is computed.
type auditExportHeader struct {
	Format   string    `json:"format"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Links    int       `json:"links"`
	HeadSeq  int64     `json:"head_seq"`
	HeadHash string    `json:"head_hash"`
	Hash     string    `json:"hash"`
}

// auditExportLimit caps the links of one export.
const auditExportLimit = 1_000_000

// exportAudit writes the links of the audit log's chain whose entries are
// from from to to as JSON Lines: a header, then a link per line.
func exportAudit(ctx context.Context, store *postgres.Store, w io.Writer, from, to time.Time) error {
	links, err := store.AuditLinks(ctx, from, to, auditExportLimit)
	if err != nil {
		return err
	}
	st, err := store.VerifyAudit(ctx)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(auditExportHeader{
		Format: "spotflow-audit/1", From: from, To: to, Links: len(links), HeadSeq: st.HeadSeq, HeadHash: st.HeadHash,
		Hash: `hash = SHA-256(prev_hash || JSON array [seq, kind, id, at (UTC, "2006-01-02T15:04:05.000000Z"), fields...]); verify with: spotflow audit verify --file FILE`,
	}); err != nil {
		return err
	}
	for _, l := range links {
		if err := enc.Encode(l); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// readAuditExport reads an export written by exportAudit.
func readAuditExport(r io.Reader) (auditExportHeader, []postgres.AuditLink, error) {
	dec := json.NewDecoder(r)
	var h auditExportHeader
	if err := dec.Decode(&h); err != nil || h.Format != "spotflow-audit/1" {
		return h, nil, fmt.Errorf("read audit export: not a spotflow audit export (%v)", err)
	}
	var links []postgres.AuditLink
	for dec.More() {
		var l postgres.AuditLink
		if err := dec.Decode(&l); err != nil {
			return h, nil, fmt.Errorf("read audit export: link %d: %w", len(links)+1, err)
		}
		links = append(links, l)
	}
	return h, links, nil
}
