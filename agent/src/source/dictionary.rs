//! Reads table definitions from `information_schema` for [`crate::binlog::schema::refine`].

use mysql_async::prelude::Queryable;

use crate::binlog::schema::{DictColumn, DictTable};

/// Fetches `db.table`'s columns, collation ids and primary key. `None` if the table no
/// longer exists.
pub async fn fetch(
    conn: &mut mysql_async::Conn,
    db: &str,
    table: &str,
) -> Result<Option<DictTable>, mysql_async::Error> {
    type Row = (String, String, String, Option<u64>, Option<u64>, String);
    let rows: Vec<Row> = conn
        .exec(
            "SELECT c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, co.ID, k.ORDINAL_POSITION, \
                    c.IS_NULLABLE \
             FROM information_schema.COLUMNS c \
             LEFT JOIN information_schema.COLLATIONS co ON co.COLLATION_NAME = c.COLLATION_NAME \
             LEFT JOIN information_schema.KEY_COLUMN_USAGE k \
               ON k.TABLE_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME \
              AND k.COLUMN_NAME = c.COLUMN_NAME AND k.CONSTRAINT_NAME = 'PRIMARY' \
             WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ? \
             ORDER BY c.ORDINAL_POSITION",
            (db, table),
        )
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(DictTable {
        columns: rows
            .into_iter()
            .map(
                |(name, data_type, column_type, coll, pk, nullable)| DictColumn {
                    name,
                    data_type,
                    column_type,
                    collation_id: coll.and_then(|c| u16::try_from(c).ok()),
                    pk_ordinal: pk.and_then(|p| u32::try_from(p).ok()),
                    nullable: nullable.eq_ignore_ascii_case("YES"),
                },
            )
            .collect(),
    }))
}
