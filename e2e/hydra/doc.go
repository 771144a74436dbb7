// Package hydra tests the tokenwatch binary end to end against ORY Hydra
// v2.3.0, an authorization server written by others, started on loopback by
// the tests. Hydra is built by scripts/build-hydra.sh; the tests find it via
// $HYDRA_BIN or the script's cache and skip without it (fail under CI=true).
package hydra
