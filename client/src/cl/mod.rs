//! Commerce Layer (CL), the client side of its external payment gateway protocol: the
//! JSON:API documents CL POSTs for authorize, capture, void, refund and customer token, with
//! CL's real field names (an [`Order`] and its default includes, in an order that is
//! deliberately not the obvious one), the `X-CommerceLayer-Signature` scheme ([`sign`] /
//! [`verify`]), and [`ClClient`], which sends them to a gateway over HTTP.
//!
//! The end-to-end tests' simulator, the operator's `trigger` and `load` commands and the
//! benchmark all build their calls here, so what is measured is what is tested.
//! The contract is `shared/reference/commerce-layer.md`.

mod client;
mod documents;
mod includes;
mod jsonapi;
mod order;
mod sign;

pub use client::{Action, ClClient, Response};
pub use documents::{
    Authorization, Capture, ExternalPayment, SavedSource, Settlement, authorize_body, capture_body,
    find_included, minimal_authorize_body, refund_body, token_body, unresolved_linkages, void_body,
};
pub use jsonapi::{formatted_amount, ident, new_id};
pub use order::{Address, Customer, LineItem, Market, Order, Totals};
pub use sign::{sign, verify};

/// The header CL signs its calls (and expects callbacks signed) with.
pub const SIGNATURE_HEADER: &str = "X-CommerceLayer-Signature";
/// JSON:API media type, what CL sends by default here.
pub const JSON_API: &str = "application/vnd.api+json";
/// Plain JSON, the other content type a gateway must accept.
pub const JSON: &str = "application/json";
