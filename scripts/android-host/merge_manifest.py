#!/usr/bin/env python3
"""Writes android-app's manifest as the Android Gradle plugin merges it for aapt2 link.

From android-app/build.gradle.kts and gradle/libs.versions.toml: `package` from `namespace`,
versionCode / versionName, and `<uses-sdk minSdkVersion targetSdkVersion>`; `tools:` attributes
are dropped as the merger drops them. A value the build files do not state is an error, never a
guess.

Usage: merge_manifest.py REPO_DIR OUT.xml
Prints the values used as shell assignments (NAMESPACE=... MIN_SDK=...) for the caller.
"""

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ANDROID = "http://schemas.android.com/apk/res/android"
TOOLS = "http://schemas.android.com/tools"


def gradle_value(text, name, source):
    match = re.search(rf"^\s*{name}\s*=\s*(.+?)\s*$", text, re.M)
    if not match:
        sys.exit(f"{source}: no `{name} = ...`")
    return match.group(1)


def resolve(expr, versions, source):
    """A literal, or `libs.versions.X.get().toInt()` looked up in libs.versions.toml."""
    literal = re.fullmatch(r'"([^"]*)"|(\d+)', expr)
    if literal:
        return literal.group(1) if literal.group(1) is not None else literal.group(2)
    ref = re.fullmatch(r"libs\.versions\.(\w+)\.get\(\)(\.toInt\(\))?", expr)
    if ref and ref.group(1) in versions:
        return versions[ref.group(1)]
    sys.exit(f"{source}: cannot resolve `{expr}`")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    repo, out = Path(sys.argv[1]), sys.argv[2]
    gradle_file = repo / "android-app/build.gradle.kts"
    gradle = gradle_file.read_text()
    toml = (repo / "gradle/libs.versions.toml").read_text()
    versions_block = toml.split("[versions]", 1)[1].split("\n[", 1)[0]
    versions = dict(re.findall(r'^(\w+)\s*=\s*"([^"]*)"', versions_block, re.M))
    values = {
        key: resolve(gradle_value(gradle, key, gradle_file), versions, gradle_file)
        for key in ("namespace", "applicationId", "minSdk", "targetSdk", "versionCode", "versionName")
    }
    if values["applicationId"] != values["namespace"]:
        # The APK checks below read the package name; say so rather than check the wrong one.
        sys.exit(f"{gradle_file}: applicationId differs from namespace; the host check assumes they match")

    ET.register_namespace("android", ANDROID)
    ET.register_namespace("tools", TOOLS)
    tree = ET.parse(repo / "android-app/src/main/AndroidManifest.xml")
    manifest = tree.getroot()
    if manifest.get("package"):
        sys.exit("AndroidManifest.xml: `package` belongs in build.gradle.kts (`namespace`)")
    for element in manifest.iter():
        for attribute in [a for a in element.attrib if a.startswith("{" + TOOLS + "}")]:
            del element.attrib[attribute]
    manifest.set("package", values["namespace"])
    manifest.set(f"{{{ANDROID}}}versionCode", values["versionCode"])
    manifest.set(f"{{{ANDROID}}}versionName", values["versionName"])
    uses_sdk = ET.Element("uses-sdk")
    uses_sdk.set(f"{{{ANDROID}}}minSdkVersion", values["minSdk"])
    uses_sdk.set(f"{{{ANDROID}}}targetSdkVersion", values["targetSdk"])
    uses_sdk.tail = "\n    "
    manifest.insert(0, uses_sdk)
    tree.write(out, encoding="utf-8", xml_declaration=True)
    for key in ("namespace", "minSdk", "targetSdk", "versionCode", "versionName"):
        print(f"{key.upper()}={values[key]}")


if __name__ == "__main__":
    main()
