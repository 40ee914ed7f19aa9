//! What every HTTP service of the product shares: serving with limits and
//! authentication (`serve`), who may connect (`auth`), and the client side of
//! the same (`connect`).
pub mod auth;
mod body_deadline;
pub mod connect;
mod parse_errors;
pub mod serve;

pub use auth::{AuthFiles, ClientAuth, ServerAuth};
pub use serve::{serve, HttpLimits, Listener};
