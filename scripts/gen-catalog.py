#!/usr/bin/env python3
"""Generate PhoneHome's Xiaomi catalog data files from the research facts.

Reads domains.tsv and packages.tsv (default: ../shared/xiaomi/ next to the repository) and
writes rust-core/data/xiaomi-domains.tsv and rust-core/data/xiaomi-packages.tsv, which the core
compiles in (include_str!). Only facts are taken over: host names, match kind, category, package
names. Every purpose text below is PhoneHome's own wording, chosen per category and refined by
host-name patterns; the research file's descriptions are not copied.

Usage: scripts/gen-catalog.py [--facts DIR] [--out DIR]
"""
import argparse
import csv
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Our wording, one line per category.
CATEGORY_PURPOSE = {
    "analytics/telemetry": "Usage statistics and event upload from Xiaomi analytics SDKs",
    "ads": "Advertising: ad requests, ad settings or ad-event reports",
    "crash": "Crash, ANR and performance report upload",
    "push": "Mi Push: persistent push channel or its server lookup",
    "config": "Cloud control: remote settings and SDK self-update checks",
    "cloud/sync": "Xiaomi Cloud: sync and backup of personal data",
    "account": "Mi Account sign-in and identity",
    "location": "Location services: network positioning or location-based content",
    "update/OTA": "System or component update check and download",
    "app store": "GetApps store: catalogue, app downloads, system-app updates",
    "browser": "Mi Browser / Mint Browser services and news feed",
    "CDN": "Content delivery: images, downloads and static files",
    "connectivity": "Connectivity check (captive-portal probe)",
    "other": "Xiaomi service, not identified further",
}

# Hosts a phone needs for a feature to work (facts.md section 1): reported as functional.
FUNCTIONAL = {
    "account.xiaomi.com", "api.account.xiaomi.com", "ruac.account.xiaomi.com",
    "sgpac.account.xiaomi.com", "api.io.mi.com", "i2.api.io.mi.com",
    "find.api.micloud.xiaomi.net", "us.find.api.micloud.xiaomi.net",
    "in.find.api.micloud.xiaomi.net", "global.market.xiaomi.com", "update.miui.com",
    "update.intl.miui.com", "ultimateota.d.miui.com", "connect.rom.miui.com",
    "connect.intl.rom.miui.com",
}
FUNCTIONAL_CATEGORIES = {"account", "update/OTA", "connectivity"}

# Per-host refinements, our wording.
HOST_PURPOSE = {
    "connect.rom.miui.com": ("connectivity", "Connectivity check (generate_204 probe); functional, not telemetry"),
    "connect.intl.rom.miui.com": ("connectivity", "Connectivity check for international builds; functional, not telemetry"),
    "tracking.intl.miui.com": (None, "MIUI analytics upload (OneTrack), default international region"),
    "tracking.miui.com": (None, "MIUI analytics upload (OneTrack), China and regional variants"),
    "data.mistat.xiaomi.com": (None, "Mi Stats SDK upload, China"),
    "data.mistat.intl.xiaomi.com": (None, "Mi Stats SDK upload, international"),
    "data.mistat.india.xiaomi.com": (None, "Mi Stats SDK upload, India"),
    "data.mistat.rus.xiaomi.com": (None, "Mi Stats SDK upload, Russia"),
    "sdkconfig.ad.intl.xiaomi.com": (None, "Analytics/ad SDK update check; sends device and package details"),
    "sdkconfig.ad.xiaomi.com": (None, "Analytics/ad SDK update check, China builds"),
    "api.ad.intl.xiaomi.com": (None, "Ad requests of the system ad SDK"),
    "globalapi.ad.xiaomi.com": (None, "Ad SDK configuration over plain HTTP (ad networks, blocklist)"),
    "resolver.msg.global.xiaomi.net": (None, "Mi Push server lookup, international"),
    "resolver.msg.xiaomi.net": (None, "Mi Push server lookup, China"),
    "global.market.xiaomi.com": (None, "GetApps backend and system-app updater; also receives folder contents when 'Promoted apps' is on"),
    "update.miui.com": (None, "MIUI system update check; functional"),
    "update.intl.miui.com": (None, "MIUI system update check, international; functional"),
    "ultimateota.d.miui.com": (None, "OTA package download; functional"),
    "api.io.mi.com": (None, "Mi Home / IoT device API; functional for smart-home features"),
    "i2.api.io.mi.com": (None, "Mi Home / IoT device API; functional for smart-home features"),
    "find.api.micloud.xiaomi.net": (None, "Find Device; functional"),
    "us.find.api.micloud.xiaomi.net": (None, "Find Device, US region; functional"),
    "in.find.api.micloud.xiaomi.net": (None, "Find Device, India region; functional"),
    "jupiter.intl.sys.miui.com": (None, "Battery and performance cloud-control profiles"),
    "metok.sys.miui.com": (None, "Xiaomi network location provider"),
    "weatherapi.market.xiaomi.com": (None, "Weather data, requested with the phone's position"),
    "sa.api.intl.miui.com": (None, "Browser analytics (Sensors Analytics) upload"),
    "api.sec.intl.miui.com": (None, "Security app cloud: app allow-lists and checks"),
    "api.setting.intl.miui.com": (None, "Cloud settings for launcher, Mi Drop and Scanner"),
}


def refine(domain, category):
    """Pattern-based wording for rows the category says little about."""
    labels = domain.split(".")
    first = labels[0]
    if any(t in domain for t in ("staging", "preview", "sandbox")) or first in ("test", "tj1") or first.startswith("tj1-"):
        return "Staging or test host; retail phones are not expected to use it"
    if domain.endswith("elb.amazonaws.com"):
        return "AWS load balancer behind a Xiaomi host (CNAME target)"
    if "edgesuite.net" in domain or "ks-cdn.com" in domain or "ksyuna.net" in domain:
        return "CDN alias behind a Xiaomi host (CNAME target)"
    if category == "other":
        if "pandora" in labels or domain.endswith("gitv.tv") or domain.endswith("kuyun.com") or "tv" in labels:
            return "Mi TV / PatchWall service"
        if "avlyun" in domain or "avast" in labels or "sec" in labels:
            return "Security app cloud (antivirus and app checks)"
        if "game" in labels or first == "g" or labels[-3:-2] == ["g"]:
            return "Xiaomi games service"
        if "pay" in domain or "mibi" in labels or "jr" in labels:
            return "Xiaomi payments"
        if "io" in labels or "iot" in labels or "miwifi" in domain:
            return "Mi Home / IoT service"
        if "thm" in labels or "theme" in domain:
            return "Themes service"
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--facts", default=os.path.join(os.path.dirname(ROOT), "shared", "xiaomi"))
    ap.add_argument("--out", default=os.path.join(ROOT, "rust-core", "data"))
    args = ap.parse_args()

    domains_in = os.path.join(args.facts, "domains.tsv")
    packages_in = os.path.join(args.facts, "packages.tsv")
    if not os.path.exists(domains_in):
        sys.exit(f"gen-catalog: {domains_in} not found (pass --facts DIR)")

    rows = {}
    with open(domains_in, newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            domain = r["domain"].strip().lower().rstrip(".")
            match = r["match"].strip()
            category = r["category"].strip()
            if not domain or match not in ("exact", "suffix") or category not in CATEGORY_PURPOSE:
                print(f"gen-catalog: skipping row {r}", file=sys.stderr)
                continue
            override = HOST_PURPOSE.get(domain)
            if override and override[0]:
                category = override[0]
            purpose = (override[1] if override else None) or refine(domain, category) or CATEGORY_PURPOSE[category]
            functional = domain in FUNCTIONAL or category in FUNCTIONAL_CATEGORIES
            rows[(domain, match)] = (domain, match, category, "1" if functional else "0", purpose)

    os.makedirs(args.out, exist_ok=True)
    out = os.path.join(args.out, "xiaomi-domains.tsv")
    with open(out, "w", newline="") as f:
        f.write("# Generated by scripts/gen-catalog.py from the Xiaomi research facts; purposes are PhoneHome's wording.\n")
        f.write("# domain\tmatch\tcategory\tfunctional\tpurpose\n")
        for key in sorted(rows):
            f.write("\t".join(rows[key]) + "\n")
    print(f"gen-catalog: {len(rows)} domain rules -> {out}")

    packages = set()
    with open(packages_in, newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            p = r["package"].strip()
            if p:
                packages.add(p)
    out = os.path.join(args.out, "xiaomi-packages.txt")
    with open(out, "w") as f:
        f.write("# Generated by scripts/gen-catalog.py: package names of MIUI/HyperOS system apps.\n")
        for p in sorted(packages):
            f.write(p + "\n")
    print(f"gen-catalog: {len(packages)} packages -> {out}")


if __name__ == "__main__":
    main()
