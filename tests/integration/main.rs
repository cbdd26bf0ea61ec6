//! Integration tests: one binary, a module per feature, each test on its own private
//! dbus-daemon (see `support`) and, for the daemon, its own mosquitto (see `world`).

mod bad_input;
mod busitem;
mod check_config;
mod cli;
#[cfg(feature = "fault-injection")]
mod containment;
#[cfg(feature = "fault-injection")]
mod crash;
mod example;
mod faults;
mod flaps;
mod generated;
mod leak;
mod mapped;
#[cfg(feature = "sim")]
mod mapped_demo;
mod mapped_lifecycle;
mod operator;
mod operator_mapped;
mod proxy;
mod registration;
mod regression;
mod settings;
#[cfg(feature = "sim")]
mod sim;
mod v3;

mod processes;
mod support;
mod world;

// The input generators and properties of tests/generated, shared.
#[path = "../generated/properties.rs"]
mod properties;
#[allow(dead_code)]
#[path = "../generated/text.rs"]
mod text;
