//! Errors of the output plugin. Safe code returns them; `pg::report` turns them into an ERROR
//! with SQLSTATE, detail and hint at the callback boundary, and nowhere else.

use sqlgen::{OptionError, RenderError};

pub type Result<T> = std::result::Result<T, DecoderError>;

#[derive(Debug, thiserror::Error)]
pub enum DecoderError {
    #[error("{0}")]
    Option(#[from] OptionError),
    #[error("cannot decode {operation} on table {relation}: it has no usable replica identity")]
    MissingIdentity {
        relation: String,
        operation: &'static str,
    },
    #[error("cannot decode {operation} on table {relation}: {source}")]
    Render {
        relation: String,
        operation: &'static str,
        source: RenderError,
    },
}

/// SQLSTATE class of an error, independent of the pgrx enum so this module stays pure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    InvalidParameterValue,
    ObjectNotInPrerequisiteState,
}

impl DecoderError {
    pub fn class(&self) -> ErrorClass {
        match self {
            DecoderError::Option(_) => ErrorClass::InvalidParameterValue,
            DecoderError::MissingIdentity { .. } | DecoderError::Render { .. } => {
                ErrorClass::ObjectNotInPrerequisiteState
            }
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            DecoderError::Option(e) => Some(e.hint()),
            DecoderError::MissingIdentity { relation, .. } => Some(format!(
                "Give the table a primary key or run ALTER TABLE {relation} REPLICA IDENTITY FULL; \
                 that only helps later changes. To pass over changes already in the WAL, decode \
                 with option missing_identity 'skip', which records each skipped change as a comment."
            )),
            DecoderError::Render { .. } => Some(
                "Use REPLICA IDENTITY FULL for tables whose key columns hold large values."
                    .to_owned(),
            ),
        }
    }

    pub fn detail(&self) -> Option<String> {
        match self {
            DecoderError::MissingIdentity { .. } => Some(
                "Without a replica identity the WAL record does not say which row was changed."
                    .to_owned(),
            ),
            _ => None,
        }
    }
}
