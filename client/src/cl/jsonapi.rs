//! Small helpers of the documents: CL-style ids, money triples, timestamps, JSON:API
//! resource envelopes, and the reproducible shuffle of `included`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// Base of the `links` in generated resources (never called).
const API_BASE: &str = "https://sim-organization.commercelayer.io/api";
/// Organization id put in every resource's `meta`.
const ORGANIZATION_ID: &str = "OrgSimulat";

/// A fresh CL-style resource id (10 base62 characters, like `XAyRWNUzyN`), distinct for
/// every call in the process and from one process to the next.
pub fn new_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static SEED: OnceLock<u64> = OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos ^ (u64::from(std::process::id()) << 32)
    });
    // splitmix64 is a bijection, so distinct counters give distinct 64-bit values.
    let mut x = splitmix64(seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)));
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..10)
        .map(|_| {
            let c = ALPHABET[(x % 62) as usize] as char;
            x /= 62;
            c
        })
        .collect()
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How CL formats an amount for display (`€57,00`, `$57.00`); other currencies get a plain
/// `57.00 XXX`.
pub fn formatted_amount(cents: i64, currency: &str) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let (units, rest) = (cents.abs() / 100, cents.abs() % 100);
    match currency {
        "EUR" => format!("{sign}€{units},{rest:02}"),
        "USD" => format!("{sign}${units}.{rest:02}"),
        "GBP" => format!("{sign}£{units}.{rest:02}"),
        other => format!("{sign}{units}.{rest:02} {other}"),
    }
}

/// Inserts CL's amount triple: `{field}_cents`, `{field}_float`, `formatted_{field}`.
pub(super) fn put_money(attrs: &mut Map<String, Value>, field: &str, cents: i64, currency: &str) {
    attrs.insert(format!("{field}_cents"), cents.into());
    attrs.insert(format!("{field}_float"), (cents as f64 / 100.0).into());
    attrs.insert(
        format!("formatted_{field}"),
        formatted_amount(cents, currency).into(),
    );
}

/// `2018-01-01T12:00:00.000Z`, CL's timestamp format.
fn timestamp(at: SystemTime) -> String {
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub(super) fn now() -> String {
    timestamp(SystemTime::now())
}

/// A JSON:API resource identifier, `{"type": kind, "id": id}`.
pub fn ident(kind: &str, id: &str) -> Value {
    json!({ "type": kind, "id": id })
}

/// A relationship of a resource: `Some(data)` when CL includes its target (so the linkage is
/// written), `None` when CL only links to it.
pub(super) type Rel<'a> = (&'a str, Option<Value>);

/// A resource as CL serialises one: `id`, `type`, `links`, `attributes`, `relationships`,
/// `meta`.
pub(super) fn resource(
    kind: &str,
    id: &str,
    attributes: Map<String, Value>,
    rels: Vec<Rel>,
) -> Value {
    let self_link = format!("{API_BASE}/{kind}/{id}");
    let relationships: Map<String, Value> = rels
        .into_iter()
        .map(|(name, data)| {
            let mut rel = json!({ "links": {
                "self": format!("{self_link}/relationships/{name}"),
                "related": format!("{self_link}/{name}"),
            }});
            if let Some(data) = data {
                rel["data"] = data;
            }
            (name.to_owned(), rel)
        })
        .collect();
    json!({
        "id": id,
        "type": kind,
        "links": { "self": self_link },
        "attributes": attributes,
        "relationships": relationships,
        "meta": { "mode": "test", "organization_id": ORGANIZATION_ID },
    })
}

/// Attributes every CL resource carries.
pub(super) fn common_attrs(attrs: &mut Map<String, Value>, metadata: &Value) {
    let at = now();
    attrs.insert("created_at".into(), at.clone().into());
    attrs.insert("updated_at".into(), at.into());
    attrs.insert("reference".into(), Value::Null);
    attrs.insert("reference_origin".into(), Value::Null);
    attrs.insert("metadata".into(), metadata.clone());
}

pub(super) fn attrs(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("attributes are built from json!({{...}})"),
    }
}

/// Reorders `items` with a permutation derived from `seed` (reproducible per order), and
/// never leaves the first item first, so a reader that picks by position is caught.
pub(super) fn shuffle<T>(items: &mut [T], seed: &str) {
    let mut state = seed.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    // Where the first item is now, followed through the swaps.
    let mut first = 0;
    for i in (1..items.len()).rev() {
        state = splitmix64(state);
        let j = (state % (i as u64 + 1)) as usize;
        items.swap(i, j);
        if first == i {
            first = j;
        } else if first == j {
            first = i;
        }
    }
    if items.len() > 1 && first == 0 {
        items.swap(0, 1);
    }
}

/// Tax in cents on `amount` at `rate_bp` basis points, rounded half up.
pub(super) fn tax_on(amount: i64, rate_bp: i64, included: bool) -> i64 {
    if included {
        // The amount already holds the tax: tax = amount - amount / (1 + rate).
        amount - (amount * 10_000 * 2 + 10_000 + rate_bp) / (2 * (10_000 + rate_bp))
    } else {
        (amount * rate_bp * 2 + 10_000) / 20_000
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn shuffle_is_a_permutation_that_never_leaves_the_first_item_first() {
        for n in 2..8usize {
            for seed in 0..2_000 {
                let mut items: Vec<usize> = (0..n).collect();
                shuffle(&mut items, &format!("seed-{seed}"));
                assert_ne!(items[0], 0, "n={n} seed={seed}: {items:?}");
                let mut sorted = items.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, (0..n).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn ids_are_cl_shaped_and_distinct() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(
            ids.iter()
                .all(|id| id.len() == 10 && id.chars().all(|c| c.is_ascii_alphanumeric()))
        );
    }

    #[test]
    fn amounts_and_timestamps_are_formatted_like_cl() {
        assert_eq!(formatted_amount(5700, "EUR"), "€57,00");
        assert_eq!(formatted_amount(-500, "USD"), "-$5.00");
        assert_eq!(formatted_amount(1205, "CHF"), "12.05 CHF");
        let at = UNIX_EPOCH + Duration::from_millis(1_514_808_000_123);
        assert_eq!(timestamp(at), "2018-01-01T12:00:00.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(timestamp(leap), "2000-02-29T00:00:00.000Z");
    }
}
