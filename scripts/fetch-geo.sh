#!/usr/bin/env bash
# Fetch the offline country/ASN data from the npm registry and convert it into the compact file
# the core loads (see rust-core/src/geo/mod.rs for where it is looked for).
#
#   scripts/fetch-geo.sh [OUT]      default OUT: target/phonehome-geo.bin in the repository
#
# Data: @ip-location-db/geo-whois-asn-country (CC0-1.0) and @ip-location-db/asn (CC BY 4.0:
# RouteViews, DB-IP, NRO; attribution required when redistributed). Needs npm and python3.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-${CARGO_TARGET_DIR:-$repo/target}/phonehome-geo.bin}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
for pkg in @ip-location-db/geo-whois-asn-country @ip-location-db/asn; do
    npm pack --silent "$pkg" >/dev/null
done
mkdir country asn
tar xzf ip-location-db-geo-whois-asn-country-*.tgz -C country
tar xzf ip-location-db-asn-*.tgz -C asn
mkdir -p "$(dirname "$out")"
python3 "$repo/scripts/geo-convert.py" \
    country/package/geo-whois-asn-country-ipv4-num.csv \
    country/package/geo-whois-asn-country-ipv6-num.csv \
    asn/package/asn-ipv4-num.csv \
    asn/package/asn-ipv6-num.csv \
    "$out.tmp"
mv "$out.tmp" "$out"
echo "fetch-geo: wrote $out ($(du -h "$out" | cut -f1))"
