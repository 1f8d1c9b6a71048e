//! The before/after "data sharing off" experiment: the guided steps (shown alike by the app
//! and the CLI), window specifications, and the comparison of two windows.
//!
//! Window syntax (CLI `--compare A..B`, app): `N` is session N; `before:M` is marker M's
//! session up to M; `after:M` is from M to the session's end; `span:M1:M2` is from marker M1 to
//! marker M2; `all` is everything. `marker:M` alone means `before:M..after:M`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::read::{Reader, Window};
use super::views::Totals;
use super::{StoreError, schema};
use crate::flow::Millis;

/// Which part of the experiment a step belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepGroup {
    /// The switches Xiaomi's own statements call "data sharing": turn these off first.
    DataSharingOff,
    /// Further switches, for a second "off" marker.
    Further,
}

/// One setting to switch off, in the words the app and the CLI both show.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct GuidedStep {
    pub number: u8,
    pub group: StepGroup,
    pub title: &'static str,
    /// Terms to type into the Settings search box (labels move between MIUI and HyperOS).
    pub search: &'static [&'static str],
    /// Where it usually is (MIUI 12-14 Global unless said otherwise).
    pub path: &'static str,
    pub note: &'static str,
}

/// How to run the experiment, before the steps.
pub const EXPERIMENT_INTRO: &str = "Record a baseline with every setting as it is and use the \
phone normally for a while (unlock it, open the MIUI apps). Then switch off steps 1-4 and add a \
marker (\"data sharing off\"); keep using the phone the same way. Optionally switch off steps \
5-12 and add a second marker. The comparison then shows, per app and per endpoint, what kept \
phoning home after each marker. Labels differ between MIUI and HyperOS versions and regions: \
search Settings for the quoted terms.";

pub const GUIDED_STEPS: &[GuidedStep] = &[
    GuidedStep {
        number: 1,
        group: StepGroup::DataSharingOff,
        title: "User Experience Program off",
        search: &["User Experience Program", "Join User Experience Program"],
        path: "Settings > Passwords & security > Privacy (older builds: Additional settings > Privacy)",
        note: "Xiaomi's statistics SDK checks this switch before uploading usage data.",
    },
    GuidedStep {
        number: 2,
        group: StepGroup::DataSharingOff,
        title: "Automatic diagnostic data off",
        search: &["Send diagnostic data automatically"],
        path: "Settings > Passwords & security > Privacy",
        note: "Stops automatic upload of diagnostic reports.",
    },
    GuidedStep {
        number: 3,
        group: StepGroup::DataSharingOff,
        title: "Personalised ads off",
        search: &["Personalized ad recommendations", "Ad services"],
        path: "Settings > Passwords & security > Privacy > Ad services (HyperOS: Fingerprints, face \
               data & screen lock > Privacy > Ad services, or Privacy protection)",
        note: "Ads may still be fetched; they are no longer profiled.",
    },
    GuidedStep {
        number: 4,
        group: StepGroup::DataSharingOff,
        title: "Revoke the MSA system ad service",
        search: &["Authorization & revocation", "msa"],
        path: "Settings > Passwords & security > Authorization & revocation > msa",
        note: "Revoking can fail the first times; retry until the switch stays off.",
    },
    GuidedStep {
        number: 5,
        group: StepGroup::Further,
        title: "Setup-wizard extras off",
        search: &["Additional settings"],
        path: "During first setup after a reset: the extra settings page",
        note: "Leaving location, experience program, diagnostics, ads and Glance off at setup gives \
               the cleanest baseline.",
    },
    GuidedStep {
        number: 6,
        group: StepGroup::Further,
        title: "Per-app recommendations off",
        search: &["Receive recommendations", "Recommendations"],
        path: "Settings of Security, Cleaner, File Manager, Music, Mi Video, Downloads, Themes, \
               GetApps, Mi Browser, the launcher and App Vault",
        note: "There is no single global switch; each app has its own.",
    },
    GuidedStep {
        number: 7,
        group: StepGroup::Further,
        title: "Promoted apps in launcher folders off",
        search: &["Promoted apps"],
        path: "Home screen: open each folder, tap its name",
        note: "With it on, the list of apps in the folder was sent to the app store.",
    },
    GuidedStep {
        number: 8,
        group: StepGroup::Further,
        title: "Mi Browser statistics",
        search: &["Incognito mode", "Enhanced incognito mode"],
        path: "Mi Browser / Mint Browser > Settings > Privacy & security",
        note: "Incognito on with Enhanced incognito off was the one combination found to stop the \
               statistics; also turn off the news feed and personalised services.",
    },
    GuidedStep {
        number: 9,
        group: StepGroup::Further,
        title: "Mi Account and Xiaomi Cloud sync",
        search: &["Xiaomi Cloud", "Find device"],
        path: "Settings > Mi Account > Xiaomi Cloud",
        note: "Turn off the sync switches and Find device; signing out removes most account and \
               cloud traffic.",
    },
    GuidedStep {
        number: 10,
        group: StepGroup::Further,
        title: "Location",
        search: &["Location"],
        path: "Settings > Location (or deny location to Weather)",
        note: "Also check Xiaomi's network-location provider.",
    },
    GuidedStep {
        number: 11,
        group: StepGroup::Further,
        title: "Security app cloud scanning off",
        search: &["Scan before installing", "Cloud scan"],
        path: "Security app > Settings",
        note: "Stops the antivirus cloud lookups and definition updates.",
    },
    GuidedStep {
        number: 12,
        group: StepGroup::Further,
        title: "Lock-screen wallpaper carousel / Glance off",
        search: &["Wallpaper Carousel", "Glance"],
        path: "Settings > Lock screen (region-dependent)",
        note: "",
    },
];

/// A window as the user names it; see the module docs for the syntax.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum WindowSpec {
    All,
    Session { id: i64 },
    Before { marker: i64 },
    After { marker: i64 },
    Span { from_marker: i64, to_marker: i64 },
}

/// The help text of the syntax, shared by `--help` and error messages.
pub const WINDOW_SYNTAX: &str = "N (session N), before:M, after:M (marker M's session before/after \
marker M), span:M1:M2 (from marker M1 to marker M2), all; `marker:M` alone = before:M..after:M";

impl WindowSpec {
    pub fn parse(text: &str) -> Result<WindowSpec, String> {
        let t = text.trim();
        // Markers print as "m12"; accept that spelling too.
        let id = |s: &str| -> Result<i64, String> {
            s.trim_start_matches('m')
                .parse::<i64>()
                .map_err(|_| format!("`{s}` in `{text}` is not a number; expected {WINDOW_SYNTAX}"))
        };
        if t == "all" {
            return Ok(WindowSpec::All);
        }
        if let Some(m) = t.strip_prefix("before:") {
            return Ok(WindowSpec::Before { marker: id(m)? });
        }
        if let Some(m) = t.strip_prefix("after:") {
            return Ok(WindowSpec::After { marker: id(m)? });
        }
        if let Some(rest) = t.strip_prefix("span:") {
            let (a, b) = rest
                .split_once(':')
                .ok_or_else(|| format!("`{text}`: span needs two markers, e.g. span:3:5"))?;
            return Ok(WindowSpec::Span {
                from_marker: id(a)?,
                to_marker: id(b)?,
            });
        }
        if t.chars().all(|c| c.is_ascii_digit()) && !t.is_empty() {
            return Ok(WindowSpec::Session { id: id(t)? });
        }
        Err(format!(
            "`{text}` is not a window; expected {WINDOW_SYNTAX}"
        ))
    }

    /// `A..B`, or `marker:M` for `before:M..after:M`.
    pub fn parse_pair(text: &str) -> Result<(WindowSpec, WindowSpec), String> {
        if let Some(m) = text.trim().strip_prefix("marker:") {
            let marker = m
                .trim_start_matches('m')
                .parse::<i64>()
                .map_err(|_| format!("`{text}`: marker:M needs a marker number"))?;
            return Ok((WindowSpec::Before { marker }, WindowSpec::After { marker }));
        }
        let (a, b) = text.split_once("..").ok_or_else(|| {
            format!("`{text}` is not a comparison; expected A..B with A and B each {WINDOW_SYNTAX}")
        })?;
        Ok((WindowSpec::parse(a)?, WindowSpec::parse(b)?))
    }
}

/// A resolved window with its bounds and totals.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    pub label: String,
    pub window: Window,
    /// The window's real bounds: its markers, else its session's start and end (the capture's
    /// own times for an analysed file; now for a running capture).
    pub start: Option<Millis>,
    pub end: Option<Millis>,
    /// `end - start`, ms: what every per-hour rate of this window divides by.
    pub duration_ms: i64,
    /// False when the window is shorter than [`MIN_WINDOW_MS`]: its rates are not given.
    pub meaningful: bool,
    pub totals: Totals,
}

/// A window shorter than this (10 minutes) gives no rates: extrapolating a few minutes to an
/// hour would invent numbers.
pub const MIN_WINDOW_MS: i64 = 10 * 60_000;

impl WindowStats {
    /// The window's length in hours, or None when it is too short for a rate.
    fn hours(&self) -> Option<f64> {
        self.meaningful
            .then_some(self.duration_ms as f64 / 3_600_000.0)
    }
}

/// Contacts (non-DNS flows) and bytes in one window, with the rate per hour of window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Connections (non-DNS flows).
    pub contacts: i64,
    pub bytes_up: i64,
    pub bytes_down: i64,
    /// `contacts` divided by the window's real length; None when the window is shorter than
    /// 10 minutes.
    pub contacts_per_hour: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AppChange {
    pub app: String,
    pub before: Counts,
    pub after: Counts,
    pub xiaomi_contacts_before: i64,
    pub xiaomi_contacts_after: i64,
    pub categories_before: Vec<String>,
    pub categories_after: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointChange {
    pub endpoint: String,
    pub vendor: Option<String>,
    pub category: Option<String>,
    pub purpose: Option<String>,
    pub before: Counts,
    pub after: Counts,
    pub apps_after: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CategoryChange {
    pub category: String,
    pub before: Counts,
    pub after: Counts,
}

/// A Xiaomi endpoint still contacted in the "after" window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StillPhoningHome {
    pub endpoint: String,
    pub category: Option<String>,
    pub purpose: Option<String>,
    pub apps: Vec<String>,
    pub contacts_after: i64,
    pub bytes_after: i64,
    pub last_contact: Millis,
    /// Also contacted before: the switch did not stop it.
    pub seen_before: bool,
}

/// The before/after comparison the core owns; the app and the report only render it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub before: WindowStats,
    pub after: WindowStats,
    /// Set when either window is shorter than 10 minutes: the comparison is not meaningful yet.
    pub note: Option<String>,
    /// Every app seen in either window, most "after" Xiaomi contacts first.
    pub apps: Vec<AppChange>,
    /// Every Xiaomi endpoint, plus the other endpoints, most "after" contacts first.
    pub endpoints: Vec<EndpointChange>,
    /// Xiaomi categories.
    pub categories: Vec<CategoryChange>,
    pub still_phoning_home: Vec<StillPhoningHome>,
    /// Apps that contacted a Xiaomi endpoint in the "after" window.
    pub apps_still_phoning_home: Vec<String>,
    /// Xiaomi endpoints contacted before and not after.
    pub stopped: Vec<String>,
}

fn counts(contacts: i64, up: i64, down: i64, hours: Option<f64>) -> Counts {
    Counts {
        contacts,
        bytes_up: up,
        bytes_down: down,
        contacts_per_hour: hours.map(|h| (contacts as f64 / h * 10.0).round() / 10.0),
    }
}

/// "4.5 min" for a window length.
fn minutes(ms: i64) -> String {
    format!("{:.1} min", ms as f64 / 60_000.0)
}

impl Reader {
    /// Turns a [`WindowSpec`] into a [`Window`] and a label.
    pub fn resolve(&self, spec: &WindowSpec) -> Result<(Window, String), StoreError> {
        let marker = |id: i64| {
            self.marker(id)?
                .ok_or_else(|| schema::other(&self.path, format!("has no marker {id}")))
        };
        Ok(match spec {
            WindowSpec::All => (Window::all(), "all history".into()),
            WindowSpec::Session { id } => {
                if self.session(*id)?.is_none() {
                    return Err(schema::other(&self.path, format!("has no session {id}")));
                }
                (Window::session(*id), format!("session {id}"))
            }
            WindowSpec::Before { marker: id } => {
                let m = marker(*id)?;
                let w = Window {
                    session: Some(m.session),
                    from: None,
                    to: Some(m.time),
                };
                (w, format!("session {} before \"{}\"", m.session, m.label))
            }
            WindowSpec::After { marker: id } => {
                let m = marker(*id)?;
                let w = Window {
                    session: Some(m.session),
                    from: Some(m.time),
                    to: None,
                };
                (w, format!("session {} after \"{}\"", m.session, m.label))
            }
            WindowSpec::Span {
                from_marker,
                to_marker,
            } => {
                let a = marker(*from_marker)?;
                let b = marker(*to_marker)?;
                if a.session != b.session {
                    return Err(schema::other(
                        &self.path,
                        format!("markers {from_marker} and {to_marker} are in different sessions"),
                    ));
                }
                if b.time < a.time {
                    return Err(schema::other(
                        &self.path,
                        format!("marker {to_marker} comes before marker {from_marker}"),
                    ));
                }
                let w = Window {
                    session: Some(a.session),
                    from: Some(a.time),
                    to: Some(b.time),
                };
                (
                    w,
                    format!(
                        "session {} from \"{}\" to \"{}\"",
                        a.session, a.label, b.label
                    ),
                )
            }
        })
    }

    pub fn compare_specs(
        &self,
        before: &WindowSpec,
        after: &WindowSpec,
    ) -> Result<Comparison, StoreError> {
        let (b, b_label) = self.resolve(before)?;
        let (a, a_label) = self.resolve(after)?;
        let mut c = self.compare(&b, &a)?;
        c.before.label = b_label;
        c.after.label = a_label;
        Ok(c)
    }

    fn window_stats(&self, window: &Window) -> Result<WindowStats, StoreError> {
        let totals = self.totals(window)?;
        let session = match window.session {
            Some(id) => self.session(id)?,
            None => None,
        };
        // An analysed file's session row holds the time of the analysis; its flows hold the
        // capture's own times (as do imported or synthetic sessions whose flows precede it).
        let (session_start, session_end) = match &session {
            Some(s) if s.kind == "analyze" || s.first_flow.is_some_and(|f| f < s.started) => {
                (s.first_flow, s.last_flow)
            }
            Some(s) => (
                Some(s.started),
                s.ended.or(if s.running {
                    Some(super::now_ms())
                } else {
                    s.last_flow
                }),
            ),
            None => (totals.first_contact, totals.last_contact),
        };
        let start = window.from.or(session_start);
        let end = window.to.or(session_end);
        let duration_ms = match (start, end) {
            (Some(s), Some(e)) if e > s => e - s,
            _ => 0,
        };
        Ok(WindowStats {
            label: String::new(),
            window: window.clone(),
            start,
            end,
            duration_ms,
            meaningful: duration_ms >= MIN_WINDOW_MS,
            totals,
        })
    }

    /// Compares two windows per app, per endpoint and per Xiaomi category, and lists what
    /// kept phoning home in `after`.
    pub fn compare(&self, before: &Window, after: &Window) -> Result<Comparison, StoreError> {
        let b_stats = self.window_stats(before)?;
        let a_stats = self.window_stats(after)?;
        let (bh, ah) = (b_stats.hours(), a_stats.hours());

        let mut apps: BTreeMap<String, AppChange> = BTreeMap::new();
        for (row, is_after) in self
            .per_app(before)?
            .into_iter()
            .map(|r| (r, false))
            .chain(self.per_app(after)?.into_iter().map(|r| (r, true)))
        {
            let entry = apps.entry(row.app.clone()).or_insert_with(|| AppChange {
                app: row.app.clone(),
                ..AppChange::default()
            });
            if is_after {
                entry.after = counts(row.contacts, row.bytes_up, row.bytes_down, ah);
                entry.xiaomi_contacts_after = row.xiaomi_contacts;
                entry.categories_after = row.categories;
            } else {
                entry.before = counts(row.contacts, row.bytes_up, row.bytes_down, bh);
                entry.xiaomi_contacts_before = row.xiaomi_contacts;
                entry.categories_before = row.categories;
            }
        }

        let mut endpoints: BTreeMap<String, EndpointChange> = BTreeMap::new();
        let mut still: Vec<StillPhoningHome> = Vec::new();
        let before_domains = self.per_domain(before, None)?;
        for row in &before_domains {
            let e = endpoints.entry(row.domain.clone()).or_default();
            e.endpoint = row.domain.clone();
            e.vendor = row.vendor.clone();
            e.category = row.category.clone();
            e.purpose = row.purpose.clone();
            e.before = counts(row.contacts, row.bytes_up, row.bytes_down, bh);
        }
        for row in self.per_domain(after, None)? {
            let e = endpoints.entry(row.domain.clone()).or_default();
            let seen_before = e.before.contacts > 0;
            e.endpoint = row.domain.clone();
            e.vendor = row.vendor.clone();
            e.category = row.category.clone();
            e.purpose = row.purpose.clone();
            e.after = counts(row.contacts, row.bytes_up, row.bytes_down, ah);
            e.apps_after = row.apps.clone();
            if row.vendor.as_deref() == Some("xiaomi") {
                still.push(StillPhoningHome {
                    endpoint: row.domain,
                    category: row.category,
                    purpose: row.purpose,
                    apps: row.apps,
                    contacts_after: row.contacts,
                    bytes_after: row.bytes_up + row.bytes_down,
                    last_contact: row.last_contact,
                    seen_before,
                });
            }
        }
        still.sort_by(|a, b| {
            b.contacts_after
                .cmp(&a.contacts_after)
                .then_with(|| a.endpoint.cmp(&b.endpoint))
        });
        let stopped: Vec<String> = endpoints
            .values()
            .filter(|e| {
                e.vendor.as_deref() == Some("xiaomi")
                    && e.before.contacts > 0
                    && e.after.contacts == 0
            })
            .map(|e| e.endpoint.clone())
            .collect();

        let mut categories: BTreeMap<String, CategoryChange> = BTreeMap::new();
        for row in self.per_category(before)? {
            let c = categories.entry(row.category.clone()).or_default();
            c.category = row.category;
            c.before = counts(row.contacts, row.bytes_up, row.bytes_down, bh);
        }
        for row in self.per_category(after)? {
            let c = categories.entry(row.category.clone()).or_default();
            c.category = row.category;
            c.after = counts(row.contacts, row.bytes_up, row.bytes_down, ah);
        }

        let mut apps: Vec<AppChange> = apps.into_values().collect();
        apps.sort_by(|a, b| {
            b.xiaomi_contacts_after
                .cmp(&a.xiaomi_contacts_after)
                .then(b.after.contacts.cmp(&a.after.contacts))
                .then_with(|| a.app.cmp(&b.app))
        });
        let apps_still_phoning_home = apps
            .iter()
            .filter(|a| a.xiaomi_contacts_after > 0)
            .map(|a| a.app.clone())
            .collect();
        let mut endpoints: Vec<EndpointChange> = endpoints.into_values().collect();
        endpoints.sort_by(|a, b| {
            let xa = a.vendor.as_deref() == Some("xiaomi");
            let xb = b.vendor.as_deref() == Some("xiaomi");
            xb.cmp(&xa)
                .then(b.after.contacts.cmp(&a.after.contacts))
                .then_with(|| a.endpoint.cmp(&b.endpoint))
        });
        let mut categories: Vec<CategoryChange> = categories.into_values().collect();
        categories.sort_by(|a, b| {
            b.after
                .contacts
                .cmp(&a.after.contacts)
                .then(b.before.contacts.cmp(&a.before.contacts))
        });

        let note = (!b_stats.meaningful || !a_stats.meaningful).then(|| {
            format!(
                "The comparison is not meaningful yet: a window is shorter than 10 minutes \
                 (before {}, after {}). Keep recording; no per-hour rates are given.",
                minutes(b_stats.duration_ms),
                minutes(a_stats.duration_ms)
            )
        });
        Ok(Comparison {
            before: b_stats,
            after: a_stats,
            note,
            apps,
            endpoints,
            categories,
            still_phoning_home: still,
            apps_still_phoning_home,
            stopped,
        })
    }
}
