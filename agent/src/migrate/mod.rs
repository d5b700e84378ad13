//! Moving to Sluice from other tools: reading their configuration files and writing
//! Sluice's. Each converter carries what it can, and lists, with the reason, whatever
//! changes behaviour and is not carried; none copies a secret.

pub mod canal;
pub mod properties;
