//! The client statement being executed, as the portal running it sees it. Used by DDL capture
//! to copy the exact text of a top-level DDL statement, even from a multi-statement query string.

use super::compat;
use super::server_text::Spelling;
use pgrx::pg_sys;
use std::ffi::CStr;

/// What a CREATE TABLE AS / SELECT INTO / CREATE MATERIALIZED VIEW creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableAs {
    pub temporary: bool,
    pub select_into: bool,
    /// It is `… AS EXECUTE name`.
    pub executes: bool,
    /// It runs inside `EXPLAIN ANALYZE`, for which no event trigger fires.
    pub explained: bool,
    /// It creates a materialized view.
    pub materialized: bool,
    /// For `… AS EXECUTE name`: the prepared statement (its `PREPARE` text, or its query when
    /// it was prepared through the protocol) and its parameters' types, which only the
    /// source's session has. None when it cannot be read in the statement's spelling.
    pub prepared: Option<Prepared>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub text: String,
    pub parameter_types: Vec<String>,
    /// The names of its result columns, which the table's columns take.
    pub column_names: Vec<String>,
}

/// The statement of the active portal: the top-level statement the client sent.
#[derive(Debug, Clone)]
pub struct ActiveStatement {
    /// Command tag, e.g. "CREATE TABLE".
    pub tag: String,
    /// The statement's own text within the query string (other statements excluded), read
    /// from the server's encoding as `spelling` says.
    pub text: String,
    pub spelling: Spelling,
    pub table_as: Option<TableAs>,
    /// Whether it is a CONCURRENTLY form (CREATE/DROP INDEX, REFRESH MATERIALIZED VIEW, or
    /// ALTER TABLE … DETACH PARTITION).
    pub concurrent: bool,
    /// Whether it is an ALTER TABLE that detaches a partition.
    pub detaches: bool,
    /// Whether it creates or drops only temporary objects by its own words (TEMP, or names in
    /// a pg_temp schema, or a table that is temporary), as the statements REFRESH
    /// MATERIALIZED VIEW CONCURRENTLY runs internally do.
    pub temporary: bool,
    /// Whether it is a CREATE TABLE with `LIKE` a temporary table, which the replay will not
    /// have: the table is written from the catalog instead.
    pub likes_temporary: bool,
    /// For a CREATE TABLE … PARTITION OF whose bound is computed (`FROM (current_timestamp)`),
    /// where in its text (bytes) the bound begins: it is written with the values the source
    /// computed.
    pub computed_bound_at: Option<usize>,
    /// For an ALTER TABLE … ATTACH PARTITION … FOR VALUES with a computed bound: the
    /// partition it attaches, whose bound is written as the source computed it.
    pub attached_partition: Option<pg_sys::Oid>,
    /// An index it names that is invalid on the source (known before it runs), for which
    /// it is written so that it replays whether or not the target has that index.
    pub invalid_index: Option<IndexGuard>,
    /// Whether it is a CREATE INDEX on a partitioned table.
    pub on_partitioned_table: bool,
    /// Whether it is GRANT/REVOKE, ALTER … OWNER, COMMENT or SECURITY LABEL on a large object
    /// (large objects are not decoded).
    pub large_object: bool,
    /// For statements on roles and tablespaces (which event triggers never see): how they
    /// replay.
    pub global_replay: Option<GlobalReplay>,
}

/// An index that a statement names and that is invalid on the source, as found before the
/// statement runs (a DROP removes it, a RENAME renames it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidIndex {
    /// DROP INDEX drops one.
    Dropped,
    /// ALTER INDEX (also ATTACH PARTITION of it), ALTER TABLE or COMMENT ON INDEX on it: its
    /// schema and name, in the server's encoding.
    Named(Vec<u8>, Vec<u8>),
}

/// How a statement naming an index invalid on the source is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexGuard {
    /// `DROP INDEX IF EXISTS`.
    IfExists,
    /// Run only where the index (schema, name) exists.
    IfPresent(String, String),
}

/// How a statement on roles or tablespaces replays. Both are shared by every database of a
/// cluster, and a restore usually runs in a cluster that has roles of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobalReplay {
    /// CREATE ROLE/USER/GROUP of the role named: replayed only where no such role exists.
    CreateRoleIfMissing(String),
    /// CREATE TABLESPACE of the tablespace named: written from the catalog, outside any
    /// transaction (it cannot run in one), and created at restore only where missing.
    CreateTablespace(String),
    /// A statement on the database it runs in (GRANT … ON DATABASE, ALTER DATABASE … SET /
    /// OWNER TO, ALTER ROLE … IN DATABASE … SET, COMMENT ON DATABASE; the database's name):
    /// replayed on the database that replays it, whatever its name.
    OnThisDatabase(String),
    /// Replayed as written (passwords removed): ALTER ROLE with options other than a
    /// password, GRANT/REVOKE of roles, ALTER ROLE … RENAME, ALTER ROLE … SET, ALTER
    /// TABLESPACE, GRANT/REVOKE on tablespaces.
    AsWritten,
    /// Not replayed: statements on other databases, ALTER DATABASE … RENAME / WITH / SET
    /// TABLESPACE and settings of preload libraries (the target may not have them), DROP
    /// ROLE and DROP TABLESPACE (a restore never drops them), a
    /// password-only ALTER ROLE (passwords come with the globals snapshots).
    Not,
}

/// The statement the active portal is running, if any: the top-level statement the client
/// sent.
pub fn active_statement() -> Option<ActiveStatement> {
    // SAFETY: ActivePortal is either null or the portal being run by this backend, valid while
    // its statement executes (we are called from within it).
    unsafe {
        let portal = pg_sys::ActivePortal;
        if portal.is_null() || (*portal).sourceText.is_null() {
            return None;
        }
        let stmts = (*portal).stmts;
        if stmts.is_null() || (*stmts).length != 1 {
            return None;
        }
        let node = (*(*stmts).elements).ptr_value.cast::<pg_sys::Node>();
        if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_PlannedStmt {
            return None;
        }
        statement_of(node.cast(), (*portal).sourceText)
    }
}

/// The command tag of a planned utility statement (e.g. "CREATE TABLE"), without copying.
///
/// # Safety
/// `planned` is null or a valid utility PlannedStmt.
pub unsafe fn command_tag<'a>(planned: *mut pg_sys::PlannedStmt) -> Option<&'a [u8]> {
    // SAFETY: per the function contract; command tag names are static strings.
    unsafe {
        if planned.is_null() || (*planned).utilityStmt.is_null() {
            return None;
        }
        let tag = pg_sys::CreateCommandTag((*planned).utilityStmt);
        Some(CStr::from_ptr(pg_sys::GetCommandTagName(tag)).to_bytes())
    }
}

/// The command tag, own text and CREATE TABLE AS details of a planned utility statement.
///
/// # Safety
/// `planned` is a valid utility PlannedStmt and `source` the NUL-terminated query string it
/// was parsed from; `stmt_location`/`stmt_len` are byte offsets into it (len 0 = rest of the
/// string), as the parser sets them for each raw statement.
pub unsafe fn statement_of(
    planned: *mut pg_sys::PlannedStmt,
    source: *const std::ffi::c_char,
) -> Option<ActiveStatement> {
    // SAFETY: per the function contract.
    unsafe {
        if planned.is_null() || source.is_null() {
            return None;
        }
        let utility = (*planned).utilityStmt;
        if utility.is_null() {
            return None;
        }
        let tag = String::from_utf8_lossy(command_tag(planned)?).into_owned();
        let (global_replay, created_name) = global_replay(utility);
        let source = CStr::from_ptr(source).to_bytes();
        let start = usize::try_from((*planned).stmt_location)
            .unwrap_or(0)
            .min(source.len());
        let len = usize::try_from((*planned).stmt_len).unwrap_or(0);
        let end = if len == 0 {
            source.len()
        } else {
            (start + len).min(source.len())
        };
        // A created object's name is read with the statement, so both have one spelling.
        let mut bytes = source[start..end].to_vec();
        if let Some(name) = created_name {
            bytes.push(0);
            bytes.extend_from_slice(name);
        }
        let (mut text, spelling) = super::server_text::read(&bytes);
        let mut take_name = || {
            let at = text.rfind('\0').expect("invariant: the name follows a NUL");
            let name = text[at + 1..].to_owned();
            text.truncate(at);
            name
        };
        let global_replay = match global_replay {
            Some(GlobalReplay::CreateRoleIfMissing(_)) => {
                Some(GlobalReplay::CreateRoleIfMissing(take_name()))
            }
            Some(GlobalReplay::CreateTablespace(_)) => {
                Some(GlobalReplay::CreateTablespace(take_name()))
            }
            Some(GlobalReplay::OnThisDatabase(_)) => {
                Some(GlobalReplay::OnThisDatabase(take_name()))
            }
            other => other,
        };
        let (ctas, explained) = table_as_of(utility);
        let table_as = if ctas.is_null() {
            None
        } else {
            let into = (*ctas).into;
            let temporary = !into.is_null()
                && !(*into).rel.is_null()
                && (*(*into).rel).relpersistence as u8 == pg_sys::RELPERSISTENCE_TEMP;
            // Parse analysis wraps the EXECUTE in a utility Query.
            let mut query = (*ctas).query;
            if !query.is_null() && (*query).type_ == pg_sys::NodeTag::T_Query {
                query = (*query.cast::<pg_sys::Query>()).utilityStmt;
            }
            let executes = !query.is_null() && (*query).type_ == pg_sys::NodeTag::T_ExecuteStmt;
            let prepared = if executes {
                prepared_statement(query.cast())
                    .map(|(bytes, parameter_types, column_names)| {
                        (
                            super::server_text::read(&bytes),
                            parameter_types,
                            column_names,
                        )
                    })
                    .filter(|((_, s), _, _)| *s == spelling)
                    .map(|((text, _), parameter_types, column_names)| Prepared {
                        text,
                        parameter_types,
                        column_names,
                    })
            } else {
                None
            };
            Some(TableAs {
                temporary,
                select_into: (*ctas).is_select_into,
                executes,
                prepared,
                explained,
                materialized: compat::creates_materialized_view(ctas),
            })
        };
        let (concurrent, detaches) = concurrency(utility);
        Some(ActiveStatement {
            tag,
            text,
            spelling,
            table_as,
            concurrent,
            detaches,
            temporary: names_only_temporary(utility),
            // Known only before the statement runs (see `copies_temporary_table`).
            likes_temporary: false,
            computed_bound_at: None,
            attached_partition: None,
            invalid_index: None,
            // Known only before it runs (see `indexes_partitioned_table`).
            on_partitioned_table: false,
            large_object: on_large_object(utility),
            global_replay,
        })
    }
}

/// How a statement on roles or tablespaces replays, and the name of what a CREATE ROLE or
/// CREATE TABLESPACE creates.
///
/// # Safety
/// `utility` is a valid utility statement node.
unsafe fn global_replay<'a>(
    utility: *mut pg_sys::Node,
) -> (Option<GlobalReplay>, Option<&'a [u8]>) {
    use GlobalReplay::{AsWritten, CreateRoleIfMissing, CreateTablespace, Not};
    let named = |name: *const std::ffi::c_char, replay: GlobalReplay| {
        if name.is_null() {
            (Some(Not), None)
        } else {
            // SAFETY: a NUL-terminated name from the parse tree.
            (
                Some(replay),
                Some(unsafe { CStr::from_ptr(name) }.to_bytes()),
            )
        }
    };
    // SAFETY: each cast follows the node's tag; option lists hold DefElem nodes, whose names
    // are NUL-terminated strings; these node layouts are the same in every supported major.
    unsafe {
        match (*utility).type_ {
            pg_sys::NodeTag::T_CreateRoleStmt => named(
                (*utility.cast::<pg_sys::CreateRoleStmt>()).role,
                CreateRoleIfMissing(String::new()),
            ),
            pg_sys::NodeTag::T_CreateTableSpaceStmt => named(
                (*utility.cast::<pg_sys::CreateTableSpaceStmt>()).tablespacename,
                CreateTablespace(String::new()),
            ),
            pg_sys::NodeTag::T_AlterRoleStmt => {
                let options = (*utility.cast::<pg_sys::AlterRoleStmt>()).options;
                let count = if options.is_null() {
                    0
                } else {
                    (*options).length
                };
                let others = (0..usize::try_from(count).unwrap_or(0))
                    .filter(|&i| {
                        let def = (*(*options).elements.add(i))
                            .ptr_value
                            .cast::<pg_sys::DefElem>();
                        def.is_null()
                            || (*def).defname.is_null()
                            || CStr::from_ptr((*def).defname).to_bytes() != b"password"
                    })
                    .count();
                (Some(if others == 0 { Not } else { AsWritten }), None)
            }
            pg_sys::NodeTag::T_AlterRoleSetStmt => {
                let stmt = utility.cast::<pg_sys::AlterRoleSetStmt>();
                if (*stmt).database.is_null() {
                    (Some(AsWritten), None)
                } else {
                    this_database(Some((*stmt).database.cast_const()))
                }
            }
            pg_sys::NodeTag::T_DropRoleStmt | pg_sys::NodeTag::T_DropTableSpaceStmt => {
                (Some(Not), None)
            }
            pg_sys::NodeTag::T_GrantRoleStmt | pg_sys::NodeTag::T_AlterTableSpaceOptionsStmt => {
                (Some(AsWritten), None)
            }
            pg_sys::NodeTag::T_RenameStmt => {
                let kind = (*utility.cast::<pg_sys::RenameStmt>()).renameType;
                global_kind(kind)
            }
            pg_sys::NodeTag::T_AlterOwnerStmt => {
                let stmt = utility.cast::<pg_sys::AlterOwnerStmt>();
                if (*stmt).objectType == pg_sys::ObjectType::OBJECT_DATABASE {
                    this_database(compat::string_node_value((*stmt).object))
                } else {
                    global_kind((*stmt).objectType)
                }
            }
            pg_sys::NodeTag::T_CommentStmt => {
                let stmt = utility.cast::<pg_sys::CommentStmt>();
                if (*stmt).objtype == pg_sys::ObjectType::OBJECT_DATABASE {
                    this_database(compat::string_node_value((*stmt).object))
                } else {
                    global_kind((*stmt).objtype)
                }
            }
            pg_sys::NodeTag::T_GrantStmt => {
                let grant = utility.cast::<pg_sys::GrantStmt>();
                let objects = (*grant).objects;
                if (*grant).targtype != pg_sys::GrantTargetType::ACL_TARGET_OBJECT {
                    (None, None)
                } else if (*grant).objtype == pg_sys::ObjectType::OBJECT_TABLESPACE {
                    (Some(AsWritten), None)
                } else if (*grant).objtype != pg_sys::ObjectType::OBJECT_DATABASE {
                    (None, None)
                } else if objects.is_null() || (*objects).length != 1 {
                    (Some(Not), None)
                } else {
                    let only = (*(*objects).elements).ptr_value.cast::<pg_sys::Node>();
                    this_database(compat::string_node_value(only))
                }
            }
            pg_sys::NodeTag::T_AlterDatabaseSetStmt => {
                let stmt = utility.cast::<pg_sys::AlterDatabaseSetStmt>();
                let set = (*stmt).setstmt;
                let preload = !set.is_null()
                    && !(*set).name.is_null()
                    && CStr::from_ptr((*set).name)
                        .to_bytes()
                        .ends_with(b"preload_libraries");
                if preload {
                    (Some(Not), None)
                } else {
                    this_database(Some((*stmt).dbname.cast_const()))
                }
            }
            pg_sys::NodeTag::T_AlterDatabaseStmt => (Some(Not), None),
            _ => (None, None),
        }
    }
}

/// RENAME / OWNER TO / COMMENT of a role or tablespace replays as written; RENAME of a
/// database does not; of anything else, it is not a statement on shared objects.
fn global_kind<'a>(kind: pg_sys::ObjectType::Type) -> (Option<GlobalReplay>, Option<&'a [u8]>) {
    let replay = if kind == pg_sys::ObjectType::OBJECT_ROLE
        || kind == pg_sys::ObjectType::OBJECT_TABLESPACE
    {
        Some(GlobalReplay::AsWritten)
    } else if kind == pg_sys::ObjectType::OBJECT_DATABASE {
        Some(GlobalReplay::Not)
    } else {
        None
    };
    (replay, None)
}

/// A statement on the database named `name`: replayed on the replaying database if that is
/// the database this session is connected to; another database is not this stream's.
///
/// # Safety
/// `name` is None, null or a NUL-terminated string that lives as long as the parse tree.
unsafe fn this_database<'a>(
    name: Option<*const std::ffi::c_char>,
) -> (Option<GlobalReplay>, Option<&'a [u8]>) {
    let Some(name) = name.filter(|n| !n.is_null()) else {
        return (Some(GlobalReplay::Not), None);
    };
    // SAFETY: per the function contract; get_database_name returns a palloc'd copy (or null)
    // of this backend's database name, read here only.
    unsafe {
        let named = CStr::from_ptr(name).to_bytes();
        let current = pg_sys::get_database_name(pg_sys::MyDatabaseId);
        if current.is_null() || CStr::from_ptr(current).to_bytes() != named {
            return (Some(GlobalReplay::Not), None);
        }
        (
            Some(GlobalReplay::OnThisDatabase(String::new())),
            Some(named),
        )
    }
}

/// The CREATE TABLE AS (SELECT INTO, CREATE MATERIALIZED VIEW) a utility statement is or,
/// for EXPLAIN ANALYZE, runs (then true); null for anything else.
///
/// # Safety
/// `utility` is a valid utility statement node.
unsafe fn table_as_of(utility: *mut pg_sys::Node) -> (*mut pg_sys::CreateTableAsStmt, bool) {
    // SAFETY: each cast follows the node's tag; EXPLAIN's options are DefElem nodes, and its
    // query has been through parse analysis (a utility Query around the CREATE TABLE AS).
    unsafe {
        match (*utility).type_ {
            pg_sys::NodeTag::T_CreateTableAsStmt => (utility.cast(), false),
            pg_sys::NodeTag::T_ExplainStmt => {
                let explain = utility.cast::<pg_sys::ExplainStmt>();
                let options = (*explain).options;
                let count = if options.is_null() {
                    0
                } else {
                    (*options).length
                };
                let analyze = (0..usize::try_from(count).unwrap_or(0)).any(|i| {
                    let def = (*(*options).elements.add(i))
                        .ptr_value
                        .cast::<pg_sys::DefElem>();
                    !def.is_null()
                        && !(*def).defname.is_null()
                        && CStr::from_ptr((*def).defname).to_bytes() == b"analyze"
                        && pg_sys::defGetBoolean(def)
                });
                let mut query = (*explain).query;
                if !query.is_null() && (*query).type_ == pg_sys::NodeTag::T_Query {
                    query = (*query.cast::<pg_sys::Query>()).utilityStmt;
                }
                if analyze
                    && !query.is_null()
                    && (*query).type_ == pg_sys::NodeTag::T_CreateTableAsStmt
                {
                    (query.cast(), true)
                } else {
                    (std::ptr::null_mut(), false)
                }
            }
            _ => (std::ptr::null_mut(), false),
        }
    }
}

/// The text (its own statement within the query string that prepared it), parameter types
/// and result column names of the prepared statement an EXECUTE names, if this session has
/// it.
///
/// # Safety
/// `execute` is a valid ExecuteStmt.
unsafe fn prepared_statement(
    execute: *mut pg_sys::ExecuteStmt,
) -> Option<(Vec<u8>, Vec<String>, Vec<String>)> {
    // SAFETY: a prepared statement and its plan source live in the session's hash table while
    // this statement runs; the raw statement's location and length are byte offsets into its
    // query string; format_type_be returns a palloc'd NUL-terminated name.
    unsafe {
        if (*execute).name.is_null() {
            return None;
        }
        let prepared = pg_sys::FetchPreparedStatement((*execute).name, false);
        if prepared.is_null() || (*prepared).plansource.is_null() {
            return None;
        }
        let source = (*prepared).plansource;
        let raw = (*source).raw_parse_tree;
        if (*source).query_string.is_null() || raw.is_null() {
            return None;
        }
        let query = CStr::from_ptr((*source).query_string).to_bytes();
        let start = usize::try_from((*raw).stmt_location)
            .unwrap_or(0)
            .min(query.len());
        let len = usize::try_from((*raw).stmt_len).unwrap_or(0);
        let end = if len == 0 {
            query.len()
        } else {
            (start + len).min(query.len())
        };
        let count = usize::try_from((*source).num_params).unwrap_or(0);
        let types = (0..count)
            .map(|i| {
                let name = pg_sys::format_type_be(*(*source).param_types.add(i));
                CStr::from_ptr(name).to_string_lossy().into_owned()
            })
            .collect();
        let result = pg_sys::FetchPreparedStatementResultDesc(prepared);
        let columns = if result.is_null() {
            Vec::new()
        } else {
            compat::tuple_desc_attrs(result)
                .iter()
                .filter(|a| !a.attisdropped)
                .map(|a| {
                    CStr::from_ptr(a.attname.data.as_ptr())
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        };
        Some((query[start..end].to_vec(), types, columns))
    }
}

/// Whether a CREATE TABLE is TEMP (or in pg_temp), an ALTER TABLE or CREATE INDEX names a
/// table in pg_temp, or a DROP names only pg_temp objects.
///
/// # Safety
/// `utility` is a valid utility statement node.
unsafe fn names_only_temporary(utility: *mut pg_sys::Node) -> bool {
    let in_pg_temp = |schema: *const std::ffi::c_char| {
        // SAFETY: a NUL-terminated name from the parse tree, or null.
        !schema.is_null()
            && unsafe { CStr::from_ptr(schema) }
                .to_bytes()
                .starts_with(b"pg_temp")
    };
    // SAFETY: each cast follows the node's tag; DROP's objects are lists of String nodes
    // (possibly qualified names) for relations.
    unsafe {
        match (*utility).type_ {
            pg_sys::NodeTag::T_CreateStmt => {
                let rel = (*utility.cast::<pg_sys::CreateStmt>()).relation;
                !rel.is_null()
                    && ((*rel).relpersistence as u8 == pg_sys::RELPERSISTENCE_TEMP
                        || in_pg_temp((*rel).schemaname))
            }
            pg_sys::NodeTag::T_AlterTableStmt => {
                temporary_relation((*utility.cast::<pg_sys::AlterTableStmt>()).relation)
            }
            pg_sys::NodeTag::T_IndexStmt => {
                temporary_relation((*utility.cast::<pg_sys::IndexStmt>()).relation)
            }
            pg_sys::NodeTag::T_CreateTrigStmt => {
                temporary_relation((*utility.cast::<pg_sys::CreateTrigStmt>()).relation)
            }
            pg_sys::NodeTag::T_RuleStmt => {
                temporary_relation((*utility.cast::<pg_sys::RuleStmt>()).relation)
            }
            pg_sys::NodeTag::T_CreatePolicyStmt => {
                temporary_relation((*utility.cast::<pg_sys::CreatePolicyStmt>()).table)
            }
            pg_sys::NodeTag::T_AlterPolicyStmt => {
                temporary_relation((*utility.cast::<pg_sys::AlterPolicyStmt>()).table)
            }
            pg_sys::NodeTag::T_GrantStmt => {
                let grant = utility.cast::<pg_sys::GrantStmt>();
                let objects = (*grant).objects;
                (*grant).targtype == pg_sys::GrantTargetType::ACL_TARGET_OBJECT
                    && (*grant).objtype == pg_sys::ObjectType::OBJECT_TABLE
                    && !objects.is_null()
                    && (*objects).length > 0
                    && (0..usize::try_from((*objects).length).unwrap_or(0)).all(|i| {
                        let rv = (*(*objects).elements.add(i))
                            .ptr_value
                            .cast::<pg_sys::RangeVar>();
                        !rv.is_null()
                            && (*rv).type_ == pg_sys::NodeTag::T_RangeVar
                            && temporary_relation(rv)
                    })
            }
            pg_sys::NodeTag::T_CommentStmt => {
                let comment = utility.cast::<pg_sys::CommentStmt>();
                let object = (*comment).object;
                matches!(
                    (*comment).objtype,
                    pg_sys::ObjectType::OBJECT_TABLE
                        | pg_sys::ObjectType::OBJECT_VIEW
                        | pg_sys::ObjectType::OBJECT_INDEX
                        | pg_sys::ObjectType::OBJECT_SEQUENCE
                ) && !object.is_null()
                    && (*object).type_ == pg_sys::NodeTag::T_List
                    && temporary_relation(pg_sys::makeRangeVarFromNameList(object.cast()))
            }
            pg_sys::NodeTag::T_DropStmt => {
                let objects = (*utility.cast::<pg_sys::DropStmt>()).objects;
                if objects.is_null() || (*objects).length == 0 {
                    return false;
                }
                (0..usize::try_from((*objects).length).unwrap_or(0)).all(|i| {
                    let name = (*(*objects).elements.add(i))
                        .ptr_value
                        .cast::<pg_sys::Node>();
                    if name.is_null() || (*name).type_ != pg_sys::NodeTag::T_List {
                        return false;
                    }
                    let parts = name.cast::<pg_sys::List>();
                    (*parts).length >= 2
                        && super::compat::string_node_value(
                            (*(*parts).elements).ptr_value.cast::<pg_sys::Node>(),
                        )
                        .is_some_and(in_pg_temp)
                })
            }
            _ => false,
        }
    }
}

/// Whether a CREATE TABLE copies a temporary table with `LIKE`. Asked before the statement
/// runs: its execution replaces the LIKE clauses of the tree by the columns they copied.
///
/// # Safety
/// `pstmt` is a valid planned statement; called inside a transaction.
pub unsafe fn copies_temporary_table(pstmt: *mut pg_sys::PlannedStmt) -> bool {
    // SAFETY: the cast follows the node's tag; tableElts is a List of nodes.
    unsafe {
        let utility = (*pstmt).utilityStmt;
        if utility.is_null() || (*utility).type_ != pg_sys::NodeTag::T_CreateStmt {
            return false;
        }
        let elements = (*utility.cast::<pg_sys::CreateStmt>()).tableElts;
        if elements.is_null() {
            return false;
        }
        (0..usize::try_from((*elements).length).unwrap_or(0)).any(|i| {
            let node = (*(*elements).elements.add(i))
                .ptr_value
                .cast::<pg_sys::Node>();
            !node.is_null()
                && (*node).type_ == pg_sys::NodeTag::T_TableLikeClause
                && temporary_relation((*node.cast::<pg_sys::TableLikeClause>()).relation)
        })
    }
}

/// For a CREATE TABLE … PARTITION OF whose bound holds anything but constants (MINVALUE and
/// MAXVALUE included): where its FROM, IN or WITH is, in bytes from the statement's start.
///
/// # Safety
/// `pstmt` is a valid planned statement.
pub unsafe fn computed_partition_bound(pstmt: *mut pg_sys::PlannedStmt) -> Option<usize> {
    // SAFETY: the cast follows the node's tag.
    unsafe {
        let utility = (*pstmt).utilityStmt;
        if utility.is_null() || (*utility).type_ != pg_sys::NodeTag::T_CreateStmt {
            return None;
        }
        computed_bound_at(pstmt, (*utility.cast::<pg_sys::CreateStmt>()).partbound)
    }
}

/// For an ALTER TABLE … ATTACH PARTITION whose bound holds anything but constants: where
/// its FROM, IN or WITH is (as [`computed_partition_bound`]), and the partition it attaches.
///
/// # Safety
/// `pstmt` is a valid planned statement; called inside a transaction.
pub unsafe fn computed_attach_bound(
    pstmt: *mut pg_sys::PlannedStmt,
) -> Option<(usize, pg_sys::Oid)> {
    // SAFETY: the casts follow the nodes' tags; an ALTER TABLE's commands are AlterTableCmd
    // nodes, an ATTACH PARTITION's definition a PartitionCmd. A missing relation gives
    // InvalidOid (no error); no lock is taken (the statement takes its own).
    unsafe {
        let utility = (*pstmt).utilityStmt;
        if utility.is_null() || (*utility).type_ != pg_sys::NodeTag::T_AlterTableStmt {
            return None;
        }
        attached_partitions(utility.cast())
            .into_iter()
            .find_map(|partition| {
                let at = computed_bound_at(pstmt, (*partition).bound)?;
                let relid = relation_oid((*partition).name);
                (relid != pg_sys::InvalidOid).then_some((at, relid))
            })
    }
}

/// The PartitionCmd of each ATTACH PARTITION among an ALTER TABLE's commands.
///
/// # Safety
/// `stmt` points to a valid AlterTableStmt.
unsafe fn attached_partitions(stmt: *mut pg_sys::AlterTableStmt) -> Vec<*mut pg_sys::PartitionCmd> {
    // SAFETY: an ALTER TABLE's commands are AlterTableCmd nodes; a command's definition is
    // cast only after its tag says it is a PartitionCmd.
    unsafe {
        let cmds = (*stmt).cmds;
        let len = if cmds.is_null() { 0 } else { (*cmds).length };
        (0..usize::try_from(len).unwrap_or(0))
            .filter_map(|i| {
                let cmd = (*(*cmds).elements.add(i))
                    .ptr_value
                    .cast::<pg_sys::AlterTableCmd>();
                let attach = (*cmd).subtype == pg_sys::AlterTableType::AT_AttachPartition
                    && !(*cmd).def.is_null()
                    && (*(*cmd).def).type_ == pg_sys::NodeTag::T_PartitionCmd;
                attach.then(|| (*cmd).def.cast::<pg_sys::PartitionCmd>())
            })
            .collect()
    }
}

/// Where a partition bound that holds anything but constants begins, in bytes from the
/// statement's start.
///
/// # Safety
/// `pstmt` is a valid planned statement, `bound` null or a node of its tree.
unsafe fn computed_bound_at(
    pstmt: *mut pg_sys::PlannedStmt,
    bound: *mut pg_sys::PartitionBoundSpec,
) -> Option<usize> {
    // SAFETY: the casts follow the nodes' tags; the bound's lists are Lists of nodes.
    unsafe {
        if bound.is_null() || (*bound).is_default {
            return None;
        }
        let constant = |node: *mut pg_sys::Node| {
            let node = if !node.is_null() && (*node).type_ == pg_sys::NodeTag::T_TypeCast {
                (*node.cast::<pg_sys::TypeCast>()).arg
            } else {
                node
            };
            !node.is_null()
                && matches!(
                    (*node).type_,
                    pg_sys::NodeTag::T_A_Const | pg_sys::NodeTag::T_ColumnRef
                )
        };
        let computed = [
            (*bound).listdatums,
            (*bound).lowerdatums,
            (*bound).upperdatums,
        ]
        .into_iter()
        .filter(|list| !list.is_null())
        .any(|list| {
            (0..usize::try_from((*list).length).unwrap_or(0))
                .any(|i| !constant((*(*list).elements.add(i)).ptr_value.cast::<pg_sys::Node>()))
        });
        let at = usize::try_from((*bound).location).ok()?;
        let start = usize::try_from((*pstmt).stmt_location).unwrap_or(0);
        (computed && at >= start).then(|| at - start)
    }
}

/// The relation `rv` names as the search path finds it, or InvalidOid.
///
/// # Safety
/// `rv` is null or a valid RangeVar; called inside a transaction.
unsafe fn relation_oid(rv: *mut pg_sys::RangeVar) -> pg_sys::Oid {
    if rv.is_null() {
        return pg_sys::InvalidOid;
    }
    // SAFETY: per the function contract; a missing relation gives InvalidOid (no error), and
    // no lock is taken (the statement takes its own).
    unsafe {
        pg_sys::RangeVarGetRelidExtended(
            rv,
            pg_sys::NoLock as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        )
    }
}

/// Whether a CREATE INDEX is on a partitioned table. Asked before it runs, under the
/// statement's own search_path (the capture's functions run under another).
///
/// # Safety
/// `pstmt` is a valid planned statement; called inside a transaction.
pub unsafe fn indexes_partitioned_table(pstmt: *mut pg_sys::PlannedStmt) -> bool {
    // SAFETY: the cast follows the node's tag.
    unsafe {
        let utility = (*pstmt).utilityStmt;
        if utility.is_null() || (*utility).type_ != pg_sys::NodeTag::T_IndexStmt {
            return false;
        }
        let relid = relation_oid((*utility.cast::<pg_sys::IndexStmt>()).relation);
        relid != pg_sys::InvalidOid
            && pg_sys::get_rel_relkind(relid) as u8 == pg_sys::RELKIND_PARTITIONED_TABLE
    }
}

/// The permanent index (not a partitioned one) that `rv` names, if it is invalid.
///
/// # Safety
/// `rv` is null or a valid RangeVar; called inside a transaction.
unsafe fn invalid_index(rv: *mut pg_sys::RangeVar) -> Option<pg_sys::Oid> {
    // SAFETY: per the function contract; the lookups read the syscache of an existing
    // relation.
    unsafe {
        let relid = relation_oid(rv);
        (relid != pg_sys::InvalidOid
            && pg_sys::get_rel_relkind(relid) as u8 == pg_sys::RELKIND_INDEX
            && pg_sys::get_rel_persistence(relid) as u8 != pg_sys::RELPERSISTENCE_TEMP
            && !pg_sys::get_index_isvalid(relid))
        .then_some(relid)
    }
}

/// An index invalid on the source that a statement names: DROP INDEX, ALTER INDEX or ALTER
/// TABLE on one (also ATTACH PARTITION of one), RENAME of one, COMMENT ON INDEX. Asked before
/// the statement runs.
///
/// # Safety
/// `pstmt` is a valid planned statement; called inside a transaction.
pub unsafe fn invalid_index_named(pstmt: *mut pg_sys::PlannedStmt) -> Option<InvalidIndex> {
    let named = |relid: pg_sys::Oid| {
        // SAFETY: the relation exists (just found); the names are palloc'd NUL-terminated
        // strings, copied at once.
        unsafe {
            let schema = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid));
            let name = pg_sys::get_rel_name(relid);
            (!schema.is_null() && !name.is_null()).then(|| {
                InvalidIndex::Named(
                    CStr::from_ptr(schema).to_bytes().to_vec(),
                    CStr::from_ptr(name).to_bytes().to_vec(),
                )
            })
        }
    };
    // SAFETY: each cast follows the node's tag; DROP's objects are Lists of String nodes, an
    // ALTER TABLE's commands AlterTableCmd nodes, an ATTACH PARTITION's definition a
    // PartitionCmd, a COMMENT's object on an index a List of String nodes.
    unsafe {
        let utility = (*pstmt).utilityStmt;
        if utility.is_null() {
            return None;
        }
        match (*utility).type_ {
            pg_sys::NodeTag::T_DropStmt => {
                let drop = utility.cast::<pg_sys::DropStmt>();
                let objects = (*drop).objects;
                if (*drop).removeType != pg_sys::ObjectType::OBJECT_INDEX || objects.is_null() {
                    return None;
                }
                (0..usize::try_from((*objects).length).unwrap_or(0))
                    .any(|i| {
                        let name = (*(*objects).elements.add(i))
                            .ptr_value
                            .cast::<pg_sys::Node>();
                        !name.is_null()
                            && (*name).type_ == pg_sys::NodeTag::T_List
                            && invalid_index(pg_sys::makeRangeVarFromNameList(name.cast()))
                                .is_some()
                    })
                    .then_some(InvalidIndex::Dropped)
            }
            pg_sys::NodeTag::T_AlterTableStmt => {
                let stmt = utility.cast::<pg_sys::AlterTableStmt>();
                if let Some(relid) = invalid_index((*stmt).relation) {
                    return named(relid);
                }
                attached_partitions(stmt)
                    .into_iter()
                    .find_map(|partition| invalid_index((*partition).name).and_then(named))
            }
            pg_sys::NodeTag::T_RenameStmt => {
                let stmt = utility.cast::<pg_sys::RenameStmt>();
                invalid_index((*stmt).relation).and_then(named)
            }
            pg_sys::NodeTag::T_CommentStmt => {
                let comment = utility.cast::<pg_sys::CommentStmt>();
                let object = (*comment).object;
                if (*comment).objtype != pg_sys::ObjectType::OBJECT_INDEX
                    || object.is_null()
                    || (*object).type_ != pg_sys::NodeTag::T_List
                {
                    return None;
                }
                invalid_index(pg_sys::makeRangeVarFromNameList(object.cast())).and_then(named)
            }
            _ => None,
        }
    }
}

/// What a REINDEX processes: (relation, schema); InvalidOid for either when it names none
/// (SCHEMA names only a schema; DATABASE and SYSTEM name neither). None for other statements
/// and for a relation or schema that does not exist.
///
/// # Safety
/// `pstmt` is a valid planned statement; called inside a transaction.
pub unsafe fn reindex_scope(pstmt: *mut pg_sys::PlannedStmt) -> Option<(pg_sys::Oid, pg_sys::Oid)> {
    // SAFETY: the cast follows the node's tag; a schema's name is a NUL-terminated string.
    unsafe {
        let utility = (*pstmt).utilityStmt;
        if utility.is_null() || (*utility).type_ != pg_sys::NodeTag::T_ReindexStmt {
            return None;
        }
        let stmt = utility.cast::<pg_sys::ReindexStmt>();
        match (*stmt).kind {
            pg_sys::ReindexObjectType::REINDEX_OBJECT_INDEX
            | pg_sys::ReindexObjectType::REINDEX_OBJECT_TABLE => {
                let relid = relation_oid((*stmt).relation);
                (relid != pg_sys::InvalidOid).then_some((relid, pg_sys::InvalidOid))
            }
            pg_sys::ReindexObjectType::REINDEX_OBJECT_SCHEMA => {
                if (*stmt).name.is_null() {
                    return None;
                }
                let schema = pg_sys::get_namespace_oid((*stmt).name, true);
                (schema != pg_sys::InvalidOid).then_some((pg_sys::InvalidOid, schema))
            }
            _ => Some((pg_sys::InvalidOid, pg_sys::InvalidOid)),
        }
    }
}

/// Whether `rv` names a temporary relation: in a pg_temp schema, or found (as the search path
/// finds it, temporary tables first) to be one.
///
/// # Safety
/// `rv` is null or a valid RangeVar; called inside a transaction.
unsafe fn temporary_relation(rv: *mut pg_sys::RangeVar) -> bool {
    // SAFETY: per the function contract; a missing relation gives InvalidOid (no error), and
    // no lock is taken (the statement holds its own).
    unsafe {
        if rv.is_null() {
            return false;
        }
        if (*rv).relpersistence as u8 == pg_sys::RELPERSISTENCE_TEMP
            || (!(*rv).schemaname.is_null()
                && CStr::from_ptr((*rv).schemaname)
                    .to_bytes()
                    .starts_with(b"pg_temp"))
        {
            return true;
        }
        let relid = relation_oid(rv);
        relid != pg_sys::InvalidOid
            && pg_sys::get_rel_persistence(relid) as u8 == pg_sys::RELPERSISTENCE_TEMP
    }
}

/// Whether the statement is about a large object.
///
/// # Safety
/// `utility` is a valid utility statement node.
unsafe fn on_large_object(utility: *mut pg_sys::Node) -> bool {
    // SAFETY: each cast follows the node's tag.
    let objtype = unsafe {
        match (*utility).type_ {
            pg_sys::NodeTag::T_GrantStmt => (*utility.cast::<pg_sys::GrantStmt>()).objtype,
            pg_sys::NodeTag::T_AlterOwnerStmt => {
                (*utility.cast::<pg_sys::AlterOwnerStmt>()).objectType
            }
            pg_sys::NodeTag::T_CommentStmt => (*utility.cast::<pg_sys::CommentStmt>()).objtype,
            pg_sys::NodeTag::T_SecLabelStmt => (*utility.cast::<pg_sys::SecLabelStmt>()).objtype,
            _ => return false,
        }
    };
    objtype == pg_sys::ObjectType::OBJECT_LARGEOBJECT
}

/// (CONCURRENTLY, detaches a partition) for a utility statement's parse tree.
///
/// # Safety
/// `utility` is a valid utility statement node.
unsafe fn concurrency(utility: *mut pg_sys::Node) -> (bool, bool) {
    // SAFETY: each cast follows the node's tag; list cells of an ALTER TABLE hold
    // AlterTableCmd nodes.
    unsafe {
        match (*utility).type_ {
            pg_sys::NodeTag::T_IndexStmt => {
                ((*utility.cast::<pg_sys::IndexStmt>()).concurrent, false)
            }
            pg_sys::NodeTag::T_DropStmt => {
                ((*utility.cast::<pg_sys::DropStmt>()).concurrent, false)
            }
            pg_sys::NodeTag::T_RefreshMatViewStmt => (
                (*utility.cast::<pg_sys::RefreshMatViewStmt>()).concurrent,
                false,
            ),
            pg_sys::NodeTag::T_AlterTableStmt => {
                let cmds = (*utility.cast::<pg_sys::AlterTableStmt>()).cmds;
                let len = if cmds.is_null() { 0 } else { (*cmds).length };
                let mut found = (false, false);
                for i in 0..usize::try_from(len).unwrap_or(0) {
                    let cmd = (*(*cmds).elements.add(i))
                        .ptr_value
                        .cast::<pg_sys::AlterTableCmd>();
                    if (*cmd).subtype == pg_sys::AlterTableType::AT_DetachPartition {
                        found.1 = true;
                        found.0 |= super::compat::detach_concurrently(cmd);
                    }
                }
                found
            }
            _ => (false, false),
        }
    }
}

/// True while an extension script runs (CREATE/ALTER EXTENSION): its objects belong to the
/// extension and are recreated by the CREATE EXTENSION statement itself.
pub fn creating_extension() -> bool {
    // SAFETY: a plain read of a backend-global flag.
    unsafe { pg_sys::creating_extension }
}

/// Whether this session has made its temporary schema (no temporary object can exist in it
/// before): a cheap test that spares every other DDL statement a catalog query.
pub fn session_has_temporary_schema() -> bool {
    let (mut temp, mut temp_toast) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
    // SAFETY: GetTempNamespaceState only writes the two backend-global OIDs into the
    // pointers, which point at live locals.
    unsafe { pg_sys::GetTempNamespaceState(&mut temp, &mut temp_toast) };
    temp != pg_sys::InvalidOid
}

/// The session's `standard_conforming_strings`.
pub fn standard_conforming_strings() -> bool {
    // SAFETY: a plain read of the backend-global setting variable.
    unsafe { pg_sys::standard_conforming_strings }
}
