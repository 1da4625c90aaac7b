//! The max-register, and an order's status as one.
//!
//! Lattice: join is `max` over a total order — commutative, associative,
//! idempotent. Order status is a max-register over
//! `placed < paid < cancelled < shipped < delivered`, so a ship concurrent
//! with a cancel wins. Which moves a client may *ask for* is a separate,
//! stricter rule ([`OrderStatus::check_move`]) that the API enforces.

use serde::{Deserialize, Serialize};

/// A register whose value only grows.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct MaxReg<T>(pub T);

impl<T: Ord + Clone> MaxReg<T> {
    /// The lattice join.
    pub fn join(&mut self, other: &Self) {
        if other.0 > self.0 {
            self.0 = other.0.clone();
        }
    }
}

/// Where an order is in its life. The declaration order is the lattice order.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum OrderStatus {
    /// Checked out; stock taken from the selling node's rights.
    #[default]
    Placed,
    /// Paid.
    Paid,
    /// Cancelled; the seller returns the units when it applies the cancel.
    Cancelled,
    /// Shipped by the selling node.
    Shipped,
    /// Delivered.
    Delivered,
}

/// A status move a client may not make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an order cannot move from {from} to {to}")]
pub struct IllegalMove {
    /// The order's status now.
    pub from: OrderStatus,
    /// The status asked for.
    pub to: OrderStatus,
}

impl OrderStatus {
    /// The lowercase name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Placed => "placed",
            OrderStatus::Paid => "paid",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
        }
    }

    /// Whether a client may move an order from `self` to `to`:
    /// placed → paid, placed | paid → cancelled, paid → shipped,
    /// shipped → delivered. Asking for the status the order already has is
    /// accepted as a no-op by the caller, not here.
    pub fn check_move(self, to: OrderStatus) -> Result<(), IllegalMove> {
        use OrderStatus::*;
        let ok = matches!(
            (self, to),
            (Placed, Paid)
                | (Placed, Cancelled)
                | (Paid, Cancelled)
                | (Paid, Shipped)
                | (Shipped, Delivered)
        );
        if ok {
            Ok(())
        } else {
            Err(IllegalMove { from: self, to })
        }
    }

    /// Whether the order's units count as sold (everything but cancelled).
    pub fn is_live(self) -> bool {
        self != OrderStatus::Cancelled
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::*;
    use super::*;

    #[test]
    fn ship_beats_a_concurrent_cancel() {
        let mut a = MaxReg(Cancelled);
        a.join(&MaxReg(Shipped));
        assert_eq!(a.0, Shipped);
    }

    #[test]
    fn legal_moves() {
        assert!(Placed.check_move(Paid).is_ok());
        assert!(Paid.check_move(Shipped).is_ok());
        assert!(Placed.check_move(Shipped).is_err());
        assert!(Shipped.check_move(Cancelled).is_err());
        assert!(Cancelled.check_move(Shipped).is_err());
        assert!(Delivered.check_move(Placed).is_err());
    }
}
