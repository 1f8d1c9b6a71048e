//! Device identifiers in cleartext payload. Only the *kinds* found are reported ("imei",
//! "android_id", ...); the payload and the values themselves are never kept.
//!
//! Shapes alone would flag every 16-hex-digit token as an Android ID, so most kinds need a
//! context: a parameter name such as `android_id=` or `"oaid":"` right before the value. IMEI-shaped
//! numbers stand on their own but must pass the Luhn check; the phone's own model, OS version and
//! addresses (from [`DeviceContext`]) are matched literally.

use std::collections::BTreeSet;
use std::net::IpAddr;

use memchr::memmem::Finder;

/// What the engine knows about the phone, to recognise its own identifiers in payloads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceContext {
    /// The phone's own addresses (Wi-Fi/mobile, and the tunnel's).
    pub own_ips: Vec<IpAddr>,
    /// `Build.MODEL`, e.g. "M2101K7BG" or "Redmi Note 9S".
    pub model: Option<String>,
    /// MIUI/HyperOS version string, e.g. "V14.0.3.0.TKHEUXM" or "OS1.0.5.0.UMCEUXM".
    pub os_version: Option<String>,
}

/// A [`DeviceContext`] with its literal identifiers lower-cased, formatted and turned into
/// searchers once, when the capture starts. Every flow's inspector shares it: formatting the
/// addresses and building the searchers again for each scanned window cost more than scanning a
/// short request.
#[derive(Clone, Debug)]
pub struct DeviceScan {
    context: DeviceContext,
    /// The model as written, with `+` and with `%20` for its spaces (form and URL encodings).
    model: Vec<Finder<'static>>,
    os_version: Option<Finder<'static>>,
    /// Each own address in its usual text form, loopback and unspecified left out.
    own_ips: Vec<Finder<'static>>,
}

impl DeviceScan {
    pub fn new(context: DeviceContext) -> DeviceScan {
        let finder = |text: &str| Finder::new(text.as_bytes()).into_owned();
        let model = match context.model.as_deref().filter(|m| m.len() >= 4) {
            Some(model) => {
                let m = model.to_ascii_lowercase();
                let mut spellings = vec![m.clone(), m.replace(' ', "+"), m.replace(' ', "%20")];
                spellings.dedup();
                spellings.iter().map(|s| finder(s)).collect()
            }
            None => Vec::new(),
        };
        let os_version = context
            .os_version
            .as_deref()
            .filter(|v| v.len() >= 4)
            .map(|v| finder(&v.to_ascii_lowercase()));
        let own_ips = context
            .own_ips
            .iter()
            .filter(|ip| !ip.is_unspecified() && !ip.is_loopback())
            .map(|ip| finder(&ip.to_string()))
            .collect();
        DeviceScan {
            context,
            model,
            os_version,
            own_ips,
        }
    }

    /// What the scan was built from.
    pub fn context(&self) -> &DeviceContext {
        &self.context
    }
}

impl From<DeviceContext> for DeviceScan {
    fn from(context: DeviceContext) -> DeviceScan {
        DeviceScan::new(context)
    }
}

pub const IMEI: &str = "imei";
pub const ANDROID_ID: &str = "android_id";
pub const OAID: &str = "oaid";
pub const GAID: &str = "gaid";
pub const MAC: &str = "mac";
pub const MODEL: &str = "model";
pub const MIUI_VERSION: &str = "miui_version";
pub const OWN_IP: &str = "own_ip";

/// Parameter names (lower case) announcing each kind of value.
const ANDROID_ID_KEYS: &[&str] = &["android_id", "androidid", "android-id", "ssaid"];
const OAID_KEYS: &[&str] = &["oaid"];
const GAID_KEYS: &[&str] = &[
    "gaid",
    "adid",
    "advertising_id",
    "advertisingid",
    "ad_id",
    "aaid",
    "google_ad_id",
];
const IMEI_KEYS: &[&str] = &["imei", "imei1", "imei2", "meid", "device_id", "deviceid"];
const MAC_KEYS: &[&str] = &["mac", "mac_address", "macaddress", "wifi_mac", "bssid"];
const MODEL_KEYS: &[&str] = &[
    "model",
    "device_model",
    "devicemodel",
    "phone_model",
    "ro.product.model",
];
const MIUI_KEYS: &[&str] = &[
    "miui_version",
    "miuiversion",
    "miui_ver",
    "romversion",
    "rom_version",
    "ro.miui.ui.version.name",
];

/// Scan `data` and add the kinds found to `found`.
pub fn scan(data: &[u8], ctx: Option<&DeviceScan>, found: &mut BTreeSet<&'static str>) {
    let lower = data.to_ascii_lowercase();
    for (value, key_kind) in keyed_values(&lower) {
        if let Some(kind) = keyed_kind(value, key_kind) {
            found.insert(kind);
        }
    }
    if standalone_imei(&lower) {
        found.insert(IMEI);
    }
    if standalone_mac(&lower) {
        found.insert(MAC);
    }
    if miui_version_shape(data) {
        found.insert(MIUI_VERSION);
    }
    if android_user_agent_model(&lower) {
        found.insert(MODEL);
    }
    if let Some(ctx) = ctx {
        if ctx.model.iter().any(|m| m.find(&lower).is_some()) {
            found.insert(MODEL);
        }
        if ctx
            .os_version
            .as_ref()
            .is_some_and(|v| v.find(&lower).is_some())
        {
            found.insert(MIUI_VERSION);
        }
        if ctx.own_ips.iter().any(|ip| contains_token(&lower, ip)) {
            found.insert(OWN_IP);
        }
    }
}

/// What a value announced by a key of `key_kind` is, when its shape fits.
fn keyed_kind(value: &[u8], key_kind: KeyKind) -> Option<&'static str> {
    match key_kind {
        KeyKind::AndroidId if is_hex(value, 16) => Some(ANDROID_ID),
        KeyKind::Oaid
            if (is_uuid(value) || is_hex(value, 16) || is_hex(value, 32) || is_hex(value, 64))
                && !is_all_zero(value) =>
        {
            Some(OAID)
        }
        KeyKind::Gaid if is_uuid(value) && !is_all_zero(value) => Some(GAID),
        KeyKind::Imei
            if value.len() == 15 && value.iter().all(u8::is_ascii_digit) && luhn_ok(value) =>
        {
            Some(IMEI)
        }
        KeyKind::Mac if is_mac(value) || (is_hex(value, 12) && !is_all_zero(value)) => Some(MAC),
        KeyKind::Model if !value.is_empty() => Some(MODEL),
        KeyKind::Miui if !value.is_empty() => Some(MIUI_VERSION),
        _ => None,
    }
}

/// Device descriptors (the model, the OS version): they narrow a fingerprint but do not identify
/// one phone, so they are kept apart from identifiers and left out of identifier counts.
pub fn is_descriptor(kind: &str) -> bool {
    kind == MODEL || kind == MIUI_VERSION
}

/// What an identifier value is replaced with in stored evidence (`gaid=<advertising-id>`).
pub fn placeholder(kind: &str) -> &'static str {
    match kind {
        IMEI => "<imei>",
        ANDROID_ID => "<android-id>",
        OAID => "<oaid>",
        GAID => "<advertising-id>",
        MAC => "<mac>",
        OWN_IP => "<own-ip>",
        _ => "<identifier>",
    }
}

/// `text` with every identifier value found in it replaced by its kind's placeholder, so that
/// evidence (a request's path and query) can be stored without the values. Descriptors stay.
pub fn redact(text: &str, ctx: Option<&DeviceScan>) -> String {
    let lower = text.as_bytes().to_ascii_lowercase();
    let base = lower.as_ptr() as usize;
    let mut spans: Vec<(usize, usize, &'static str)> = Vec::new();
    for (value, key_kind) in keyed_values(&lower) {
        if let Some(kind) = keyed_kind(value, key_kind).filter(|k| !is_descriptor(k)) {
            let start = (value.as_ptr() as usize).saturating_sub(base);
            spans.push((start, start.saturating_add(value.len()), kind));
        }
    }
    spans.extend(standalone_imeis(&lower).map(|(s, e)| (s, e, IMEI)));
    spans.extend(standalone_macs(&lower).map(|s| (s, s.saturating_add(17), MAC)));
    if let Some(ctx) = ctx {
        for ip in &ctx.own_ips {
            let len = ip.needle().len();
            spans.extend(token_positions(&lower, ip).map(|s| (s, s.saturating_add(len), OWN_IP)));
        }
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end, kind) in spans {
        if start < at {
            continue; // overlaps a span already replaced
        }
        // Spans are ASCII (identifier shapes), so these are char boundaries.
        out.push_str(text.get(at..start).unwrap_or_default());
        out.push_str(placeholder(kind));
        at = end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    AndroidId,
    Oaid,
    Gaid,
    Imei,
    Mac,
    Model,
    Miui,
}

/// Every `key<sep>value` in the (lower-cased) text whose key is one we know. Separators: `=`,
/// `:`, `>` (XML), with quotes and spaces around them, as in query strings, JSON and XML.
/// One pass over the text: each token of key characters followed by a separator is looked up.
fn keyed_values(lower: &[u8]) -> Vec<(&[u8], KeyKind)> {
    let is_key_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
    let mut out = Vec::new();
    let mut i = 0;
    while i < lower.len() {
        if !is_key_char(lower[i]) {
            i = i.saturating_add(1);
            continue;
        }
        let start = i;
        while i < lower.len() && is_key_char(lower[i]) {
            i = i.saturating_add(1);
        }
        let token = &lower[start..i];
        if token.len() < 3 || token.len() > 32 {
            continue;
        }
        let Some(value) = value_after(lower, i) else {
            continue;
        };
        // "ro.product.model" matches whole; "x.android_id" by its last part.
        let last = token.rsplit(|&b| b == b'.').next().unwrap_or(token);
        if let Some(kind) = key_kind(token).or_else(|| key_kind(last)) {
            out.push((value, kind));
        }
    }
    out
}

fn key_kind(token: &[u8]) -> Option<KeyKind> {
    let table: [(&[&str], KeyKind); 7] = [
        (ANDROID_ID_KEYS, KeyKind::AndroidId),
        (OAID_KEYS, KeyKind::Oaid),
        (GAID_KEYS, KeyKind::Gaid),
        (IMEI_KEYS, KeyKind::Imei),
        (MAC_KEYS, KeyKind::Mac),
        (MODEL_KEYS, KeyKind::Model),
        (MIUI_KEYS, KeyKind::Miui),
    ];
    table
        .iter()
        .find(|(keys, _)| keys.iter().any(|k| k.as_bytes() == token))
        .map(|(_, kind)| *kind)
}

/// The value following a key: skip up to 4 separator bytes (at least one of `=:>`), then read
/// the value's characters.
fn value_after(lower: &[u8], mut pos: usize) -> Option<&[u8]> {
    let mut saw_sep = false;
    for _ in 0..4 {
        match lower.get(pos) {
            Some(b'=' | b':' | b'>') => {
                saw_sep = true;
                pos = pos.saturating_add(1);
            }
            Some(b'"' | b'\'' | b' ' | b'\\') => pos = pos.saturating_add(1),
            _ => break,
        }
    }
    if !saw_sep {
        return None;
    }
    let start = pos;
    while pos < lower.len() && pos.saturating_sub(start) < 96 && is_value_char(lower[pos]) {
        pos = pos.saturating_add(1);
    }
    Some(&lower[start..pos])
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_value_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'.' | b'_' | b'+' | b'%')
}

fn is_hex(v: &[u8], len: usize) -> bool {
    v.len() == len && v.iter().all(u8::is_ascii_hexdigit)
}

fn is_all_zero(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'0' || b == b'-' || b == b':')
}

/// 8-4-4-4-12 hex digits.
fn is_uuid(v: &[u8]) -> bool {
    v.len() == 36
        && v.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Six hex pairs separated by ':' or '-' (the same separator throughout).
fn is_mac(v: &[u8]) -> bool {
    if v.len() != 17 {
        return false;
    }
    let sep = v[2];
    if sep != b':' && sep != b'-' {
        return false;
    }
    let ok = v.iter().enumerate().all(|(i, b)| {
        if i % 3 == 2 {
            *b == sep
        } else {
            b.is_ascii_hexdigit()
        }
    });
    ok && !is_all_zero(v) && !v.iter().all(|&b| b == b'f' || b == sep)
}

/// The Luhn checksum that IMEIs carry in their last digit.
pub fn luhn_ok(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d.wrapping_sub(b'0'));
        if i % 2 == 1 {
            v = v.saturating_mul(2);
            if v > 9 {
                v = v.saturating_sub(9);
            }
        }
        sum = sum.saturating_add(v);
    }
    sum.is_multiple_of(10)
}

/// GSMA reporting-body identifiers: the first two digits of every allocated TAC (type allocation
/// code, the IMEI's first eight digits). `00` is the test range and never on a sold phone.
const TAC_REPORTING_BODIES: &[&[u8; 2]] = &[
    b"01", b"10", b"30", b"33", b"35", b"44", b"45", b"49", b"50", b"51", b"52", b"53", b"54",
    b"86", b"91", b"98", b"99",
];

/// Parameter names (lower case, as parts of a key) whose 15-digit values are not IMEIs even when
/// they pass Luhn: order, payment and transaction numbers.
const NOT_IMEI_KEY_PARTS: &[&str] = &["order", "trade", "txn", "invoice", "payment", "trans"];

/// A run of exactly 15 digits, not part of a longer word, with a valid Luhn digit, not one
/// repeated digit, and a TAC from an allocated reporting body. Luhn alone passes one random
/// 15-digit number in ten (order numbers, timestamps with padding): the prefix rules out most of
/// them, and a value named like an order or transaction number is never an IMEI.
fn standalone_imei(lower: &[u8]) -> bool {
    standalone_imeis(lower).next().is_some()
}

/// Where the standalone IMEIs are: (start, end) of each.
fn standalone_imeis(lower: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < lower.len() {
            if !lower[i].is_ascii_digit() {
                i = i.saturating_add(1);
                continue;
            }
            let start = i;
            while i < lower.len() && lower[i].is_ascii_digit() {
                i = i.saturating_add(1);
            }
            let run = &lower[start..i];
            let beside = |b: &u8| !is_word(*b) && *b != b'.';
            let bounded = start
                .checked_sub(1)
                .and_then(|j| lower.get(j))
                .is_none_or(beside)
                && lower.get(i).is_none_or(beside);
            if run.len() == 15
                && bounded
                && TAC_REPORTING_BODIES
                    .iter()
                    .any(|rb| run.starts_with(&rb[..]))
                && run.iter().any(|&d| d != run[0])
                && luhn_ok(run)
                && !named_as_not_imei(&lower[..start])
            {
                return Some((start, i));
            }
        }
        None
    })
}

/// The text before a value ends with `key=` (or `"key":"`) where the key names an order or
/// transaction number.
fn named_as_not_imei(before: &[u8]) -> bool {
    let tail = &before[before.len().saturating_sub(40)..];
    let key_end = tail
        .iter()
        .rposition(|&b| !matches!(b, b'=' | b':' | b'"' | b'\'' | b' ' | b'>'))
        .map_or(0, |i| i.saturating_add(1));
    if key_end == tail.len() {
        return false; // no separator: not a key's value
    }
    let key_start = tail[..key_end]
        .iter()
        .rposition(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')))
        .map_or(0, |i| i.saturating_add(1));
    let key = &tail[key_start..key_end];
    NOT_IMEI_KEY_PARTS
        .iter()
        .any(|part| memchr::memmem::find(key, part.as_bytes()).is_some())
}

/// A colon-separated MAC address not embedded in a longer hex-and-colon token (IPv6).
fn standalone_mac(lower: &[u8]) -> bool {
    standalone_macs(lower).next().is_some()
}

/// Start offsets of the standalone MAC addresses (17 bytes each).
fn standalone_macs(lower: &[u8]) -> impl Iterator<Item = usize> + '_ {
    (0..=lower.len().saturating_sub(17))
        .filter(move |&start| start.saturating_add(17) <= lower.len())
        .filter(move |&start| {
            let cand = &lower[start..start.saturating_add(17)];
            if cand[2] != b':' || !is_mac(cand) {
                return false;
            }
            let before = start.checked_sub(1).map(|i| lower[i]);
            let after = lower.get(start.saturating_add(17)).copied();
            let embedded = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_hexdigit() || b == b':');
            !embedded(before) && !embedded(after)
        })
}

/// MIUI ("V12.5.3.0.RJOMIXM") and HyperOS ("OS1.0.5.0.UMCEUXM") version strings.
fn miui_version_shape(data: &[u8]) -> bool {
    let mut i = 0;
    while i < data.len() {
        let prefix = if data[i] == b'V' {
            1
        } else if data[i..].starts_with(b"OS") {
            2
        } else {
            i = i.saturating_add(1);
            continue;
        };
        if i.checked_sub(1).is_some_and(|j| is_word(data[j])) {
            i = i.saturating_add(1);
            continue;
        }
        let mut p = i.saturating_add(prefix);
        let mut groups = 0u32;
        loop {
            let digits_start = p;
            while p < data.len() && data[p].is_ascii_digit() && p.saturating_sub(digits_start) < 3 {
                p = p.saturating_add(1);
            }
            if p == digits_start || data.get(p) != Some(&b'.') {
                break;
            }
            groups = groups.saturating_add(1);
            p = p.saturating_add(1);
        }
        if groups == 4 {
            let letters_start = p;
            while p < data.len() && data[p].is_ascii_uppercase() {
                p = p.saturating_add(1);
            }
            let n = p.saturating_sub(letters_start);
            if (5..=9).contains(&n) && data.get(p).is_none_or(|b| !b.is_ascii_alphanumeric()) {
                return true;
            }
        }
        i = i.saturating_add(1);
    }
    false
}

/// Android user agents name the device: "Dalvik/2.1.0 (Linux; U; Android 11; M2101K7BG
/// Build/RKQ1.201022.002)", and WebViews the same way.
fn android_user_agent_model(lower: &[u8]) -> bool {
    memchr::memmem::find_iter(lower, b" build/").any(|at| {
        let before = &lower[at.saturating_sub(80)..at];
        let Some(semi) = before.iter().rposition(|&b| b == b';') else {
            return false;
        };
        let model = before[semi.saturating_add(1)..].trim_ascii();
        let android = memchr::memmem::rfind(&before[..semi], b"android").is_some();
        android && !model.is_empty() && model.iter().all(|&b| b.is_ascii_graphic() || b == b' ')
    })
}

/// `needle` present and not glued to more digits/dots on either side ("10.0.0.2" must not match
/// inside "110.0.0.23").
fn contains_token(hay: &[u8], needle: &Finder<'_>) -> bool {
    token_positions(hay, needle).next().is_some()
}

fn token_positions<'a>(hay: &'a [u8], needle: &'a Finder<'_>) -> impl Iterator<Item = usize> + 'a {
    let glued =
        |b: Option<&u8>| b.is_some_and(|&b| b.is_ascii_hexdigit() || b == b'.' || b == b':');
    let len = needle.needle().len();
    needle.find_iter(hay).filter(move |&i| {
        len > 0
            && !glued(i.checked_sub(1).and_then(|j| hay.get(j)))
            && !glued(hay.get(i.saturating_add(len)))
    })
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn kinds(data: &[u8], ctx: Option<&DeviceContext>) -> Vec<&'static str> {
        let mut found = BTreeSet::new();
        let ctx = ctx.cloned().map(DeviceScan::new);
        scan(data, ctx.as_ref(), &mut found);
        found.into_iter().collect()
    }

    #[test]
    fn keyed_identifiers_in_query_json_and_xml() {
        assert_eq!(
            kinds(b"GET /t?android_id=9774d56d682e549c&x=1 HTTP/1.1", None),
            vec![ANDROID_ID]
        );
        assert_eq!(
            kinds(
                br#"{"oaid":"3f2a9b1c7d4e5f60","gaid":"38400000-8cf0-11bd-b23e-10b96e40000d"}"#,
                None
            ),
            vec![GAID, OAID]
        );
        assert_eq!(kinds(b"<imei>490154203237518</imei>", None), vec![IMEI]);
        assert_eq!(kinds(b"mac=02%3A00", None), Vec::<&str>::new());
        assert_eq!(kinds(b"wifi_mac=a4:c3:f0:85:ac:2d", None), vec![MAC]);
        assert_eq!(
            kinds(b"device_model=Redmi+Note+9S&miui_version=V12.5.3.0", None),
            vec![MIUI_VERSION, MODEL]
        );
    }

    #[test]
    fn wrong_shapes_and_missing_context_do_not_count() {
        // 16 hex digits without an Android-ID key; a zeroed advertising ID (opted out).
        assert!(kinds(b"session=9774d56d682e549c", None).is_empty());
        assert!(kinds(b"gaid=00000000-0000-0000-0000-000000000000", None).is_empty());
        // Key inside a longer word.
        assert!(kinds(b"myandroid_id=9774d56d682e549c", None).is_empty());
        // IMEI-shaped but the Luhn digit is wrong; 16 digits; a timestamp.
        assert!(
            kinds(
                b"n=490154203237519 m=4901542032375180 t=1732170000000",
                None
            )
            .is_empty()
        );
        // IPv6 address is not a MAC.
        assert!(kinds(b"addr fe80::a4:c3:f0:85:ac:2d:1", None).is_empty());
    }

    #[test]
    fn standalone_imei_and_mac_and_version() {
        assert_eq!(kinds(b"id: 490154203237518;", None), vec![IMEI]);
        assert_eq!(kinds(b"bt A4:C3:F0:85:AC:2D end", None), vec![MAC]);
        assert_eq!(kinds(b"ver OS1.0.5.0.UMCEUXM;", None), vec![MIUI_VERSION]);
        assert_eq!(kinds(b"rom=V14.0.3.0.TKHEUXM", None), vec![MIUI_VERSION]);
        assert!(kinds(b"V1.2.3.4.AB", None).is_empty());
        let ua =
            b"User-Agent: Dalvik/2.1.0 (Linux; U; Android 11; M2101K7BG Build/RKQ1.201022.002)\r\n";
        assert_eq!(kinds(ua, None), vec![MODEL]);
        assert!(kinds(b"User-Agent: okhttp/4.9.0 (Linux; x86_64; Build/abc)", None).is_empty());
    }

    #[test]
    fn context_model_version_and_own_ip() {
        let ctx = DeviceContext {
            own_ips: vec!["10.23.4.5".parse().unwrap(), "2001:db8::7".parse().unwrap()],
            model: Some("Redmi Note 9S".into()),
            os_version: Some("V12.5.1.0.RJWEUXM".into()),
        };
        assert_eq!(
            kinds(b"ua=Redmi%20Note%209S&ip=10.23.4.5", Some(&ctx)),
            vec![MODEL, OWN_IP]
        );
        assert!(kinds(b"ip=110.23.4.55", Some(&ctx)).is_empty());
        assert_eq!(kinds(b"src 2001:db8::7 ", Some(&ctx)), vec![OWN_IP]);
        assert_eq!(kinds(b"m=REDMI+NOTE+9S", Some(&ctx)), vec![MODEL]);
        assert_eq!(
            kinds(b"rom=v12.5.1.0.rjweuxm", Some(&ctx)),
            vec![MIUI_VERSION]
        );
        // Loopback and unspecified addresses are everyone's, not the phone's.
        let local = DeviceContext {
            own_ips: vec!["127.0.0.1".parse().unwrap(), "0.0.0.0".parse().unwrap()],
            ..DeviceContext::default()
        };
        assert!(kinds(b"host=127.0.0.1&bind=0.0.0.0", Some(&local)).is_empty());
    }

    #[test]
    fn imei_needs_a_tac_or_a_key_and_order_numbers_are_not_imeis() {
        // 123456789012347 passes Luhn but 12 is no reporting body: not an IMEI on its own...
        assert!(luhn_ok(b"123456789012347"));
        assert!(kinds(b"ref 123456789012347 end", None).is_empty());
        assert!(kinds(b"order_id=123456789012347", None).is_empty());
        // ...but announced by an IMEI key it is one.
        assert_eq!(kinds(b"deviceId=123456789012347", None), vec![IMEI]);
        assert_eq!(kinds(b"imei=123456789012347", None), vec![IMEI]);
        // A plausible TAC (35: BABT) named as an order or transaction number is not an IMEI.
        assert!(luhn_ok(b"351234567890124"));
        assert_eq!(kinds(b"x 351234567890124 y", None), vec![IMEI]);
        assert!(kinds(b"orderNo=351234567890124", None).is_empty());
        assert!(kinds(br#"{"trade_no":"351234567890124"}"#, None).is_empty());
        // The test range 00 never.
        assert!(luhn_ok(b"001234567890128"));
        assert!(kinds(b"x 001234567890128 y", None).is_empty());
    }

    #[test]
    fn redaction_replaces_identifier_values_by_their_kind() {
        let ctx = DeviceContext {
            own_ips: vec!["10.23.4.5".parse().unwrap()],
            ..DeviceContext::default()
        };
        let path = "/v1/config?gaid=38400000-8CF0-11BD-B23E-10B96E40000D&android_id=9774d56d682e549c\
                    &imei=490154203237518&mac=a4:c3:f0:85:ac:2d&ip=10.23.4.5&model=M2101K7BG&n=7";
        assert_eq!(
            redact(path, Some(&DeviceScan::new(ctx))),
            "/v1/config?gaid=<advertising-id>&android_id=<android-id>&imei=<imei>&mac=<mac>\
             &ip=<own-ip>&model=M2101K7BG&n=7"
        );
        // Standalone values too; nothing else changes.
        assert_eq!(
            redact("/u/490154203237518/A4:C3:F0:85:AC:2D/x", None),
            "/u/<imei>/<mac>/x"
        );
        assert_eq!(redact("/plain?page=2", None), "/plain?page=2");
    }

    #[test]
    fn luhn() {
        assert!(luhn_ok(b"490154203237518"));
        assert!(!luhn_ok(b"490154203237517"));
    }
}
