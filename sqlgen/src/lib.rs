//! Pure SQL-text rendering for the decoder_sql output format, shared by the `decoder_sql`
//! extension and the `pgincr` CLI. No PostgreSQL, no I/O: every function here is unit-tested
//! with plain inputs. The format itself is documented in `docs/format.md`.

pub mod bytes;
pub mod channel;
pub mod copy;
pub mod ddl;
pub mod ident;
pub mod index;
mod keywords;
pub mod lexer;
pub mod literal;
pub mod lsn;
pub mod options;
pub mod role;
pub mod statement;
pub mod txn;

pub use ident::{push_ident, push_qualified, quote_ident, quote_qualified};
pub use literal::{Cell, TypeClass, quote_literal};
pub use lsn::Lsn;
pub use options::{MissingIdentity, OptionError, Options, OutputFormat};
pub use statement::{Column, KeyColumn, RenderError, Rendered, RowMatch};
pub use txn::TxnInfo;
