//! # Sluice SDK: routing modules in plain Rust
//!
//! A Sluice routing module decides, for every row change the agent captures, whether to
//! drop it or where to publish it. You implement [`Router`]: `configure` reads your
//! module's configuration and says what you want to receive; `route` gets a batch of
//! events (read in place, no copies) and pushes one decision per event.
//! [`export_router!`] turns it into the WebAssembly component the agent loads
//! (`sluice module build DIR`), and [`testing::Harness`] runs it natively under
//! `cargo test`, applying your subscription exactly as the agent does ([`Selection`]).
//!
//! ```
//! use sluice_sdk::prelude::*;
//!
//! /// Sends every order row to `orders`, keyed by its primary key; drops the rest.
//! struct Orders {
//!     key: KeyBuilder,
//! }
//!
//! impl Router for Orders {
//!     fn configure(config: &Config) -> Result<(Self, Subscription), String> {
//!         let topic = config.get_or("topic", "orders").to_string();
//!         let sub = Subscription::all()
//!             .tables("shop\\.orders")
//!             .kinds(&[Kind::Insert, Kind::Update, Kind::Delete])
//!             .topics([topic]);
//!         Ok((Orders { key: KeyBuilder::new() }, sub))
//!     }
//!
//!     fn route(&mut self, tables: &Tables, batch: &Batch<'_>, out: &mut Decisions) -> Result<(), String> {
//!         for ev in batch.iter() {
//!             match tables.of(&ev) {
//!                 Some(t) => {
//!                     self.key.clear().primary_key(t, &ev);
//!                     out.send(Destination::to_index(0).key(self.key.as_bytes()));
//!                 }
//!                 None => out.drop_event(),
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! sluice_sdk::export_router!(Orders);
//!
//! // Natively, in a unit test:
//! let mut h = Harness::<Orders>::new(&[("topic", "orders-v2")]).unwrap();
//! h.table(1, "shop", "orders", &[("id", "bigint(20)"), ("total", "decimal(10,2)")], &["id"]);
//! h.insert(1, &[Some("42"), Some("9.90")]);
//! let out = h.run().unwrap();
//! assert_eq!(out, vec![Outcome::Sent(vec![Sent {
//!     topic: "orders-v2".into(),
//!     key: Some(b"42".to_vec()),
//!     partition: None,
//!     headers: vec![],
//! }])]);
//! ```
//!
//! The batch and decision formats are specified in `wit/router.wit` and implemented,
//! for both sides, in [`abi`].

#![deny(missing_docs)]

pub mod abi;
pub mod canal;
pub mod keys;
pub mod log;
mod router;
#[doc(hidden)]
pub mod runtime;
pub mod testing;

pub use router::{Column, Config, PRIMARY_KEY, Router, Selection, Subscription, Table, Tables};

/// Bindings generated from `wit/router.wit` (used by [`export_router!`]).
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "router",
        pub_export_macro: true,
        export_macro_name: "__export_router_world",
        default_bindings_module: "sluice_sdk::bindings",
    });
}

/// The names a module usually needs.
pub mod prelude {
    pub use crate::abi::{Batch, Cell, Decisions, Destination, EventRef, Kind, Topic};
    pub use crate::keys::KeyBuilder;
    pub use crate::log::{Level, log};
    pub use crate::testing::{Harness, Outcome, Sent};
    pub use crate::{Config, PRIMARY_KEY, Router, Subscription, Table, Tables};
}

/// Exports a [`Router`] type as the module's implementation of the `router` world.
/// Expands to nothing when not compiling for WebAssembly, so the same crate builds and
/// tests natively.
#[macro_export]
macro_rules! export_router {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            ::std::thread_local! {
                static __SLUICE_STATE: ::std::cell::RefCell<$crate::runtime::State<$ty>> =
                    ::std::cell::RefCell::new(::std::default::Default::default());
            }
            struct __SluiceExport;
            impl $crate::bindings::Guest for __SluiceExport {
                fn configure(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<
                    $crate::bindings::sluice::router::types::Subscription,
                    ::std::string::String,
                > {
                    __SLUICE_STATE.with(|s| $crate::runtime::configure::<$ty>(s, config))
                }
                fn add_table(table: $crate::bindings::sluice::router::types::Table) {
                    __SLUICE_STATE.with(|s| $crate::runtime::add_table::<$ty>(s, table))
                }
                fn route(
                    batch: ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                    __SLUICE_STATE.with(|s| $crate::runtime::route::<$ty>(s, batch))
                }
            }
    $crate::bindings::__export_router_world!(__SluiceExport with_types_in $crate::bindings);
        };
    };
}
