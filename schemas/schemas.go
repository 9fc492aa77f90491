// Package schemas holds what other systems read and what spotflow loads at
// start: the numbered SQL migrations of the Postgres projections, the JSON
// Schemas of the messages agencies consume and publish, and the service
// catalogue. This file only embeds them.
package schemas

import "embed"

// Migrations holds migrations/NNN_name.up.sql, applied in order.
//
//go:embed migrations/*.sql
var Migrations embed.FS

// Messages holds the JSON Schemas of the agency queue contract.
//
//go:embed messages/*.json
var Messages embed.FS

// Catalog is the default service catalogue.
//
//go:embed catalog/services.json
var Catalog []byte

// CatalogSchema is the JSON Schema every service catalogue must fit.
//
//go:embed catalog/services.schema.json
var CatalogSchema []byte
