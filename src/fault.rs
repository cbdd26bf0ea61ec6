//! Failures on purpose, for the tests of containment and of the quarantine only.
//!
//! Compiled in only with the cargo feature `fault-injection`, which no shipped build enables
//! (`scripts/build-release` names its features) and which refuses to compile with
//! optimisations: a release binary cannot carry it, whatever features it was built with.
//! Without the feature, [`inject`] is an empty function and nothing a device sends reaches
//! any of this.
//!
//! With it, a Status whose `version` is `"inject:<what>@<where>"` fails on purpose:
//! `<what>` is `panic` or `abort` (the process dies at once, as on a hard crash), `<where>`
//! is `registry` (while the message is parsed and routed), `device` (in the device's task,
//! after its services are on D-Bus, before the reply) or `restore` (in the device's task,
//! only when the Status is restored from the state file: it works live, then fails at the
//! next start).

#[cfg(all(feature = "fault-injection", not(debug_assertions)))]
compile_error!(
    "the `fault-injection` feature is for tests only and must not be built with optimisations"
);

/// Where a failure may be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The registry, handling a message from the broker.
    Registry,
    /// A device's task, handling an announcement.
    Device,
    /// A device's task, handling an announcement restored from the state file.
    Restore,
}

/// Fails as the Status `version` asks (feature `fault-injection` only).
#[cfg(feature = "fault-injection")]
#[allow(clippy::panic)]
pub fn inject(stage: Stage, version: Option<&serde_json::Value>) {
    let Some(spec) = version
        .and_then(|v| v.as_str())
        .and_then(|v| v.strip_prefix("inject:"))
    else {
        return;
    };
    let Some((what, at)) = spec.split_once('@') else {
        return;
    };
    let here = match stage {
        Stage::Registry => "registry",
        Stage::Device => "device",
        Stage::Restore => "restore",
    };
    if at != here {
        return;
    }
    match what {
        "panic" => panic!("fault injected at {here}"),
        "abort" => std::process::abort(),
        _ => {}
    }
}

/// Does nothing: this build has no fault injection.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn inject(_stage: Stage, _version: Option<&serde_json::Value>) {}
