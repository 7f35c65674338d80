//! The `forge` binary's commands beyond configuration, migrations and keys.

pub(crate) mod new;
pub(crate) mod ops;
