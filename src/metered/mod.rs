//! Lines that cost money: each line's count of the bytes it carried in its current period
//! against its cap ([`meter`]), and the bytes each carried over the last minutes, by which
//! `balance=bytes` places new destinations ([`window`]). Pure: bytes, dates and `now` go in,
//! crossings and totals come out; reading the counters, the clock and the disk is io/'s.

pub mod book;
pub mod date;
pub mod meter;
pub mod size;
pub mod window;

pub use book::MeterBook;
pub use date::{CapReset, Date};
pub use meter::{CapEffect, CapEvent, CapSettings, Meter, OnCap};
