#!/usr/bin/env python3
"""Checks `aapt dump badging` of the APK skeleton against what the build says it should be.

Package, versionCode/versionName and SDK levels from the merged manifest, permissions from it,
locales from res/values-*/ (plus the default).
Usage: check_badging.py BADGING.txt MERGED_MANIFEST.xml RES_DIR
"""

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

A = "{http://schemas.android.com/apk/res/android}"


def main():
    badging_file, manifest_file, res = sys.argv[1:4]
    badging = Path(badging_file).read_text()
    manifest = ET.parse(manifest_file).getroot()
    sdk = manifest.find("uses-sdk")
    expected = {
        "package": f"name='{manifest.get('package')}' versionCode='{manifest.get(A + 'versionCode')}' "
        f"versionName='{manifest.get(A + 'versionName')}'",
        "sdkVersion": f"'{sdk.get(A + 'minSdkVersion')}'",
        "targetSdkVersion": f"'{sdk.get(A + 'targetSdkVersion')}'",
    }
    problems = []
    for key, value in expected.items():
        line = next((l for l in badging.splitlines() if l.startswith(key + ":")), None)
        if line is None or value not in line:
            problems.append(f"{key}: expected {value}, badging says {line}")
    permissions = {p.get(A + "name") for p in manifest.findall("uses-permission")}
    listed = set(re.findall(r"^uses-permission: name='([^']+)'", badging, re.M))
    if permissions - listed:
        problems.append(f"permissions missing from the APK: {sorted(permissions - listed)}")
    if listed - permissions:
        problems.append(f"permissions in the APK the manifest does not ask for: {sorted(listed - permissions)}")
    qualifiers = {d.name.split("-", 1)[1] for d in Path(res).glob("values-*") if (d / "strings.xml").exists()}
    locales_line = next((l for l in badging.splitlines() if l.startswith("locales:")), "")
    locales = set(re.findall(r"'([^']*)'", locales_line))
    want = {"--_--"} | qualifiers
    if locales != want:
        problems.append(f"locales: expected {sorted(want)}, badging says {sorted(locales)}")
    if problems:
        for p in problems:
            print("badging: " + p, file=sys.stderr)
        sys.exit(1)
    print(f"badging: {expected['package']}, min {expected['sdkVersion']} target {expected['targetSdkVersion']}, "
          f"{len(listed)} permissions, locales {sorted(locales)}")


if __name__ == "__main__":
    main()
