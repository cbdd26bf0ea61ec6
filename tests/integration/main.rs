//! Integration tests: one binary, a module per feature, each test on its own private
//! dbus-daemon (see `support`).

mod busitem;
mod settings;
mod support;
