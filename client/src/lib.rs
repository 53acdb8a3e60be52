//! The client side of psp-gateway, shared by the host's operator commands and the
//! end-to-end tests: Commerce Layer's documents, signatures and calls ([`cl`]), one-off test
//! calls with their callbacks ([`trigger`]), and load runs with their statistics
//! ([`load`]).

pub mod cl;
pub mod load;
pub mod trigger;
