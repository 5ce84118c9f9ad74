//! Server-side printing (placeholder being replaced by the full upstream printers): every
//! kind gets upstream's default table, Name + Created At.

pub struct Column {
    pub name: &'static str,
    pub type_: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: i32,
}

pub fn columns(_kind: &str) -> Vec<Column> {
    vec![
        Column { name: "Name", type_: "string", format: "name", description: "", priority: 0 },
        Column { name: "Created At", type_: "date", format: "", description: "", priority: 0 },
    ]
}

pub fn cells(_kind: &str, obj: &serde_json::Value, _now: chrono::DateTime<chrono::Utc>) -> Vec<serde_json::Value> {
    vec![
        obj.pointer("/metadata/name").cloned().unwrap_or_default(),
        obj.pointer("/metadata/creationTimestamp").cloned().unwrap_or_default(),
    ]
}
