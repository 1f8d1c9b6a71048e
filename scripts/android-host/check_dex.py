#!/usr/bin/env python3
"""Asserts that R8's classes.dex still has everything the Rust core reaches by name.

The contract is read from the Rust side, so a rename on either side fails here:
- every `#[jni_mangle("org.phonehome.core.NativeCore")] pub fn` of rust-core/src/android (and the
  `Java_org_phonehome_core_NativeCore_*` symbols of the built library, when given) must be a
  native method of NativeCore in the dex, with a matching descriptor; and every native method of
  NativeCore must be exported by the core (else UnsatisfiedLinkError at run time);
- every class the core throws (`find_class` + `throw_new`) keeps its `<init>(String)`;
- every `call_method(obj, jni_str!("name"), jni_sig!(...))` is a method of CoreCallback and of each
  class implementing it, with that descriptor;
- every field of every message of proto/phonehome.proto (from protoc's descriptor set) keeps the
  name protobuf-javalite's reflection looks for (`fooBar_`, `kind_` + `kindCase_` for a oneof).

Usage: check_dex.py DEXDUMP.txt RUST_ANDROID_DIR DESCRIPTOR_SET [LIBPHONEHOME.so]
"""

import re
import subprocess
import sys
from pathlib import Path

NATIVE_CLASS = "org.phonehome.core.NativeCore"
CALLBACK_INTERFACE = "Lorg/phonehome/core/CoreCallback;"
ACC_NATIVE = 0x0100
ACC_ABSTRACT = 0x0400

# Rust parameter / return types of the exports, as JVM descriptors (a regex: JObject is any object).
RUST_TYPES = {
    "jint": "I",
    "i32": "I",
    "jlong": "J",
    "i64": "J",
    "bool": "Z",
    "jboolean": "Z",
    "JString": re.escape("Ljava/lang/String;"),
    "JByteArray": re.escape("[B"),
    "JObject": r"L[^;]+;",
}
# jni_sig! types of the callbacks.
SIG_TYPES = {"jint": "I", "jlong": "J", "jboolean": "Z", "jbyte[]": "[B", "jint[]": "[I", "()": "V"}


def parse_dexdump(path):
    """{class descriptor: {"interfaces": [...], "methods": [(name, type, access)], "fields": [...]}}"""
    classes = {}
    current = None
    section = None
    item = {}

    def flush():
        if current is not None and item.get("name") and section:
            classes[current][section].append((item["name"], item.get("type", ""), item.get("access", 0)))

    for line in Path(path).read_text(errors="replace").splitlines():
        m = re.match(r"\s+Class descriptor\s+:\s+'(.+)'", line)
        if m:
            flush()
            item = {}
            current = m.group(1)
            classes[current] = {"interfaces": [], "methods": [], "fields": []}
            section = None
            continue
        if current is None:
            continue
        stripped = line.strip()
        if stripped.startswith("Interfaces"):
            flush()
            item, section = {}, "interfaces_list"
            continue
        if stripped.startswith(("Static fields", "Instance fields")):
            flush()
            item, section = {}, "fields"
            continue
        if stripped.startswith(("Direct methods", "Virtual methods")):
            flush()
            item, section = {}, "methods"
            continue
        if section == "interfaces_list":
            m = re.match(r"#\d+\s+:\s+'(.+)'", stripped)
            if m:
                classes[current]["interfaces"].append(m.group(1))
            continue
        if re.match(r"#\d+\s+:\s+\(in ", stripped):
            flush()
            item = {}
            continue
        m = re.match(r"(name|type|access)\s+:\s+(.*)", stripped)
        if m and section in ("fields", "methods"):
            key, value = m.groups()
            if key == "access":
                item[key] = int(value.split()[0], 16)
            elif key not in item:
                item[key] = value.strip("'")
    flush()
    return classes


def snake_to_camel(name):
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def rust_exports(rust_dir):
    """{java name: descriptor as a regex} of the NativeCore exports in the Rust sources."""
    exports = {}
    pattern = re.compile(
        r'#\[jni_mangle\("' + re.escape(NATIVE_CLASS) + r'"\)\]\s*pub fn (\w+)\s*<[^>]*>\s*\((.*?)\)\s*(?:->\s*([\w<>\' ]+?))?\s*\{',
        re.S,
    )
    for source in sorted(Path(rust_dir).rglob("*.rs")):
        for name, params, ret in pattern.findall(source.read_text()):
            types = [p.split(":", 1)[1].strip() for p in params.split(",") if ":" in p]
            # JNI passes the env and the class first; the Java parameters follow.
            java_params = [re.sub(r"<.*>", "", t).strip() for t in types[2:]]
            ret_type = re.sub(r"<.*>", "", ret or "").strip()
            try:
                desc = r"\(" + "".join(RUST_TYPES[t] for t in java_params) + r"\)"
                desc += RUST_TYPES[ret_type] if ret_type else "V"
            except KeyError as e:
                sys.exit(f"{source}: fn {name}: no JVM type known for Rust type {e}; add it to check_dex.py")
            exports[snake_to_camel(name)] = desc
    return exports


def library_exports(library):
    prefix = "Java_" + NATIVE_CLASS.replace(".", "_") + "_"
    out = subprocess.run(["nm", "-D", "--defined-only", library], check=True, capture_output=True, text=True)
    return {line.split()[-1][len(prefix):] for line in out.stdout.splitlines() if line.split() and line.split()[-1].startswith(prefix)}


def rust_throws(rust_dir):
    thrown = set()
    for source in Path(rust_dir).rglob("*.rs"):
        text = source.read_text()
        if "throw_new" in text:
            thrown.update(re.findall(r'find_class\(jni_str!\("([\w/$]+)"\)\)', text))
    return thrown


def rust_callbacks(rust_dir):
    """[(name, descriptor)] of every method the core calls by name."""
    calls = []
    pattern = re.compile(r'call_method\(\s*[^;]*?jni_str!\("(\w+)"\),\s*jni_sig!\(\((.*?)\)\s*->\s*([\w\[\]()]+)\)', re.S)
    for source in sorted(Path(rust_dir).rglob("*.rs")):
        for name, params, ret in pattern.findall(source.read_text()):
            types = [p.split(":", 1)[1].strip() for p in params.split(",") if ":" in p]
            try:
                calls.append((name, "(" + "".join(SIG_TYPES[t] for t in types) + ")" + SIG_TYPES[ret]))
            except KeyError as e:
                sys.exit(f"{source}: call_method {name}: no descriptor known for jni_sig type {e}; add it to check_dex.py")
    return calls


def read_varint(data, pos):
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def fields_of(data):
    """[(field number, value)] of one protobuf message (length-delimited values as bytes)."""
    out, pos = [], 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(data, pos)
        elif wire == 2:
            length, pos = read_varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"wire type {wire}")
        out.append((number, value))
    return out


def proto_fields(descriptor_set):
    """{class descriptor: [java field names]} as protobuf-javalite generates them."""
    expected = {}

    def message(body, outer, java_package):
        parts = fields_of(body)
        name = next(v.decode() for n, v in parts if n == 1)
        cls = f"{outer}${name}" if outer else f"L{java_package.replace('.', '/')}/{name}"
        oneofs = [fields_of(v) for n, v in parts if n == 8]
        oneof_names = [next(v.decode() for n, v in o if n == 1) for o in oneofs]
        names, used_oneofs = [], set()
        for n, v in parts:
            if n != 2:
                continue
            field = dict(fields_of(v))
            if field.get(9) is not None and not field.get(17):
                used_oneofs.add(field[9])
                continue
            names.append(snake_to_camel(field[1].decode()) + "_")
        for index in sorted(used_oneofs):
            camel = snake_to_camel(oneof_names[index])
            names += [camel + "_", camel + "Case_"]
        expected[cls + ";"] = names
        for n, v in parts:
            if n == 3:
                message(v, cls, java_package)

    for number, file_proto in fields_of(Path(descriptor_set).read_bytes()):
        if number != 1:
            continue
        parts = fields_of(file_proto)
        options = dict(fields_of(next((v for n, v in parts if n == 8), b"")))
        if not options.get(10):
            sys.exit(f"{descriptor_set}: check_dex.py expects java_multiple_files = true")
        java_package = options.get(1, b"").decode()
        for n, v in parts:
            if n == 4:
                message(v, None, java_package)
    return expected


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    dexdump, rust_dir, descriptor_set = sys.argv[1:4]
    classes = parse_dexdump(dexdump)
    problems = []
    checked = 0

    native_desc = "L" + NATIVE_CLASS.replace(".", "/") + ";"
    exports = rust_exports(rust_dir)
    if not exports:
        problems.append(f"no #[jni_mangle(\"{NATIVE_CLASS}\")] fn found under {rust_dir}")
    if len(sys.argv) == 5:
        in_library = library_exports(sys.argv[4])
        for name in sorted(set(exports) ^ in_library):
            problems.append(f"JNI export {name}: in the Rust sources {name in exports}, in {sys.argv[4]} {name in in_library}")
    natives = {n: t for n, t, a in classes.get(native_desc, {}).get("methods", []) if a & ACC_NATIVE}
    if native_desc not in classes:
        problems.append(f"class {NATIVE_CLASS} is missing from the dex (renamed or dropped by R8)")
    for name, desc in sorted(exports.items()):
        checked += 1
        if name not in natives:
            problems.append(f"NativeCore.{name}: the core exports Java_..._NativeCore_{name}, the dex has no such native method")
        elif not re.fullmatch(desc, natives[name]):
            problems.append(f"NativeCore.{name}: dex descriptor {natives[name]} does not match the Rust export's parameters ({desc})")
    for name in sorted(set(natives) - set(exports)):
        problems.append(f"NativeCore.{name}: native method in the dex that the core does not export")

    for thrown in sorted(rust_throws(rust_dir)):
        checked += 1
        desc = "L" + thrown + ";"
        ctors = [t for n, t, _ in classes.get(desc, {}).get("methods", []) if n == "<init>"]
        if "(Ljava/lang/String;)V" not in ctors:
            problems.append(f"{thrown.replace('/', '.')}(String): the core throws it with throw_new, the dex has no such constructor")

    implementers = [c for c, info in classes.items() if CALLBACK_INTERFACE in info["interfaces"]]
    if CALLBACK_INTERFACE not in classes:
        problems.append("interface org.phonehome.core.CoreCallback is missing from the dex")
    if not implementers:
        problems.append("no class in the dex implements org.phonehome.core.CoreCallback")
    for name, desc in rust_callbacks(rust_dir):
        for cls in [CALLBACK_INTERFACE] + implementers:
            checked += 1
            methods = {(n, t) for n, t, _ in classes.get(cls, {}).get("methods", [])}
            if (name, desc) not in methods:
                problems.append(f"{cls[1:-1].replace('/', '.')}.{name}{desc}: the core calls it by name, the dex lacks it")

    for cls, names in sorted(proto_fields(descriptor_set).items()):
        if cls not in classes:
            problems.append(f"protobuf message {cls[1:-1].replace('/', '.')} is missing from the dex")
            continue
        have = {n for n, _, _ in classes[cls]["fields"]}
        for name in names:
            checked += 1
            if name not in have:
                problems.append(f"{cls[1:-1].replace('/', '.')}.{name}: protobuf-javalite reads this field by name, R8 removed or renamed it")

    if problems:
        print("check_dex: the R8 output breaks the JNI/protobuf contract:", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        sys.exit(1)
    print(f"check_dex: {len(exports)} JNI exports, {len(rust_callbacks(rust_dir))} callbacks, "
          f"{len(rust_throws(rust_dir))} thrown class(es), {len(proto_fields(descriptor_set))} messages: {checked} checks passed")


if __name__ == "__main__":
    main()
