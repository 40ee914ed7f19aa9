//! What every HTTP service of the product shares: serving with limits and
//! authentication (`serve`), who may connect (`auth`), the client side of the
//! same (`connect`), JSON request bodies (`json_body`), how a redb database
//! file is opened and checked (`database`), and the stop signal.
pub mod auth;
mod body_deadline;
pub mod connect;
pub mod database;
pub mod json_body;
mod parse_errors;
pub mod serve;
pub mod stop_signal;

pub use auth::{AuthFiles, ClientAuth, ServerAuth};
pub use serve::{serve, HttpLimits, Listener};
