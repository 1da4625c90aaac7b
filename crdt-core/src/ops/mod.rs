//! Local operations: validated requests to change the state, and how each
//! becomes a delta.
//!
//! Planning reads the state and the clock and either refuses the operation
//! with an [`OpError`] — leaving everything untouched — or returns the delta
//! that carries it out. The replica then joins that delta exactly as it
//! would join one from a peer, so local and remote application can never
//! disagree.

use crate::cart::CartEntry;
use crate::catalog::{NewProduct, ProductPatch, ProductRecord, resolve};
use crate::clock::{Hlc, HlcClock, Stamp};
use crate::context::Dot;
use crate::counter::{BoundedCounter, InsufficientRights};
use crate::delta::{Delta, Part};
use crate::idem::{IdemEntry, IdemRecord};
use crate::ids::{AccountId, Actor, CartId, IdemKey, OrderId, ProductId};
use crate::money::Currency;
use crate::order::{Address, OrderEntry};
use crate::state::{Sku, State};
use crate::status::{IllegalMove, OrderStatus};

/// Most units of one product a cart line or order line may hold.
pub const MAX_LINE_QUANTITY: u32 = 1_000_000;

/// Where a checkout takes its items from.
#[derive(Clone, Debug, PartialEq)]
pub enum CheckoutItems {
    /// Every line of a cart (which the checkout then empties).
    Cart(CartId),
    /// Explicit lines: product and quantity.
    Lines(Vec<(ProductId, u32)>),
}

/// A validated request to change the replicated state.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Create a product (optionally with initial stock, as this node's rights).
    CreateProduct {
        /// The new product's id.
        id: ProductId,
        /// Its fields.
        product: NewProduct,
        /// Units of initial stock (0 for none).
        initial_stock: u64,
    },
    /// Change some fields of a product.
    UpdateProduct {
        /// The product.
        id: ProductId,
        /// The fields to change.
        patch: ProductPatch,
    },
    /// Remove a product (observed-remove).
    DeleteProduct {
        /// The product.
        id: ProductId,
    },
    /// Add stock to a SKU; the rights go to this node.
    Restock {
        /// The SKU.
        sku: Sku,
        /// Units to add.
        quantity: u64,
    },
    /// Give some of this node's rights on a SKU to another actor.
    TransferRights {
        /// The SKU.
        sku: Sku,
        /// The receiver.
        to: Actor,
        /// Units of rights.
        quantity: u64,
    },
    /// Add units of a product to a cart.
    AddToCart {
        /// The cart.
        cart: CartId,
        /// The product.
        product: ProductId,
        /// Units to add.
        quantity: u32,
        /// The customer acting, if a customer (binds the cart on first write);
        /// `None` for an admin.
        customer: Option<String>,
    },
    /// Set a cart line's quantity (0 removes it).
    SetCartItem {
        /// The cart.
        cart: CartId,
        /// The product.
        product: ProductId,
        /// The new quantity.
        quantity: u32,
        /// See [`Op::AddToCart`].
        customer: Option<String>,
    },
    /// Remove a line from a cart.
    RemoveCartItem {
        /// The cart.
        cart: CartId,
        /// The product.
        product: ProductId,
        /// See [`Op::AddToCart`].
        customer: Option<String>,
    },
    /// Place an order, selling against this node's rights.
    Checkout {
        /// The new order's id (a UUIDv7 minted by this node).
        order: OrderId,
        /// The customer placing it.
        customer: String,
        /// What is bought.
        items: CheckoutItems,
        /// Where it ships.
        shipping: Address,
        /// An e-mail for the order's notices (normalised by the caller).
        email: Option<String>,
    },
    /// Record that the customer was sent a notice about an order.
    Notified {
        /// The order.
        order: OrderId,
        /// The notice (`placed`, `shipped`, `cancelled`).
        notice: String,
    },
    /// Move an order's status (pay, ship, deliver, cancel).
    MoveOrder {
        /// The order.
        order: OrderId,
        /// The status asked for.
        to: OrderStatus,
    },
    /// Remove every line of a cart (a cart left untouched too long): an
    /// observed remove, so a line added concurrently elsewhere survives.
    ClearCart {
        /// The cart.
        cart: CartId,
    },
    /// Return this node's units of an order to its rights: a cancelled
    /// order it sold (when it applies a cancel accepted elsewhere), or a
    /// sale of a checkout that another seller's sale won.
    ReturnUnits {
        /// The order.
        order: OrderId,
    },
    /// Pay for an order, refund it, or merge what the provider said (see
    /// [`PaymentChange`]).
    Payment {
        /// The order.
        order: OrderId,
        /// The change.
        change: PaymentChange,
    },
    /// Change an account (see [`AccountChange`]).
    Account {
        /// The account.
        id: AccountId,
        /// The change.
        change: AccountChange,
    },
    /// Record the first final answer to an idempotency key (its stamp and
    /// writer are this node's, whatever the caller filled in).
    Record {
        /// The record's key.
        key: IdemKey,
        /// The answer.
        record: Box<IdemRecord>,
    },
}

/// Why an operation was refused. The state is unchanged in every case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// A product with this id exists.
    #[error("product {0} already exists")]
    ProductExists(ProductId),
    /// No such product.
    #[error("product {0} not found")]
    ProductNotFound(ProductId),
    /// Another product has this SKU.
    #[error("SKU {sku} already belongs to product {product}")]
    SkuTaken {
        /// The SKU.
        sku: String,
        /// The product that has it.
        product: ProductId,
    },
    /// The cart is bound to another customer.
    #[error("cart {0} belongs to another customer")]
    CartOwned(CartId),
    /// The product is not in the cart.
    #[error("product {product} is not in cart {cart}")]
    NotInCart {
        /// The cart.
        cart: CartId,
        /// The product.
        product: ProductId,
    },
    /// A checkout with no items.
    #[error("the order has no items")]
    EmptyOrder,
    /// Products priced in different currencies.
    #[error("one order cannot mix currencies: {0} and {1}")]
    MixedCurrency(Currency, Currency),
    /// This node's rights do not cover the order.
    #[error(
        "not enough stock of {sku}: need {needed}, this node holds rights to {held}, total stock {stock}"
    )]
    InsufficientStock {
        /// The SKU.
        sku: String,
        /// Units needed.
        needed: u64,
        /// Rights this node holds.
        held: u64,
        /// Stock across the cluster, as this node sees it.
        stock: u64,
    },
    /// No such order.
    #[error("order {0} not found")]
    OrderNotFound(OrderId),
    /// An order with this id exists.
    #[error("order {0} already exists")]
    OrderExists(OrderId),
    /// A status move the order's life does not allow.
    #[error(transparent)]
    IllegalMove(#[from] IllegalMove),
    /// Only the selling actor ships an order (or returns its units).
    #[error("order {order} was sold by {seller}; only that node can do this")]
    NotSeller {
        /// The order.
        order: OrderId,
        /// Its seller.
        seller: Actor,
    },
    /// A return this node does not owe: the order is not cancelled and its
    /// sale won, or the units are already back.
    #[error("order {0} has no units to return")]
    NothingToReturn(OrderId),
    /// A quantity or amount beyond what an order may hold.
    #[error("{0} is too large")]
    TooLarge(&'static str),
    /// A new line in a cart that holds as many as allowed.
    #[error("the cart already holds {0} lines, the most allowed")]
    CartFull(usize),
    /// The operation would change nothing (a patch with no fields, a move
    /// to the status the order already has).
    #[error("nothing to change")]
    Unchanged,
    /// An account change refused.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// A payment change refused.
    #[error(transparent)]
    Payment(#[from] PaymentError),
}

/// What planning needs besides the state.
pub(crate) struct PlanCtx<'a> {
    pub actor: Actor,
    pub dot: Dot,
    pub clock: &'a mut HlcClock,
    pub wall_ms: u64,
    pub sku_owner: Option<ProductId>,
    /// Most lines one cart may hold (`ReplicaConfig::max_cart_lines`).
    pub max_cart_lines: usize,
    /// The account that owns the e-mail a registration names, if any.
    pub email_owner: Option<AccountId>,
}

/// A delta that carries one SKU's new stock counter.
fn stock_delta(ctx: &mut PlanCtx<'_>, sku: Sku, counter: BoundedCounter) -> Delta {
    let hlc = ctx.clock.now(ctx.wall_ms);
    let parts = vec![Part::Stock {
        sku,
        counter: Box::new(counter),
    }];
    delta(ctx, hlc, Vec::new(), parts)
}

/// The refusal of a sale or transfer this node holds too few rights for.
fn short_of_rights(sku: &Sku, e: InsufficientRights, counter: &BoundedCounter) -> OpError {
    OpError::InsufficientStock {
        sku: sku.0.clone(),
        needed: e.needed,
        held: e.held,
        stock: counter.stock(),
    }
}

fn delta(ctx: &PlanCtx<'_>, hlc: Hlc, covers: Vec<Dot>, parts: Vec<Part>) -> Delta {
    Delta {
        dot: ctx.dot,
        hlc,
        covers,
        parts,
    }
}

fn live_product(state: &State, id: &ProductId) -> Result<(ProductRecord, Vec<Dot>), OpError> {
    let siblings = state
        .products
        .get(id)
        .ok_or(OpError::ProductNotFound(*id))?;
    let record = resolve(siblings).ok_or(OpError::ProductNotFound(*id))?;
    Ok((record, siblings.dots().collect()))
}

fn product_exists(state: &State, id: &ProductId) -> Result<(), OpError> {
    match state.products.get(id) {
        Some(s) if !s.0.is_empty() => Ok(()),
        _ => Err(OpError::ProductNotFound(*id)),
    }
}

fn check_owner(
    entry: Option<&CartEntry>,
    cart: &CartId,
    customer: Option<&str>,
) -> Result<Option<Part>, OpError> {
    let Some(c) = customer else { return Ok(None) };
    match entry.and_then(|e| e.customer()) {
        Some(owner) if owner != c => Err(OpError::CartOwned(*cart)),
        Some(_) => Ok(None),
        None => Ok(Some(Part::CartOwner {
            cart: *cart,
            customer: c.to_string(),
        })),
    }
}

/// Refuses a new line in a cart that already holds `max` lines.
fn check_lines(entry: Option<&CartEntry>, product: &ProductId, max: usize) -> Result<(), OpError> {
    let Some(e) = entry else { return Ok(()) };
    if e.quantity(product).is_none() && e.lines().count() >= max {
        return Err(OpError::CartFull(max));
    }
    Ok(())
}

/// Plans a cart line write (`qty` 0 removes the line).
fn cart_line(
    entry: Option<&CartEntry>,
    ctx: &mut PlanCtx<'_>,
    cart: CartId,
    product: ProductId,
    qty: u32,
    customer: Option<&str>,
) -> Result<Delta, OpError> {
    let bind = check_owner(entry, &cart, customer)?;
    let covers: Vec<Dot> = entry.map(|e| e.item_dots(&product)).unwrap_or_default();
    let floor = entry.map(|e| e.item_floor(&product)).unwrap_or_default();
    let hlc = ctx.clock.now_above(ctx.wall_ms, floor);
    let mut parts = Vec::with_capacity(1 + usize::from(bind.is_some()));
    parts.push(Part::CartLine { cart, product, qty });
    parts.extend(bind);
    Ok(delta(ctx, hlc, covers, parts))
}

mod accounts;
mod orders;
mod payments;

use accounts::plan_account;
pub use accounts::{AccountChange, AccountError};
use orders::{plan_checkout, plan_move, plan_return};
use payments::plan_payment;
pub use payments::{PaymentChange, PaymentError};

pub(crate) fn plan(op: Op, state: &State, ctx: &mut PlanCtx<'_>) -> Result<Delta, OpError> {
    match op {
        Op::CreateProduct {
            id,
            product,
            initial_stock,
        } => {
            if state.products.get(&id).is_some() {
                return Err(OpError::ProductExists(id));
            }
            if let Some(other) = ctx.sku_owner {
                return Err(OpError::SkuTaken {
                    sku: product.sku,
                    product: other,
                });
            }
            let hlc = ctx.clock.now(ctx.wall_ms);
            let stamp = Stamp {
                hlc,
                actor: ctx.actor,
            };
            let sku = Sku(product.sku.clone());
            let mut parts = vec![Part::Product {
                id,
                record: Some(Box::new(ProductRecord::new(product, stamp))),
            }];
            if initial_stock > 0 {
                let mut counter = state.stock.get(&sku).cloned().unwrap_or_default();
                counter.restock(ctx.actor, initial_stock);
                parts.push(Part::Stock {
                    sku,
                    counter: Box::new(counter),
                });
            }
            Ok(delta(ctx, hlc, Vec::new(), parts))
        }
        Op::UpdateProduct { id, patch } => {
            let (record, covers) = live_product(state, &id)?;
            if patch.is_empty() {
                return Err(OpError::Unchanged);
            }
            let hlc = ctx.clock.now_above(ctx.wall_ms, record.floor());
            let stamp = Stamp {
                hlc,
                actor: ctx.actor,
            };
            let parts = vec![Part::Product {
                id,
                record: Some(Box::new(record.patched(&patch, stamp))),
            }];
            Ok(delta(ctx, hlc, covers, parts))
        }
        Op::DeleteProduct { id } => {
            let (record, covers) = live_product(state, &id)?;
            let hlc = ctx.clock.now_above(ctx.wall_ms, record.floor());
            Ok(delta(
                ctx,
                hlc,
                covers,
                vec![Part::Product { id, record: None }],
            ))
        }
        Op::Restock { sku, quantity } => {
            let mut counter = state.stock.get(&sku).cloned().unwrap_or_default();
            counter.restock(ctx.actor, quantity);
            Ok(stock_delta(ctx, sku, counter))
        }
        Op::TransferRights { sku, to, quantity } => {
            let mut counter = state.stock.get(&sku).cloned().unwrap_or_default();
            counter
                .transfer(ctx.actor, to, quantity)
                .map_err(|e| short_of_rights(&sku, e, &counter))?;
            Ok(stock_delta(ctx, sku, counter))
        }
        Op::AddToCart {
            cart,
            product,
            quantity,
            customer,
        } => {
            let entry = state.carts.get(&cart);
            check_owner(entry, &cart, customer.as_deref())?;
            product_exists(state, &product)?;
            check_lines(entry, &product, ctx.max_cart_lines)?;
            let have = entry.and_then(|e| e.quantity(&product)).unwrap_or(0);
            let qty = have
                .checked_add(quantity)
                .filter(|q| *q <= MAX_LINE_QUANTITY)
                .ok_or(OpError::TooLarge("cart line quantity"))?;
            cart_line(entry, ctx, cart, product, qty, customer.as_deref())
        }
        Op::SetCartItem {
            cart,
            product,
            quantity,
            customer,
        } => {
            let entry = state.carts.get(&cart);
            check_owner(entry, &cart, customer.as_deref())?;
            if quantity > MAX_LINE_QUANTITY {
                return Err(OpError::TooLarge("cart line quantity"));
            }
            let have = entry.and_then(|e| e.quantity(&product));
            if quantity == 0 && have.is_none() {
                return Err(OpError::NotInCart { cart, product });
            }
            if quantity > 0 {
                product_exists(state, &product)?;
                check_lines(entry, &product, ctx.max_cart_lines)?;
            }
            if have == Some(quantity) {
                return Err(OpError::Unchanged);
            }
            cart_line(entry, ctx, cart, product, quantity, customer.as_deref())
        }
        Op::RemoveCartItem {
            cart,
            product,
            customer,
        } => {
            let entry = state.carts.get(&cart);
            check_owner(entry, &cart, customer.as_deref())?;
            if entry.and_then(|e| e.quantity(&product)).is_none() {
                return Err(OpError::NotInCart { cart, product });
            }
            cart_line(entry, ctx, cart, product, 0, customer.as_deref())
        }
        Op::Checkout {
            order,
            customer,
            items,
            shipping,
            email,
        } => plan_checkout(state, ctx, order, customer, items, shipping, email),
        Op::Notified { order, notice } => {
            let entry = state
                .orders
                .get(&order)
                .ok_or(OpError::OrderNotFound(order))?;
            if entry.notified.contains(&notice) {
                return Err(OpError::Unchanged);
            }
            let hlc = ctx.clock.now(ctx.wall_ms);
            let mark = OrderEntry {
                notified: [notice].into_iter().collect(),
                ..OrderEntry::default()
            };
            Ok(delta(
                ctx,
                hlc,
                Vec::new(),
                vec![Part::Order {
                    id: order,
                    entry: Box::new(mark),
                }],
            ))
        }
        Op::MoveOrder { order, to } => plan_move(state, ctx, order, to),
        Op::ClearCart { cart } => {
            let entry = state.carts.get(&cart).ok_or(OpError::Unchanged)?;
            let lines: Vec<ProductId> = entry.lines().map(|(p, _)| p).collect();
            if lines.is_empty() {
                return Err(OpError::Unchanged);
            }
            let mut covers = Vec::new();
            let mut parts = Vec::with_capacity(lines.len());
            let mut floor = Hlc::default();
            for product in lines {
                covers.extend(entry.item_dots(&product));
                floor = floor.max(entry.item_floor(&product));
                parts.push(Part::CartLine {
                    cart,
                    product,
                    qty: 0,
                });
            }
            let hlc = ctx.clock.now_above(ctx.wall_ms, floor);
            Ok(delta(ctx, hlc, covers, parts))
        }
        Op::ReturnUnits { order } => plan_return(state, ctx, order),
        Op::Account { id, change } => plan_account(state, ctx, id, change),
        Op::Payment { order, change } => plan_payment(state, ctx, order, change),
        Op::Record { key, record } => {
            let hlc = ctx.clock.now(ctx.wall_ms);
            let mut record = *record;
            record.hlc = hlc;
            record.writer = ctx.actor;
            Ok(delta(
                ctx,
                hlc,
                Vec::new(),
                vec![Part::Idem {
                    key,
                    entry: Box::new(IdemEntry(Some(record))),
                }],
            ))
        }
    }
}
