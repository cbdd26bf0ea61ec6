//! Which device input a message belongs to, and the subscriptions that
//! bring them: one per distinct topic filter, however many devices and
//! sources use it. Built from the declarations; a message is matched
//! against every filter (not against the subscription that delivered it),
//! so overlapping filters cannot lose or misdirect a message.

use std::collections::{BTreeSet, HashMap};

use super::declaration::{Declaration, MappedId};
use super::topic::TopicFilter;

/// One input of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub device: MappedId,
    pub input: Input,
}

/// An input of a device, by its index in the declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// `declaration.sources[i]`.
    Source(usize),
    /// `declaration.availability[i]`.
    Availability(usize),
}

/// The routing table of all mapped devices.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// Filters without wildcards, by topic: a hash lookup per message.
    exact: HashMap<String, Vec<Route>>,
    /// Filters with wildcards, matched one by one.
    wildcard: Vec<(TopicFilter, Route)>,
    filters: BTreeSet<TopicFilter>,
}

impl Routes {
    /// The routes of these declarations.
    pub fn new<'a>(declarations: impl IntoIterator<Item = &'a Declaration>) -> Routes {
        let mut routes = Routes::default();
        for d in declarations {
            let sources = d
                .sources
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.topic.as_ref().map(|t| (t, Input::Source(i))));
            let availability = d
                .availability
                .iter()
                .enumerate()
                .map(|(i, a)| (&a.topic, Input::Availability(i)));
            for (filter, input) in sources.chain(availability) {
                let route = Route {
                    device: d.id.clone(),
                    input,
                };
                routes.filters.insert(filter.clone());
                if filter.has_wildcard() {
                    routes.wildcard.push((filter.clone(), route));
                } else {
                    routes
                        .exact
                        .entry(filter.as_str().to_string())
                        .or_default()
                        .push(route);
                }
            }
        }
        routes
    }

    /// The subscriptions: every distinct filter once.
    pub fn filters(&self) -> impl Iterator<Item = &TopicFilter> {
        self.filters.iter()
    }

    /// Every device input a message on `topic` is for.
    pub fn route<'a>(&'a self, topic: &str) -> impl Iterator<Item = &'a Route> + 'a {
        let exact = self.exact.get(topic).into_iter().flatten();
        let topic = topic.to_string();
        let wild = self
            .wildcard
            .iter()
            .filter(move |(f, _)| f.matches(&topic))
            .map(|(_, r)| r);
        exact.chain(wild)
    }

    /// What changes when the routes become `new`: filters to subscribe and
    /// filters to unsubscribe (a reload keeps the others as they are).
    pub fn diff(&self, new: &Routes) -> (Vec<TopicFilter>, Vec<TopicFilter>) {
        let subscribe = new.filters.difference(&self.filters).cloned().collect();
        let unsubscribe = self.filters.difference(&new.filters).cloned().collect();
        (subscribe, unsubscribe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapped::test_support::load;

    fn declarations(text: &str) -> Vec<Declaration> {
        let loaded = load(text);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        loaded.devices.into_iter().map(|d| d.declaration).collect()
    }

    const TWO_INVERTERS: &str = r#"
[[device]]
id = "hm1"
service = "pvinverter"
preset = "opendtu"
serial = "111"
[[device]]
id = "hm2"
service = "pvinverter"
preset = "opendtu"
serial = "222"
[[device]]
id = "all_power"
service = "acload"
[[device.source]]
topic = "solar/+/0/power"
"/Ac/Power" = "$"
"#;

    #[test]
    fn one_subscription_per_distinct_filter() {
        let d = declarations(TWO_INVERTERS);
        let routes = Routes::new(&d);
        let filters: Vec<&str> = routes.filters().map(|f| f.as_str()).collect();
        // Both inverters' sources and availability, the DTU's status once, the wildcard once.
        assert!(filters.contains(&"solar/dtu/status"));
        assert_eq!(
            filters.iter().filter(|f| **f == "solar/dtu/status").count(),
            1
        );
        assert!(filters.contains(&"solar/+/0/power"));
        assert_eq!(filters.len(), 2 * 7 + 1 + 1, "{filters:?}");
    }

    #[test]
    fn a_message_reaches_every_input_it_matches() {
        let d = declarations(TWO_INVERTERS);
        let routes = Routes::new(&d);
        let to = |topic: &str| {
            routes
                .route(topic)
                .map(|r| format!("{}:{:?}", r.device, r.input))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            to("solar/111/0/power"),
            ["hm1:Source(0)", "all_power:Source(0)"]
        );
        assert_eq!(to("solar/222/status/reachable"), ["hm2:Availability(0)"]);
        assert_eq!(
            to("solar/dtu/status"),
            ["hm1:Availability(1)", "hm2:Availability(1)"]
        );
        assert!(to("solar/333/0/voltage").is_empty());
    }

    #[test]
    fn a_reload_subscribes_and_unsubscribes_only_the_difference() {
        let before = Routes::new(&declarations(TWO_INVERTERS));
        let after_text = TWO_INVERTERS.replace("serial = \"222\"", "serial = \"333\"");
        let after = Routes::new(&declarations(&after_text));
        let (sub, unsub) = before.diff(&after);
        assert_eq!(sub.len(), 7);
        assert!(sub.iter().all(|f| f.as_str().starts_with("solar/333/")));
        assert_eq!(unsub.len(), 7);
        assert!(unsub.iter().all(|f| f.as_str().starts_with("solar/222/")));
    }
}
