//! Retention: which backups and WAL a repository keeps, and removing the rest (`walship
//! expire`), plus pins (`walship pin`/`unpin`).
//!
//! - [`policy`]: [`Policy`], the `[retention]` section (PITR window, daily/weekly/monthly/
//!   yearly counts, `min_backups`, the calendar's zone) and [`Rule`], why a backup is kept.
//! - [`plan`]: the engine, a pure function from backup summaries, the WAL listing, a policy
//!   and a time to a [`Plan`]; tested with random histories.
//! - [`inventory`]: what the repository holds, read once (one listing of `backups/` and of
//!   `wal/`, every manifest and pin record): the engine's input, also read by `list` and
//!   `verify`.
//! - [`execute`]: carrying out a plan (manifest first, then bundles; WAL last, in batches).
//! - [`pins`]: create-only pin and unpin records (and, under Object Lock, legal holds).
//! - [`lock`]: S3 Object Lock durations derived from the policy, and the lock extensions a
//!   plan calls for.
//!
//! **Invariants** (safety rules 7 and 8): nothing a kept backup, a pin or the PITR window
//! needs is ever in a plan's removals; a backup in progress (no manifest yet) is never
//! touched; WAL from the floor (the oldest backup the window or the newest backup restores
//! from) on is never touched.

pub mod execute;
pub mod inventory;
pub mod lock;
pub mod pins;
pub mod plan;
#[cfg(test)]
mod plan_tests;
pub mod policy;

pub use execute::{ExpireError, ExpireReport, execute};
pub use inventory::{
    Inventory, InventoryError, StoredBackup, StoredWal, read_inventory, read_inventory_tolerant,
};
pub use pins::{PinAction, PinError, PinRecord, set_pin};
pub use plan::{
    BackupSummary, KeptBackup, Plan, PlanInputs, RemovedBackup, WalObject, WalRange, plan,
};
pub use policy::{Policy, Rule, Timezone};
