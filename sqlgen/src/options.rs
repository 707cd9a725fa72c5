//! Output plugin options, as passed to `pg_logical_slot_get_changes(..., VARIADIC options)` or
//! `pg_recvlogical -o name[=value]`. Pure parsing; the plugin maps errors to ERRORs.

/// What to do with an UPDATE or DELETE whose table has no usable replica identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingIdentity {
    /// Stop decoding with an ERROR (default): the change cannot be replayed correctly.
    #[default]
    Error,
    /// Write a `-- decoder_sql: skipped ...` comment line instead of the statement.
    Skip,
}

/// Whether the plugin writes text or binary messages (decoder_raw's `output_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    #[default]
    Textual,
    Binary,
}

/// Parsed plugin options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// emit `BEGIN;` / `COMMIT;` around each transaction
    pub include_transaction: bool,
    /// annotate BEGIN with `-- xid=... commit_lsn=... end_lsn=... commit_time=...` (implies include_transaction)
    pub include_annotations: bool,
    /// write nothing for transactions without changes
    pub skip_empty_xacts: bool,
    /// UPDATE/DELETE without replica identity: error or skip
    pub missing_identity: MissingIdentity,
    /// prefix of transactional logical messages whose content is SQL to emit verbatim
    pub ddl_prefix: String,
    /// emit other logical messages as comment lines
    pub include_messages: bool,
    /// textual or binary output
    pub output_format: OutputFormat,
}

pub const DEFAULT_DDL_PREFIX: &str = "ddl";

impl Default for Options {
    fn default() -> Self {
        Self {
            include_transaction: false,
            include_annotations: false,
            skip_empty_xacts: false,
            missing_identity: MissingIdentity::Error,
            ddl_prefix: DEFAULT_DDL_PREFIX.to_owned(),
            include_messages: false,
            output_format: OutputFormat::Textual,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("option \"{name}\" = \"{}\" is unknown", value.as_deref().unwrap_or("(null)"))]
    Unknown { name: String, value: Option<String> },
    #[error("could not parse value \"{value}\" for parameter \"{name}\"")]
    BadValue {
        name: String,
        value: String,
        expected: &'static str,
    },
    #[error("no value specified for parameter \"{name}\"")]
    MissingValue {
        name: String,
        expected: &'static str,
    },
}

impl OptionError {
    /// What the option accepts, for the error's HINT.
    pub fn hint(&self) -> String {
        match self {
            OptionError::Unknown { .. } => {
                format!("Valid options are: {}.", OPTION_NAMES.join(", "))
            }
            OptionError::BadValue { expected, .. } | OptionError::MissingValue { expected, .. } => {
                format!("Expected {expected}.")
            }
        }
    }
}

pub const OPTION_NAMES: &[&str] = &[
    "include_transaction",
    "include_annotations",
    "skip_empty_xacts",
    "missing_identity",
    "ddl_prefix",
    "include_messages",
    "output_format",
];

const BOOL_EXPECTED: &str = "a boolean (on/off, true/false, yes/no, 1/0)";

impl Options {
    /// Parses `(name, value)` pairs; a name without value means `true` for boolean options.
    pub fn parse<'a, I>(pairs: I) -> Result<Self, OptionError>
    where
        I: IntoIterator<Item = (&'a str, Option<&'a str>)>,
    {
        let mut o = Self::default();
        for (name, value) in pairs {
            match name {
                "include_transaction" => o.include_transaction = flag(name, value)?,
                "include_annotations" => o.include_annotations = flag(name, value)?,
                "skip_empty_xacts" => o.skip_empty_xacts = flag(name, value)?,
                "include_messages" => o.include_messages = flag(name, value)?,
                "missing_identity" => {
                    const EXPECTED: &str = "\"error\" or \"skip\"";
                    o.missing_identity = match required(name, value, EXPECTED)? {
                        "error" => MissingIdentity::Error,
                        "skip" => MissingIdentity::Skip,
                        other => return Err(bad(name, other, EXPECTED)),
                    }
                }
                "ddl_prefix" => {
                    const EXPECTED: &str = "a non-empty message prefix";
                    let v = required(name, value, EXPECTED)?;
                    if v.is_empty() {
                        return Err(bad(name, v, EXPECTED));
                    }
                    o.ddl_prefix = v.to_owned();
                }
                "output_format" => {
                    const EXPECTED: &str = "\"textual\" or \"binary\"";
                    o.output_format = match required(name, value, EXPECTED)? {
                        "textual" => OutputFormat::Textual,
                        "binary" => OutputFormat::Binary,
                        other => return Err(bad(name, other, EXPECTED)),
                    }
                }
                _ => {
                    return Err(OptionError::Unknown {
                        name: name.to_owned(),
                        value: value.map(str::to_owned),
                    });
                }
            }
        }
        if o.include_annotations {
            o.include_transaction = true;
        }
        Ok(o)
    }
}

fn bad(name: &str, value: &str, expected: &'static str) -> OptionError {
    OptionError::BadValue {
        name: name.to_owned(),
        value: value.to_owned(),
        expected,
    }
}

fn required<'a>(
    name: &str,
    value: Option<&'a str>,
    expected: &'static str,
) -> Result<&'a str, OptionError> {
    value.ok_or_else(|| OptionError::MissingValue {
        name: name.to_owned(),
        expected,
    })
}

fn flag(name: &str, value: Option<&str>) -> Result<bool, OptionError> {
    match value {
        None => Ok(true),
        Some(v) => parse_bool(v).ok_or_else(|| bad(name, v, BOOL_EXPECTED)),
    }
}

/// PostgreSQL's `parse_bool`: case-insensitive true/false, yes/no, on/off, 1/0 and any
/// unambiguous prefix of them ("t", "ye", "of"; but not "o").
pub fn parse_bool(value: &str) -> Option<bool> {
    let v = value.to_ascii_lowercase();
    let is_prefix_of = |word: &str, min: usize| v.len() >= min && word.starts_with(v.as_str());
    if is_prefix_of("true", 1) || is_prefix_of("yes", 1) || is_prefix_of("on", 2) || v == "1" {
        Some(true)
    } else if is_prefix_of("false", 1)
        || is_prefix_of("no", 1)
        || is_prefix_of("off", 2)
        || v == "0"
    {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&'static str, Option<&'static str>)]) -> Result<Options, OptionError> {
        Options::parse(pairs.iter().copied())
    }

    #[test]
    fn defaults_match_decoder_raw() {
        let o = parse(&[]).unwrap();
        assert!(!o.include_transaction);
        assert_eq!(o.missing_identity, MissingIdentity::Error);
        assert_eq!(o.ddl_prefix, "ddl");
        assert_eq!(o.output_format, OutputFormat::Textual);
    }

    #[test]
    fn bare_flag_means_true() {
        assert!(
            parse(&[("include_transaction", None)])
                .unwrap()
                .include_transaction
        );
    }

    #[test]
    fn annotations_imply_transaction_lines() {
        let o = parse(&[("include_annotations", Some("on"))]).unwrap();
        assert!(o.include_transaction && o.include_annotations);
    }

    #[test]
    fn every_parse_bool_spelling() {
        for t in ["true", "TRUE", "t", "tr", "yes", "y", "on", "ON", "1"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["false", "f", "fal", "no", "n", "off", "of", "OFF", "0"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        for bad in ["", "o", "2", "truee", "yess", " on", "nope"] {
            assert_eq!(parse_bool(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn unknown_option_names_itself() {
        let err = parse(&[("include-xids", Some("1"))]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "option \"include-xids\" = \"1\" is unknown"
        );
        let err = parse(&[("bogus", None)]).unwrap_err();
        assert_eq!(err.to_string(), "option \"bogus\" = \"(null)\" is unknown");
        assert!(err.hint().contains("include_transaction"));
    }

    #[test]
    fn bad_values() {
        let err = parse(&[("include_transaction", Some("maybe"))]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "could not parse value \"maybe\" for parameter \"include_transaction\""
        );
        let err = parse(&[("missing_identity", Some("ignore"))]).unwrap_err();
        assert!(err.hint().contains("skip"));
        let err = parse(&[("missing_identity", None)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no value specified for parameter \"missing_identity\""
        );
        assert!(parse(&[("ddl_prefix", Some(""))]).is_err());
        assert!(parse(&[("output_format", Some("json"))]).is_err());
    }

    #[test]
    fn valued_options() {
        let o = parse(&[
            ("missing_identity", Some("skip")),
            ("ddl_prefix", Some("my.ddl")),
            ("output_format", Some("binary")),
            ("include_messages", Some("yes")),
            ("skip_empty_xacts", Some("1")),
        ])
        .unwrap();
        assert_eq!(o.missing_identity, MissingIdentity::Skip);
        assert_eq!(o.ddl_prefix, "my.ddl");
        assert_eq!(o.output_format, OutputFormat::Binary);
        assert!(o.include_messages && o.skip_empty_xacts);
    }
}
