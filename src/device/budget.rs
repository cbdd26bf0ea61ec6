//! The configured limit of D-Bus services across all devices. A registered service holds a
//! [`ServiceSlot`]; dropping it (service closed, registration failed, or a device task that
//! failed and was torn down by unwinding) gives the slot back, so no path can leak one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts D-Bus services across all devices against the configured limit.
#[derive(Debug)]
pub struct ServiceBudget {
    used: AtomicUsize,
    max: usize,
}

impl ServiceBudget {
    /// A budget of `max` services.
    pub fn new(max: usize) -> ServiceBudget {
        ServiceBudget {
            used: AtomicUsize::new(0),
            max,
        }
    }

    /// A slot for one more service, unless the limit is reached.
    pub fn reserve(self: &Arc<Self>) -> Option<ServiceSlot> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| ServiceSlot {
                budget: self.clone(),
            })
    }

    /// Services registered now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// The configured limit.
    pub fn max(&self) -> usize {
        self.max
    }
}

/// One service's share of the budget, given back on drop.
#[derive(Debug)]
pub struct ServiceSlot {
    budget: Arc<ServiceBudget>,
}

impl Drop for ServiceSlot {
    fn drop(&mut self) {
        let _ = self
            .budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_come_back_when_dropped() {
        let budget = Arc::new(ServiceBudget::new(2));
        let a = budget.reserve().unwrap();
        let b = budget.reserve().unwrap();
        assert!(budget.reserve().is_none());
        drop(a);
        assert_eq!(budget.used(), 1);
        let _c = budget.reserve().unwrap();
        drop(b);
        assert_eq!(budget.used(), 1);
    }
}
