package opendata

import (
	"slices"
	"strings"
	"time"
)

// IRIs DCAT-AP asks for: the EU Publications Office's authority tables and
// IANA's media types.
const (
	frequencyMonthly = "http://publications.europa.eu/resource/authority/frequency/MONTHLY"
	themeGovernment  = "http://publications.europa.eu/resource/authority/data-theme/GOVE"
	accessPublic     = "http://publications.europa.eu/resource/authority/access-right/PUBLIC"
	fileTypeCSV      = "http://publications.europa.eu/resource/authority/file-type/CSV"
	fileTypeJSON     = "http://publications.europa.eu/resource/authority/file-type/JSON"
	mediaTypeCSV     = "https://www.iana.org/assignments/media-types/text/csv"
	mediaTypeJSON    = "https://www.iana.org/assignments/media-types/application/json"
)

// The files under /open-data/.
const (
	fileDataset = "dataset.jsonld"
	fileCSV     = "requests-monthly.csv"
	fileJSON    = "requests-monthly.json"
)

// jsonldContext maps the prefixes the description uses.
var jsonldContext = map[string]string{
	"dcat":  "http://www.w3.org/ns/dcat#",
	"dct":   "http://purl.org/dc/terms/",
	"foaf":  "http://xmlns.com/foaf/0.1/",
	"locn":  "http://www.w3.org/ns/locn#",
	"vcard": "http://www.w3.org/2006/vcard/ns#",
	"xsd":   "http://www.w3.org/2001/XMLSchema#",
}

type object = map[string]any

// iri is a node reference.
func iri(id string) object { return object{"@id": id} }

// typed is a literal of an XML Schema datatype.
func typed(datatype, value string) object { return object{"@type": datatype, "@value": value} }

// dataset is the DCAT-AP description (JSON-LD) of the dataset whose
// published rows are rows: a dcat:Dataset with its texts in every
// language of texts that the catalogue speaks (English and Portuguese
// always), its publisher, licence, period (the months published), the
// municipalities it covers, and a dcat:Distribution for the CSV and the
// JSON file.
func (h *Handler) dataset(rows []Row, langs []string) object {
	texts := func(key string) []object {
		out := make([]object, 0, len(langs))
		for _, l := range langs {
			out = append(out, object{"@language": l, "@value": h.texts[l][key]})
		}
		return out
	}
	var keywords []object
	for _, l := range langs {
		for k := range strings.SplitSeq(h.texts[l]["keywords"], ",") {
			keywords = append(keywords, object{"@language": l, "@value": strings.TrimSpace(k)})
		}
	}
	license := object{"@id": h.cfg.License, "@type": "dct:LicenseDocument"}
	publisher := object{"@type": "foaf:Agent", "foaf:name": h.cfg.PublisherName}
	if h.cfg.PublisherURL != "" {
		publisher["@id"] = h.cfg.PublisherURL
	}
	distribution := func(id, file, title, mediaType, format string) object {
		return object{
			"@id":              h.link(fileDataset + "#" + id),
			"@type":            "dcat:Distribution",
			"dct:title":        texts(title),
			"dct:description":  texts("distribution_description"),
			"dcat:accessURL":   iri(h.link(file)),
			"dcat:downloadURL": iri(h.link(file)),
			"dcat:mediaType":   iri(mediaType),
			"dct:format":       iri(format),
			"dct:license":      license,
		}
	}
	d := object{
		"@context":                jsonldContext,
		"@id":                     h.link(fileDataset + "#dataset"),
		"@type":                   "dcat:Dataset",
		"dct:identifier":          "requests-monthly",
		"dct:title":               texts("title"),
		"dct:description":         texts("description"),
		"dcat:keyword":            keywords,
		"dct:publisher":           publisher,
		"dct:license":             license,
		"dct:accessRights":        iri(accessPublic),
		"dct:accrualPeriodicity":  iri(frequencyMonthly),
		"dcat:temporalResolution": typed("xsd:duration", "P1M"),
		"dcat:theme":              iri(themeGovernment),
		"dcat:landingPage":        iri(h.link("")),
		"dcat:distribution": []object{
			distribution("csv", fileCSV, "csv_title", mediaTypeCSV, fileTypeCSV),
			distribution("json", fileJSON, "json_title", mediaTypeJSON, fileTypeJSON),
		},
	}
	if h.cfg.PublisherURL != "" {
		d["dcat:contactPoint"] = object{"@type": "vcard:Organization", "vcard:fn": h.cfg.PublisherName,
			"vcard:hasURL": iri(h.cfg.PublisherURL)}
	}
	if len(rows) > 0 {
		first, _ := time.Parse(monthLayout, rows[0].Month)
		last, _ := time.Parse(monthLayout, rows[len(rows)-1].Month)
		d["dct:temporal"] = object{
			"@type":          "dct:PeriodOfTime",
			"dcat:startDate": typed("xsd:date", first.Format(time.DateOnly)),
			"dcat:endDate":   typed("xsd:date", last.AddDate(0, 1, -1).Format(time.DateOnly)),
		}
	}
	var municipalities []string
	for _, r := range rows {
		municipalities = append(municipalities, r.Municipality)
	}
	slices.Sort(municipalities)
	var spatial []object
	for _, m := range slices.Compact(municipalities) {
		spatial = append(spatial, object{"@type": "dct:Location", "locn:geographicName": m})
	}
	if len(spatial) > 0 {
		d["dct:spatial"] = spatial
	}
	return d
}
