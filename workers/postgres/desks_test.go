package postgres_test

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/spotflow/spotflow/events"
	"github.com/spotflow/spotflow/workers/postgres/pgtest"
)

func TestDesks_TokenIdentifiesItsDesk(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)

	desk, token, err := s.CreateDesk(ctx, "lisboa", "Loja do Cidadão Saldanha")
	if err != nil {
		t.Fatalf("CreateDesk: %v", err)
	}
	if desk.Municipality != "lisboa" || desk.Name != "Loja do Cidadão Saldanha" {
		t.Errorf("CreateDesk returned %+v, want the municipality and name given", desk)
	}
	if !events.ValidToken(desk.ID) {
		t.Errorf("desk ID %q cannot stand as a subject token", desk.ID)
	}
	if len(token) < 32 {
		t.Errorf("token %q is too short to be a secret", token)
	}
	other, otherToken, err := s.CreateDesk(ctx, "lisboa", "Junta de Freguesia de Arroios")
	if err != nil {
		t.Fatalf("CreateDesk: %v", err)
	}
	if other.ID == desk.ID || otherToken == token {
		t.Fatalf("two desks share an ID or a token: %q/%q", other.ID, desk.ID)
	}

	for _, tt := range []struct {
		token string
		want  events.Desk
	}{{token, desk}, {otherToken, other}} {
		got, err := s.DeskByToken(ctx, tt.token)
		if err != nil {
			t.Fatalf("DeskByToken: %v", err)
		}
		if got != tt.want {
			t.Errorf("DeskByToken = %+v, want %+v", got, tt.want)
		}
	}
}

func TestDesks_UnknownTokenIsUnauthenticated(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	_, token, err := s.CreateDesk(ctx, "porto", "Loja do Cidadão Porto")
	if err != nil {
		t.Fatal(err)
	}
	flipped := []byte(token)
	flipped[len(flipped)-1] ^= 1
	for name, tok := range map[string]string{
		"an empty token":              "",
		"a made-up token":             "sfd_not-a-real-token",
		"a token one bit off":         string(flipped),
		"a token with a trailing gap": token + " ",
		"the token's prefix":          token[:len(token)-1],
	} {
		d, err := s.DeskByToken(ctx, tok)
		if !errors.Is(err, events.ErrUnauthenticated) {
			t.Errorf("DeskByToken(%s) = %+v, %v; want events.ErrUnauthenticated", name, d, err)
		}
	}
}

func TestDesks_RefusesBadMunicipalityOrName(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	tests := []struct{ municipality, name string }{
		{"", "Desk"},
		{"Lisboa", "Desk"},
		{"são-brás", "Desk"},
		{"lisboa.norte", "Desk"},
		{"lisboa>", "Desk"},
		{"-lisboa", "Desk"},
		{"lisboa", ""},
	}
	for _, tt := range tests {
		d, token, err := s.CreateDesk(ctx, tt.municipality, tt.name)
		if err == nil {
			t.Errorf("CreateDesk(%q, %q) = %+v, %q; want an error", tt.municipality, tt.name, d, token)
		}
		if token != "" {
			t.Errorf("CreateDesk(%q, %q) handed out token %q with its error", tt.municipality, tt.name, token)
		}
	}
	var n int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM desks`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("refused desks left %d rows behind", n)
	}
}

func TestDesks_TokenIsNotStoredInClear(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	desk, token, err := s.CreateDesk(ctx, "braga", "Espaço Cidadão Braga")
	if err != nil {
		t.Fatal(err)
	}
	// Every column of the desk's row, each as text; bytea shows as hex.
	rows, err := s.Pool().Query(ctx, `
		SELECT key, value FROM desks d, jsonb_each_text(to_jsonb(d)) WHERE d.id = $1`, desk.ID)
	if err != nil {
		t.Fatal(err)
	}
	var column, value string
	seen := 0
	secret := strings.TrimPrefix(token, "sfd_")
	_, err = pgx.ForEachRow(rows, []any{&column, &value}, func() error {
		seen++
		for _, form := range []string{token, secret, hex.EncodeToString([]byte(token)), hex.EncodeToString([]byte(secret))} {
			if strings.Contains(strings.ToLower(value), strings.ToLower(form)) {
				t.Errorf("desks.%s holds the token in clear: %q", column, value)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen < 4 {
		t.Fatalf("read %d columns of the desk's row, want all of them", seen)
	}
}

func TestHasMunicipality_KnowsTheMunicipalitiesOfDesks(t *testing.T) {
	t.Parallel()
	s := pgtest.Store(t)
	ctx := withTimeout(t)
	if _, _, err := s.CreateDesk(ctx, "braganca", "Espaço Cidadão Bragança"); err != nil {
		t.Fatal(err)
	}
	for m, want := range map[string]bool{"braganca": true, "lisboa": false, "": false} {
		got, err := s.HasMunicipality(ctx, m)
		if err != nil || got != want {
			t.Errorf("HasMunicipality(%q) = %v, %v; want %v", m, got, err, want)
		}
	}
}
