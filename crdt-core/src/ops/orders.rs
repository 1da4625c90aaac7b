//! Planning of the order operations: checkout (selling against this
//! node's rights, all or nothing), status moves (the seller alone ships, and
//! a cancel at the seller returns the units in the same delta), and the
//! seller's return of a cancelled order's units.

use std::collections::BTreeMap;

use super::{
    CheckoutItems, MAX_LINE_QUANTITY, OpError, PlanCtx, delta, live_product, short_of_rights,
};
use crate::counter::BoundedCounter;
use crate::delta::{Delta, Part};
use crate::ids::{Actor, OrderId, ProductId};
use crate::money::Currency;
use crate::order::{Address, OrderEntry, OrderHeader, OrderLine};
use crate::state::{Sku, State};
use crate::status::OrderStatus;

/// Stock parts that give a cancelled order's units back to its seller.
pub(super) fn return_parts(state: &State, seller: Actor, header: &OrderHeader) -> Vec<Part> {
    header
        .units_by_sku()
        .into_iter()
        .map(|(sku, units)| {
            let sku = Sku(sku);
            let mut counter = state.stock.get(&sku).cloned().unwrap_or_default();
            counter.return_units(seller, units);
            Part::Stock {
                sku,
                counter: Box::new(counter),
            }
        })
        .collect()
}

pub(super) fn plan_checkout(
    state: &State,
    ctx: &mut PlanCtx<'_>,
    order: OrderId,
    customer: String,
    items: CheckoutItems,
    shipping: Address,
    email: Option<String>,
) -> Result<Delta, OpError> {
    // One sale per seller: a node that holds the id (its own sale, or one a
    // peer made under the same idempotency key) never sells it again.
    if state.orders.get(&order).is_some() {
        return Err(OpError::OrderExists(order));
    }
    let mut covers = Vec::new();
    let mut parts = Vec::new();
    let mut cart_id = None;
    let wanted: Vec<(ProductId, u32)> = match items {
        CheckoutItems::Lines(lines) => lines,
        CheckoutItems::Cart(cart) => {
            let entry = state.carts.get(&cart);
            if let Some(owner) = entry.and_then(|e| e.customer())
                && owner != customer
            {
                return Err(OpError::CartOwned(cart));
            }
            cart_id = Some(cart);
            let lines: Vec<(ProductId, u32)> =
                entry.map(|e| e.lines().collect()).unwrap_or_default();
            // The checkout empties the lines it bought (and only those).
            for (product, _) in &lines {
                covers.extend(entry.map(|e| e.item_dots(product)).unwrap_or_default());
                parts.push(Part::CartLine {
                    cart,
                    product: *product,
                    qty: 0,
                });
            }
            lines
        }
    };
    // One line per product, in product order.
    let mut merged: BTreeMap<ProductId, u64> = BTreeMap::new();
    for (p, q) in wanted {
        *merged.entry(p).or_insert(0) += u64::from(q);
    }
    if merged.is_empty() || merged.values().all(|&q| q == 0) {
        return Err(OpError::EmptyOrder);
    }
    let mut lines = Vec::with_capacity(merged.len());
    let mut currency: Option<Currency> = None;
    let mut total: u64 = 0;
    for (product, qty) in merged {
        let quantity = u32::try_from(qty)
            .ok()
            .filter(|q| *q <= MAX_LINE_QUANTITY)
            .ok_or(OpError::TooLarge("order line quantity"))?;
        let (record, _) = live_product(state, &product)?;
        let price = record.price.value;
        match currency {
            Some(c) if c != price.currency => {
                return Err(OpError::MixedCurrency(c, price.currency));
            }
            _ => currency = Some(price.currency),
        }
        total = price
            .minor
            .checked_mul(qty)
            .and_then(|line| total.checked_add(line))
            .ok_or(OpError::TooLarge("order total"))?;
        lines.push(OrderLine {
            product,
            sku: record.sku.value.clone(),
            quantity,
            unit_minor: price.minor,
        });
    }
    let header = OrderHeader {
        customer,
        seller: ctx.actor,
        lines,
        currency: currency.ok_or(OpError::EmptyOrder)?,
        total_minor: total,
        shipping,
        created_ms: ctx.wall_ms,
        cart: cart_id,
    };
    // Sell against this node's rights, SKU by SKU; refuse the whole order if
    // any SKU falls short.
    for (sku, units) in header.units_by_sku() {
        let sku = Sku(sku);
        let mut counter: BoundedCounter = state.stock.get(&sku).cloned().unwrap_or_default();
        counter
            .sell(ctx.actor, units)
            .map_err(|e| short_of_rights(&sku, e, &counter))?;
        parts.push(Part::Stock {
            sku,
            counter: Box::new(counter),
        });
    }
    let mut placed = OrderEntry::placed(header);
    placed.email = crate::status::MaxReg(email);
    parts.push(Part::Order {
        id: order,
        entry: Box::new(placed),
    });
    let hlc = ctx.clock.now(ctx.wall_ms);
    Ok(delta(ctx, hlc, covers, parts))
}

/// The return of this node's units of an order it sold and must give back
/// (a cancel, or a sale that lost to another seller's).
pub(super) fn plan_return(
    state: &State,
    ctx: &mut PlanCtx<'_>,
    order: OrderId,
) -> Result<Delta, OpError> {
    let entry = state
        .orders
        .get(&order)
        .ok_or(OpError::OrderNotFound(order))?;
    let Some(mine) = entry.sales.get(&ctx.actor) else {
        return Err(match entry.header() {
            Some(h) => OpError::NotSeller {
                order,
                seller: h.seller,
            },
            None => OpError::OrderNotFound(order),
        });
    };
    if !entry.owes_return(ctx.actor) {
        return Err(OpError::NothingToReturn(order));
    }
    let mut parts = return_parts(state, ctx.actor, mine);
    parts.push(Part::Order {
        id: order,
        entry: Box::new(OrderEntry::moved(
            OrderStatus::Placed,
            None,
            Some(ctx.actor),
        )),
    });
    let hlc = ctx.clock.now(ctx.wall_ms);
    Ok(delta(ctx, hlc, Vec::new(), parts))
}

pub(super) fn plan_move(
    state: &State,
    ctx: &mut PlanCtx<'_>,
    order: OrderId,
    to: OrderStatus,
) -> Result<Delta, OpError> {
    let entry = state
        .orders
        .get(&order)
        .ok_or(OpError::OrderNotFound(order))?;
    let header = entry.header().ok_or(OpError::OrderNotFound(order))?;
    let from = entry.status.0;
    if from == to {
        return Err(OpError::Unchanged);
    }
    from.check_move(to)?;
    // Only the seller of the winning sale ships (never one that gave its
    // units back).
    let seller = header.seller == ctx.actor;
    if to == OrderStatus::Shipped && (!seller || entry.returned.contains(&ctx.actor)) {
        return Err(OpError::NotSeller {
            order,
            seller: header.seller,
        });
    }
    // A cancel at a seller returns its units in the same delta; a cancel
    // elsewhere leaves that to each seller when it applies it.
    let mine = entry.sales.get(&ctx.actor);
    let returning = match mine {
        Some(h) if to == OrderStatus::Cancelled && entry.owes_return_if_cancelled(ctx.actor) => {
            Some(h)
        }
        _ => None,
    };
    let mut parts = match returning {
        Some(h) => return_parts(state, ctx.actor, h),
        None => Vec::new(),
    };
    parts.push(Part::Order {
        id: order,
        entry: Box::new(OrderEntry::moved(
            to,
            (to == OrderStatus::Shipped).then_some(ctx.actor),
            returning.map(|_| ctx.actor),
        )),
    });
    let hlc = ctx.clock.now(ctx.wall_ms);
    Ok(delta(ctx, hlc, Vec::new(), parts))
}
