//! One topic for everything, with a `tag` header naming the business domain of each
//! table: the layout of Canal-to-RocketMQ migrations, where consumers subscribe by tag.
//! Config: `topic`, then `tag.<name>` = Canal-style table pattern, tried in file order;
//! `default_tag` for tables no pattern matches (unset: drop them); `header` names the
//! header carrying the tag (default `tag`; `sluice.format` makes the tag pick each
//! table's message format).

use sluice_sdk::canal::TableFilter;
use sluice_sdk::prelude::*;

/// The tagging router.
pub struct Tags {
    rules: Vec<(String, TableFilter)>,
    default_tag: Option<String>,
    header: String,
}

impl Tags {
    fn tag_for(&self, db: &str, table: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|(_, f)| f.matches(db, table))
            .map(|(t, _)| t.as_str())
            .or(self.default_tag.as_deref())
    }
}

impl Router for Tags {
    fn configure(config: &Config) -> Result<(Self, Subscription), String> {
        let topic = config.get("topic").ok_or("config `topic` is required")?;
        let mut rules = Vec::new();
        for (k, v) in config.with_prefix("tag.") {
            if let Some(tag) = k.strip_prefix("tag.") {
                let f = TableFilter::parse(v).map_err(|e| format!("{k}: {e}"))?;
                rules.push((tag.to_string(), f));
            }
        }
        if rules.is_empty() {
            return Err("no `tag.<name>` patterns configured".into());
        }
        let t = Tags {
            rules,
            default_tag: config.get("default_tag").map(str::to_string),
            header: config.get_or("header", "tag").to_string(),
        };
        Ok((
            t,
            Subscription::all()
                .before_images(false)
                .columns(Vec::<String>::new())
                .topics([topic]),
        ))
    }

    fn route(
        &mut self,
        tables: &Tables,
        batch: &Batch<'_>,
        out: &mut Decisions,
    ) -> Result<(), String> {
        for ev in batch.iter() {
            let (db, table) = match (tables.of(&ev), ev.ddl()) {
                (Some(t), _) => (t.database.as_str(), t.name.as_str()),
                (None, Some((d, t, _))) => (d, t),
                (None, None) => ("", ""),
            };
            match self.tag_for(db, table) {
                Some(tag) => {
                    let headers: &[(&str, &[u8])] = &[(self.header.as_str(), tag.as_bytes())];
                    out.send(Destination::to_index(0).headers(headers));
                }
                None => out.drop_event(),
            }
        }
        Ok(())
    }
}

sluice_sdk::export_router!(Tags);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_by_first_matching_pattern() {
        let mut h = Harness::<Tags>::new(&[
            ("topic", "binlog"),
            ("tag.order", "shop\\.orders?_.*"),
            ("tag.shop", "shop\\..*"),
            ("tag.user", "crm\\.user"),
        ])
        .unwrap();
        h.table(1, "shop", "order_2024", &[("id", "int")], &["id"]);
        h.table(2, "shop", "items", &[("id", "int")], &["id"]);
        h.table(3, "hr", "staff", &[("id", "int")], &["id"]);
        h.insert(1, &[Some("1")])
            .insert(2, &[Some("2")])
            .insert(3, &[Some("3")]);
        h.ddl("crm", "user", "ALTER TABLE user ADD age INT");
        let out = h.run().unwrap();
        let tag = |o: &Outcome| match o {
            Outcome::Sent(s) => String::from_utf8(s[0].headers[0].1.clone()).unwrap(),
            Outcome::Dropped => "-".into(),
            Outcome::Unsubscribed => "unsubscribed".into(),
        };
        assert_eq!(tag(&out[0]), "order");
        assert_eq!(tag(&out[1]), "shop");
        assert_eq!(tag(&out[2]), "-");
        assert_eq!(tag(&out[3]), "user");
    }

    #[test]
    fn header_name_is_configurable() {
        let mut h = Harness::<Tags>::new(&[
            ("topic", "binlog"),
            ("header", "sluice.format"),
            ("tag.debezium", "shop\\..*"),
        ])
        .unwrap();
        h.table(1, "shop", "items", &[("id", "int")], &["id"]);
        h.insert(1, &[Some("1")]);
        match &h.run().unwrap()[0] {
            Outcome::Sent(s) => assert_eq!(
                s[0].headers[0],
                ("sluice.format".to_string(), b"debezium".to_vec())
            ),
            other => panic!("{other:?}"),
        }
    }
}
