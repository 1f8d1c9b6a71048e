//! The device context of a recording: what the cleartext identifier scan looks for.

use std::net::IpAddr;

use crate::dissect::DeviceContext;

/// What the driver knows of the device; empty text means unknown.
#[derive(Clone, Debug, Default)]
pub struct BuildFacts {
    /// The device's own addresses (the tunnel's, and the networks' where known).
    pub own_ips: Vec<IpAddr>,
    /// `Build.MODEL`.
    pub model: String,
    /// `Build.MANUFACTURER`.
    pub manufacturer: String,
    /// `Build.VERSION.INCREMENTAL`.
    pub build_incremental: String,
}

/// The addresses, the model, and the MIUI/HyperOS version. `Build.VERSION.INCREMENTAL` is taken
/// as that version on a Xiaomi-made phone or when it has the ROM version's shape
/// ("V14.0.3.0.TKHEUXM", "OS1.0.5.0.UMCEUXM"); elsewhere it is a build number that says nothing
/// about the ROM, and looking for it would flag unrelated digits.
pub fn device_context(facts: BuildFacts) -> DeviceContext {
    let xiaomi = ["xiaomi", "redmi", "poco"]
        .contains(&facts.manufacturer.trim().to_ascii_lowercase().as_str());
    let incremental = facts.build_incremental.trim();
    let rom_shaped = |prefix: &str| {
        incremental
            .strip_prefix(prefix)
            .and_then(|rest| rest.chars().next())
            .is_some_and(|c| c.is_ascii_digit())
    };
    let os_version = (!incremental.is_empty() && (xiaomi || rom_shaped("V") || rom_shaped("OS")))
        .then(|| incremental.to_string());
    let model = facts.model.trim();
    DeviceContext {
        own_ips: facts.own_ips,
        model: (!model.is_empty()).then(|| model.to_string()),
        os_version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(manufacturer: &str, incremental: &str) -> BuildFacts {
        BuildFacts {
            manufacturer: manufacturer.into(),
            build_incremental: incremental.into(),
            ..BuildFacts::default()
        }
    }

    #[test]
    fn the_rom_version_only_where_it_is_one() {
        let os = |m, i| device_context(facts(m, i)).os_version;
        assert_eq!(
            os("Xiaomi", "OS1.0.5.0.UMCEUXM").as_deref(),
            Some("OS1.0.5.0.UMCEUXM")
        );
        // A Xiaomi-made phone's build number is its ROM version, whatever its shape.
        assert_eq!(os(" Redmi ", "1234").as_deref(), Some("1234"));
        // Another maker's build number is not; a MIUI-shaped one (a custom ROM) is.
        assert_eq!(os("Google", "11583682"), None);
        assert_eq!(os("Google", "Vendor"), None);
        assert_eq!(
            os("Google", "V14.0.3.0.TKHEUXM").as_deref(),
            Some("V14.0.3.0.TKHEUXM")
        );
        assert_eq!(os("Xiaomi", "  "), None);
    }

    #[test]
    fn nothing_known_nothing_looked_for() {
        assert_eq!(
            device_context(BuildFacts::default()),
            DeviceContext::default()
        );
        let own_ips = vec!["10.215.173.1".parse().unwrap()];
        let d = device_context(BuildFacts {
            own_ips: own_ips.clone(),
            model: " 23013RK75C ".into(),
            ..BuildFacts::default()
        });
        assert_eq!(d.own_ips, own_ips);
        assert_eq!(d.model.as_deref(), Some("23013RK75C"));
    }
}
