//! Protocol fronts: each translates one merchant platform's wire format onto the shared
//! payment engine (`crate::payments`).

pub mod commerce_layer;
pub mod pgm;
mod raw;
