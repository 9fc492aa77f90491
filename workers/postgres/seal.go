package postgres

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/spotflow/spotflow/events"
)

// aead is the cipher that seals what must be kept but holds personal data (requests kept
// for re-driving, dead letters) with AES-256-GCM under a key derived from the
// citizen key.
func (s *Store) aead() (cipher.AEAD, error) {
	m := hmac.New(sha256.New, s.citizenKey)
	m.Write([]byte("spotflow seal v1"))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return cipher.NewGCM(block)
}

// seal encrypts plain; the nonce leads the result.
func (s *Store) seal(plain []byte) ([]byte, error) {
	a, err := s.aead()
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, a.NonceSize(), a.NonceSize()+len(plain)+a.Overhead())
	_, _ = rand.Read(nonce)
	return a.Seal(nonce, nonce, plain, nil), nil
}

// unseal reverses seal. Nothing sealed (NULL) is a copy that was deleted:
// events.ErrPersonalDataDeleted.
func (s *Store) unseal(sealed []byte) ([]byte, error) {
	if len(sealed) == 0 {
		return nil, events.ErrPersonalDataDeleted
	}
	a, err := s.aead()
	if err != nil {
		return nil, err
	}
	if len(sealed) < a.NonceSize() {
		return nil, errors.New("unseal: too short")
	}
	plain, err := a.Open(nil, sealed[:a.NonceSize()], sealed[a.NonceSize():], nil)
	if err != nil {
		return nil, fmt.Errorf("unseal: %w (was the citizen key changed?)", err)
	}
	return plain, nil
}
