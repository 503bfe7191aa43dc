//! Cryptography: keys and subkeys, key slots, and sealing of records.

pub mod aead;
pub mod keys;
pub mod seal;
pub mod slots;
