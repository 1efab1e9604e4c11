// Package yamlguard checks YAML input before it is decoded, so a hostile
// file cannot make the decoder explode: aliases (*name), which let a small
// file expand into gigabytes (the "billion laughs"), are refused, and so
// are files with more values than a pool file ever holds. Check runs in
// constant memory before the document is parsed at all; only then is it
// parsed once to confirm no alias is left.
package yamlguard
