//! Commerce Layer simulator: what Commerce Layer (CL) does on its side of the external payment
//! gateway protocol, for end-to-end tests.
//!
//! It owns three things:
//! - **Payloads**: the JSON:API documents CL POSTs for authorize, capture, void, refund and
//!   customer token, with CL's real field names (see `shared/reference/commercelayer-resources.json`):
//!   an [`Order`] and its default includes (market, line items and their items, addresses,
//!   customer), in an order that is deliberately not the obvious one.
//! - **Signing**: [`sign`] / [`verify`], the `X-CommerceLayer-Signature` scheme.
//! - **CL-side state**: [`ClSimulator`] sends the calls and records what CL would record from
//!   the answers (authorizations, captures, voids, refunds with their balances, pending
//!   transactions settled later by a callback), so a test can run a whole payment lifecycle.
//!
//! The contract is `shared/reference/commerce-layer.md`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

/// The header CL signs its calls (and expects callbacks signed) with.
pub const SIGNATURE_HEADER: &str = "X-CommerceLayer-Signature";
/// JSON:API media type, what CL sends by default here.
pub const JSON_API: &str = "application/vnd.api+json";
/// Plain JSON, the other content type a gateway must accept.
pub const JSON: &str = "application/json";

/// Base of the `links` in generated resources (never called).
const API_BASE: &str = "https://sim-organization.commercelayer.io/api";
/// Organization id put in every resource's `meta`.
const ORGANIZATION_ID: &str = "OrgSimulat";

// ---------------------------------------------------------------------------------------
// Signatures
// ---------------------------------------------------------------------------------------

/// `X-CommerceLayer-Signature` of `body`: base64 (standard, padded) of HMAC-SHA256 keyed with
/// the secret's UTF-8 bytes as written (never hex-decoded), over the exact body bytes.
pub fn sign(secret: &str, body: &[u8]) -> String {
    STANDARD.encode(keyed_mac(secret, body).finalize().into_bytes())
}

/// Whether `signature` is the valid signature of `body`; the comparison is constant time.
pub fn verify(secret: &str, body: &[u8], signature: &str) -> bool {
    let Ok(claimed) = STANDARD.decode(signature) else {
        return false;
    };
    // `verify_slice` compares in constant time.
    keyed_mac(secret, body).verify_slice(&claimed).is_ok()
}

fn keyed_mac(secret: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    mac
}

// ---------------------------------------------------------------------------------------
// Small helpers: ids, money, time, JSON:API resources
// ---------------------------------------------------------------------------------------

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
fn put_money(attrs: &mut Map<String, Value>, field: &str, cents: i64, currency: &str) {
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

fn now() -> String {
    timestamp(SystemTime::now())
}

/// A JSON:API resource identifier, `{"type": kind, "id": id}`.
pub fn ident(kind: &str, id: &str) -> Value {
    json!({ "type": kind, "id": id })
}

/// A relationship of a resource: `Some(data)` when CL includes its target (so the linkage is
/// written), `None` when CL only links to it.
type Rel<'a> = (&'a str, Option<Value>);

/// A resource as CL serialises one: `id`, `type`, `links`, `attributes`, `relationships`,
/// `meta`.
fn resource(kind: &str, id: &str, attributes: Map<String, Value>, rels: Vec<Rel>) -> Value {
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
fn common_attrs(attrs: &mut Map<String, Value>, metadata: &Value) {
    let at = now();
    attrs.insert("created_at".into(), at.clone().into());
    attrs.insert("updated_at".into(), at.into());
    attrs.insert("reference".into(), Value::Null);
    attrs.insert("reference_origin".into(), Value::Null);
    attrs.insert("metadata".into(), metadata.clone());
}

fn attrs(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("attributes are built from json!({{...}})"),
    }
}

/// Reorders `items` with a permutation derived from `seed` (reproducible per order), and
/// never leaves the first item first, so a reader that picks by position is caught.
fn shuffle<T>(items: &mut [T], seed: &str) {
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
fn tax_on(amount: i64, rate_bp: i64, included: bool) -> i64 {
    if included {
        // The amount already holds the tax: tax = amount - amount / (1 + rate).
        amount - (amount * 10_000 * 2 + 10_000 + rate_bp) / (2 * (10_000 + rate_bp))
    } else {
        (amount * rate_bp * 2 + 10_000) / 20_000
    }
}

// ---------------------------------------------------------------------------------------
// The order and its includes
// ---------------------------------------------------------------------------------------

/// An SKU line item of an order (CL `line_items` with `item_type = "skus"` and an `item`
/// relationship to a `skus` resource).
#[derive(Debug, Clone, PartialEq)]
pub struct LineItem {
    pub id: String,
    pub sku_id: String,
    pub sku_code: String,
    pub name: String,
    pub quantity: i64,
    pub unit_amount_cents: i64,
}

impl LineItem {
    /// A line item for `quantity` × `sku_code` at `unit_amount_cents` each.
    pub fn sku(sku_code: &str, name: &str, quantity: i64, unit_amount_cents: i64) -> LineItem {
        LineItem {
            id: new_id(),
            sku_id: new_id(),
            sku_code: sku_code.into(),
            name: name.into(),
            quantity,
            unit_amount_cents,
        }
    }

    /// `quantity × unit_amount_cents`.
    pub fn total_amount_cents(&self) -> i64 {
        self.quantity * self.unit_amount_cents
    }
}

/// A CL `addresses` resource (shipping or billing address of an order).
#[derive(Debug, Clone, PartialEq)]
pub struct Address {
    pub id: String,
    pub first_name: String,
    pub last_name: String,
    pub company: Option<String>,
    pub line_1: String,
    pub line_2: Option<String>,
    pub city: String,
    pub zip_code: String,
    pub state_code: String,
    pub country_code: String,
    pub phone: String,
    pub email: String,
}

impl Address {
    /// A plausible Italian address for `email`.
    pub fn sample(email: &str) -> Address {
        Address {
            id: new_id(),
            first_name: "Ann".into(),
            last_name: "Smith".into(),
            company: None,
            line_1: "Via Roma 12".into(),
            line_2: Some("Scala B, int. 4".into()),
            city: "Milano".into(),
            zip_code: "20121".into(),
            state_code: "MI".into(),
            country_code: "IT".into(),
            phone: "+39 02 1234 5678".into(),
            email: email.into(),
        }
    }
}

/// The order's `customers` resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: String,
    pub email: String,
}

/// The order's `markets` resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Market {
    pub id: String,
    pub number: i64,
    pub code: String,
    pub name: String,
}

/// A CL order with its default includes. Fields are public so a test can set anything;
/// the `with_*` methods are shortcuts. Amounts are derived from the line items, shipping,
/// discount and tax settings (see [`Order::totals`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: String,
    pub number: String,
    /// The order's shareable token (not a payment token).
    pub token: String,
    pub currency_code: String,
    pub language_code: String,
    pub country_code: String,
    pub customer_email: String,
    pub status: String,
    pub payment_status: String,
    /// Whether prices already include taxes (CL `tax_included`).
    pub tax_included: bool,
    /// Tax rate in basis points (2200 = 22 %).
    pub tax_rate_bp: i64,
    pub line_items: Vec<LineItem>,
    /// Shipping cost; when non-zero it also appears as a `shipments` line item.
    pub shipping_cents: i64,
    /// Discount, zero or negative as CL writes it; when non-zero it also appears as a
    /// promotion line item.
    pub discount_cents: i64,
    pub shipping_address: Address,
    pub billing_address: Address,
    /// `None` for an order without a customer relationship.
    pub customer: Option<Customer>,
    pub market: Market,
    pub metadata: Value,
}

/// The amounts of an order, in cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub subtotal: i64,
    pub shipping: i64,
    pub discount: i64,
    pub subtotal_tax: i64,
    pub shipping_tax: i64,
    pub total_tax: i64,
    /// `total_amount_cents`: taxes excluded unless the prices include them.
    pub total: i64,
    /// `total_amount_with_taxes_cents`: what an authorize charges.
    pub total_with_taxes: i64,
}

static ORDER_NUMBER: AtomicU64 = AtomicU64::new(0);

impl Order {
    /// A realistic EUR order being placed: two SKU lines (2 × €29,00 and 1 × €45,00),
    /// €7,00 shipping, €10,00 discount, 22 % tax *excluded* from prices, so
    /// `total_amount_cents` (10000) and `total_amount_with_taxes_cents` (12200) differ and a
    /// host that charges the wrong one is caught.
    pub fn sample() -> Order {
        let email = "ann.smith@example.com";
        let seq = ORDER_NUMBER.fetch_add(1, Ordering::Relaxed);
        let mut billing = Address::sample(email);
        billing.company = Some("Smith Design S.r.l.".into());
        Order {
            id: new_id(),
            number: (4_200_000 + seq).to_string(),
            token: hex::encode(new_id()),
            currency_code: "EUR".into(),
            language_code: "it".into(),
            country_code: "IT".into(),
            customer_email: email.into(),
            status: "placing".into(),
            payment_status: "unpaid".into(),
            tax_included: false,
            tax_rate_bp: 2200,
            line_items: vec![
                LineItem::sku(
                    "TSHIRTMM000000FFFFFFXLXX",
                    "Men's Black T-shirt with White Logo (XL)",
                    2,
                    2900,
                ),
                LineItem::sku("BACKPACK000000FFFFFF", "Black Backpack", 1, 4500),
            ],
            shipping_cents: 700,
            discount_cents: -1000,
            shipping_address: Address::sample(email),
            billing_address: billing,
            customer: Some(Customer {
                id: new_id(),
                email: email.into(),
            }),
            market: Market {
                id: new_id(),
                number: 1234,
                code: "europe1".into(),
                name: "EU Market".into(),
            },
            metadata: json!({}),
        }
    }

    /// An order whose amount to authorize (`total_amount_with_taxes_cents`) is exactly
    /// `cents`: one line item, no shipping or discount, taxes included in the price.
    pub fn for_amount(currency: &str, cents: i64) -> Order {
        Order {
            currency_code: currency.into(),
            tax_included: true,
            line_items: vec![LineItem::sku("GIFTBOX0000000FFFFFF", "Gift box", 1, cents)],
            shipping_cents: 0,
            discount_cents: 0,
            ..Order::sample()
        }
    }

    /// Sets the currency.
    pub fn with_currency(mut self, currency: &str) -> Order {
        self.currency_code = currency.into();
        self
    }

    /// Replaces the SKU line items.
    pub fn with_line_items(mut self, items: Vec<LineItem>) -> Order {
        self.line_items = items;
        self
    }

    /// Sets shipping and discount (the discount zero or negative).
    pub fn with_shipping_and_discount(mut self, shipping: i64, discount: i64) -> Order {
        self.shipping_cents = shipping;
        self.discount_cents = discount;
        self
    }

    /// Sets whether prices include taxes and the rate in basis points.
    pub fn with_tax(mut self, included: bool, rate_bp: i64) -> Order {
        self.tax_included = included;
        self.tax_rate_bp = rate_bp;
        self
    }

    /// Sets the customer's email everywhere CL copies it.
    pub fn with_customer_email(mut self, email: &str) -> Order {
        self.customer_email = email.into();
        self.shipping_address.email = email.into();
        self.billing_address.email = email.into();
        if let Some(customer) = &mut self.customer {
            customer.email = email.into();
        }
        self
    }

    /// Drops the customer relationship (a guest checkout).
    pub fn guest(mut self) -> Order {
        self.customer = None;
        self
    }

    /// Sets the order's `metadata`.
    pub fn with_metadata(mut self, metadata: Value) -> Order {
        self.metadata = metadata;
        self
    }

    /// The amounts CL computes for this order.
    pub fn totals(&self) -> Totals {
        let subtotal: i64 = self
            .line_items
            .iter()
            .map(LineItem::total_amount_cents)
            .sum();
        let (shipping, discount) = (self.shipping_cents, self.discount_cents);
        let subtotal_tax = tax_on(subtotal + discount, self.tax_rate_bp, self.tax_included);
        let shipping_tax = tax_on(shipping, self.tax_rate_bp, self.tax_included);
        let total_tax = subtotal_tax + shipping_tax;
        let total = subtotal + shipping + discount;
        let total_with_taxes = if self.tax_included {
            total
        } else {
            total + total_tax
        };
        Totals {
            subtotal,
            shipping,
            discount,
            subtotal_tax,
            shipping_tax,
            total_tax,
            total,
            total_with_taxes,
        }
    }

    /// `total_amount_with_taxes_cents`, the amount an authorize should charge.
    pub fn total_amount_with_taxes_cents(&self) -> i64 {
        self.totals().total_with_taxes
    }

    /// The `orders` resource.
    pub fn resource(&self) -> Value {
        let rels = vec![
            ("market", Some(ident("markets", &self.market.id))),
            (
                "customer",
                Some(
                    self.customer
                        .as_ref()
                        .map_or(Value::Null, |c| ident("customers", &c.id)),
                ),
            ),
            (
                "shipping_address",
                Some(ident("addresses", &self.shipping_address.id)),
            ),
            (
                "billing_address",
                Some(ident("addresses", &self.billing_address.id)),
            ),
            (
                "line_items",
                Some(Value::Array(
                    self.all_line_items()
                        .iter()
                        .map(|l| ident("line_items", &l.id))
                        .collect(),
                )),
            ),
            ("order_subscriptions", Some(json!([]))),
            ("store", None),
            ("available_payment_methods", None),
            ("payment_method", None),
            ("payment_source", None),
            ("shipments", None),
            ("authorizations", None),
            ("captures", None),
            ("voids", None),
            ("refunds", None),
            ("transactions", None),
            ("attachments", None),
            ("events", None),
            ("tags", None),
            ("versions", None),
        ];
        resource("orders", &self.id, self.attributes(), rels)
    }

    fn attributes(&self) -> Map<String, Value> {
        let t = self.totals();
        let skus: i64 = self.line_items.iter().map(|l| l.quantity).sum();
        let mut a = attrs(json!({
            "number": self.number,
            "autorefresh": true,
            "place_async": false,
            "status": self.status,
            "payment_status": self.payment_status,
            "fulfillment_status": "unfulfilled",
            "guest": self.customer.is_none(),
            "editable": false,
            "customer_email": self.customer_email,
            "customer_type": "returning",
            "language_code": self.language_code,
            "currency_code": self.currency_code,
            "tax_included": self.tax_included,
            "tax_rate": self.tax_rate_bp as f64 / 10_000.0,
            "freight_taxable": true,
            "payment_method_taxable": false,
            "adjustment_taxable": false,
            "gift_card_taxable": false,
            "requires_billing_info": false,
            "country_code": self.country_code,
            "shipping_country_code_lock": null,
            "coupon_code": null,
            "gift_card_code": null,
        }));
        // Split in two: one json! this long exceeds the macro recursion limit.
        a.extend(attrs(json!({
            "skus_count": skus,
            "line_item_options_count": 0,
            "shipments_count": i64::from(self.shipping_cents != 0),
            "tax_calculations_count": 0,
            "validations_count": 0,
            "errors_count": 0,
            "payment_source_details": { "type": "external_payment" },
            "token": self.token,
            "cart_url": null,
            "return_url": null,
            "terms_url": null,
            "privacy_url": null,
            "checkout_url": null,
            "placed_at": null,
            "approved_at": null,
            "cancelled_at": null,
            "payment_updated_at": null,
            "fulfillment_updated_at": null,
            "refreshed_at": null,
            "archived_at": null,
            "expires_at": null,
        })));
        let c = &self.currency_code;
        let money = [
            ("subtotal_amount", t.subtotal),
            ("shipping_amount", t.shipping),
            ("payment_method_amount", 0),
            ("discount_amount", t.discount),
            ("adjustment_amount", 0),
            ("gift_card_amount", 0),
            ("total_tax_amount", t.total_tax),
            ("subtotal_tax_amount", t.subtotal_tax),
            ("shipping_tax_amount", t.shipping_tax),
            ("payment_method_tax_amount", 0),
            ("adjustment_tax_amount", 0),
            ("total_amount", t.total),
            ("total_taxable_amount", t.total),
            ("subtotal_taxable_amount", t.subtotal + t.discount),
            ("shipping_taxable_amount", t.shipping),
            ("payment_method_taxable_amount", 0),
            ("adjustment_taxable_amount", 0),
            ("total_amount_with_taxes", t.total_with_taxes),
            ("fees_amount", 0),
            ("duty_amount", 0),
            ("place_total_amount", t.total_with_taxes),
        ];
        for (field, cents) in money {
            put_money(&mut a, field, cents, c);
        }
        common_attrs(&mut a, &self.metadata);
        a
    }

    /// Every line item CL lists: the SKU lines, then a shipment line and a promotion line
    /// when the order has shipping or a discount.
    fn all_line_items(&self) -> Vec<LineRow> {
        let mut rows: Vec<LineRow> = self.line_items.iter().map(LineRow::from_sku).collect();
        // The ids of the extra lines derive from the order id so they stay stable.
        let stem: String = self.id.chars().take(9).collect();
        if self.shipping_cents != 0 {
            rows.push(LineRow {
                id: format!("{stem}S"),
                item_type: "shipments",
                item_id: format!("{stem}H"),
                sku_code: None,
                name: format!("Shipment #{}/S/001", self.number),
                quantity: 1,
                unit_amount_cents: self.shipping_cents,
            });
        }
        if self.discount_cents != 0 {
            rows.push(LineRow {
                id: format!("{stem}D"),
                item_type: "fixed_amount_promotions",
                item_id: format!("{stem}P"),
                sku_code: None,
                name: "Welcome discount".into(),
                quantity: 1,
                unit_amount_cents: self.discount_cents,
            });
        }
        rows
    }

    /// The order followed by everything CL includes with it by default, shuffled (the
    /// order resource is never first): find resources by type and id, not by position.
    pub fn included(&self) -> Vec<Value> {
        let mut out = vec![self.resource(), self.market_resource()];
        out.extend(self.customer.as_ref().map(customer_resource));
        out.push(address_resource(&self.shipping_address));
        out.push(address_resource(&self.billing_address));
        for row in self.all_line_items() {
            out.push(row.resource(&self.currency_code, self.tax_rate_bp, self.tax_included));
            out.push(row.item_resource(self));
        }
        shuffle(&mut out, &self.id);
        out
    }

    fn market_resource(&self) -> Value {
        let m = &self.market;
        let mut a = attrs(json!({
            "number": m.number,
            "name": m.name,
            "code": m.code,
            "facebook_pixel_id": null,
            "checkout_url": null,
            "external_prices_url": null,
            "external_order_validation_url": null,
            "private": false,
            "shipping_cost_cutoff": null,
            "disabled_at": null,
            "external_includes": null,
        }));
        common_attrs(&mut a, &json!({}));
        let rels = vec![
            ("merchant", None),
            ("price_list", None),
            ("inventory_model", None),
            ("tax_calculator", None),
        ];
        resource("markets", &m.id, a, rels)
    }
}

fn customer_resource(c: &Customer) -> Value {
    let mut a = attrs(json!({
        "email": c.email,
        "status": "repeat",
        "has_password": true,
        "total_orders_count": 3,
        "shopper_reference": null,
        "profile_id": null,
        "tax_exemption_code": null,
        "anonymization_info": null,
        "anonymization_status": null,
    }));
    common_attrs(&mut a, &json!({}));
    let rels = vec![
        ("customer_group", None),
        ("customer_addresses", None),
        ("customer_payment_sources", None),
        ("orders", None),
    ];
    resource("customers", &c.id, a, rels)
}

fn address_resource(ad: &Address) -> Value {
    let full_name = format!("{} {}", ad.first_name, ad.last_name);
    let line = match &ad.line_2 {
        Some(l2) => format!("{} {l2}", ad.line_1),
        None => ad.line_1.clone(),
    };
    let full_address = format!(
        "{line}, {} {} {} ({}) {}",
        ad.zip_code, ad.city, ad.state_code, ad.country_code, ad.phone
    );
    let mut a = attrs(json!({
        "business": ad.company.is_some(),
        "first_name": ad.first_name,
        "last_name": ad.last_name,
        "company": ad.company,
        "full_name": ad.company.clone().unwrap_or_else(|| full_name.clone()),
        "line_1": ad.line_1,
        "line_2": ad.line_2,
        "city": ad.city,
        "zip_code": ad.zip_code,
        "state_code": ad.state_code,
        "country_code": ad.country_code,
        "phone": ad.phone,
        "full_address": full_address,
        "name": format!("{full_name}, {full_address}"),
        "email": ad.email,
        "notes": null,
        "lat": null,
        "lng": null,
        "is_localized": false,
        "is_geocoded": false,
        "provider_name": null,
        "map_url": null,
        "static_map_url": null,
        "billing_info": null,
    }));
    common_attrs(&mut a, &json!({}));
    resource(
        "addresses",
        &ad.id,
        a,
        vec![("geocoder", None), ("tags", None)],
    )
}

/// One line of `order.line_items`, whatever its item type.
struct LineRow {
    id: String,
    item_type: &'static str,
    item_id: String,
    sku_code: Option<String>,
    name: String,
    quantity: i64,
    unit_amount_cents: i64,
}

impl LineRow {
    fn from_sku(l: &LineItem) -> LineRow {
        LineRow {
            id: l.id.clone(),
            item_type: "skus",
            item_id: l.sku_id.clone(),
            sku_code: Some(l.sku_code.clone()),
            name: l.name.clone(),
            quantity: l.quantity,
            unit_amount_cents: l.unit_amount_cents,
        }
    }

    fn resource(&self, currency: &str, tax_rate_bp: i64, tax_included: bool) -> Value {
        let total = self.quantity * self.unit_amount_cents;
        let mut a = attrs(json!({
            "sku_code": self.sku_code,
            "bundle_code": null,
            "quantity": self.quantity,
            "currency_code": currency,
            "name": self.name,
            "image_url": self.sku_code.as_ref().map(|c| format!("https://img.example.com/skus/{c}.png")),
            "discount_breakdown": {},
            "tax_rate": tax_rate_bp as f64 / 10_000.0,
            "tax_breakdown": {},
            "item_type": self.item_type,
            "frequency": null,
            "coupon_code": null,
            "rule_outcomes": null,
        }));
        put_money(&mut a, "unit_amount", self.unit_amount_cents, currency);
        put_money(
            &mut a,
            "compare_at_amount",
            self.unit_amount_cents,
            currency,
        );
        put_money(&mut a, "options_amount", 0, currency);
        put_money(&mut a, "discount", 0, currency);
        put_money(&mut a, "total_amount", total, currency);
        let tax = tax_on(total, tax_rate_bp, tax_included);
        put_money(&mut a, "tax_amount", tax, currency);
        common_attrs(&mut a, &json!({}));
        let rels = vec![
            ("order", None),
            ("item", Some(ident(self.item_type, &self.item_id))),
            ("line_item_options", None),
            ("events", None),
            ("tags", None),
        ];
        resource("line_items", &self.id, a, rels)
    }

    /// The included `item` of the line: a `skus`, `shipments` or promotion resource.
    fn item_resource(&self, order: &Order) -> Value {
        let currency = order.currency_code.as_str();
        let mut a = match self.item_type {
            "skus" => attrs(json!({
                "code": self.sku_code,
                "name": self.name,
                "description": format!("{} — simulated catalogue entry", self.name),
                "image_url": self.sku_code.as_ref().map(|c| format!("https://img.example.com/skus/{c}.png")),
                "pieces_per_pack": null,
                "weight": 300.0,
                "unit_of_weight": "gr",
                "hs_tariff_number": "6109100010",
                "do_not_ship": false,
                "do_not_track": false,
            })),
            "shipments" => {
                let mut a = attrs(json!({
                    "number": format!("{}/S/001", order.number),
                    "status": "upcoming",
                    "currency_code": currency,
                    "skus_count": order.line_items.iter().map(|l| l.quantity).sum::<i64>(),
                }));
                put_money(&mut a, "cost_amount", self.unit_amount_cents, currency);
                a
            }
            _ => {
                let mut a = attrs(json!({ "name": self.name, "currency_code": currency }));
                put_money(&mut a, "fixed_amount", -self.unit_amount_cents, currency);
                a
            }
        };
        common_attrs(&mut a, &json!({}));
        resource(self.item_type, &self.item_id, a, vec![("events", None)])
    }
}

// ---------------------------------------------------------------------------------------
// Payment resources and the five request bodies
// ---------------------------------------------------------------------------------------

/// A CL `external_payments` resource: the payment source an authorize or customer token
/// call is about. Its `id` is the natural idempotency key of an authorize.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalPayment {
    pub id: String,
    pub payment_source_token: String,
    pub options: Value,
    pub payment_instrument: Value,
    pub metadata: Value,
    pub reference: Option<String>,
    pub order: Order,
}

impl ExternalPayment {
    /// A new external payment on `order` with the PSP's `payment_source_token`.
    pub fn new(order: &Order, payment_source_token: &str) -> ExternalPayment {
        ExternalPayment {
            id: new_id(),
            payment_source_token: payment_source_token.into(),
            options: json!({}),
            payment_instrument: json!({}),
            metadata: json!({}),
            reference: None,
            order: order.clone(),
        }
    }

    /// The `external_payments` resource (relationship `order`).
    pub fn resource(&self) -> Value {
        let mut a = attrs(json!({
            "payment_source_token": self.payment_source_token,
            "options": self.options,
            "payment_instrument": self.payment_instrument,
        }));
        common_attrs(&mut a, &self.metadata);
        a.insert("reference".into(), json!(self.reference));
        let rels = vec![
            ("order", Some(ident("orders", &self.order.id))),
            ("payment_gateway", None),
            ("wallet", None),
            ("versions", None),
        ];
        resource("external_payments", &self.id, a, rels)
    }
}

/// An authorization as CL records it from a gateway's authorize answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Authorization {
    pub id: String,
    /// `<order number>/T/<nnn>`.
    pub number: String,
    /// The `transaction_token` the gateway answered.
    pub token: String,
    pub gateway_transaction_id: Option<String>,
    pub amount_cents: i64,
    pub currency: String,
    /// What is left to capture.
    pub capture_balance_cents: i64,
    /// What is left to void.
    pub void_balance_cents: i64,
    /// False while pending (answered 202) until a successful callback.
    pub succeeded: bool,
    pub action_id: Option<String>,
    /// The `metadata` the gateway answered (CL copies it onto the transaction).
    pub metadata: Value,
    pub message: Option<String>,
    pub external_payment_id: String,
    pub order: Order,
}

/// A capture as CL records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    pub id: String,
    pub number: String,
    pub token: String,
    pub gateway_transaction_id: Option<String>,
    pub amount_cents: i64,
    pub currency: String,
    /// What is left to refund.
    pub refund_balance_cents: i64,
    pub succeeded: bool,
    pub action_id: Option<String>,
    pub metadata: Value,
    pub message: Option<String>,
    pub authorization_id: String,
    pub order: Order,
}

/// A void or a refund as CL records it (`parent_id`: the authorization or the capture).
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    pub id: String,
    pub number: String,
    pub token: String,
    pub amount_cents: i64,
    pub succeeded: bool,
    pub action_id: Option<String>,
    pub parent_id: String,
}

/// What CL stores in the customer wallet after a customer token call.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedSource {
    pub customer_token: Option<String>,
    pub payment_source_token: String,
}

/// The fields CL's transaction resources (`authorizations`, `captures`...) share.
struct TxFields<'a> {
    kind: &'a str,
    number: &'a str,
    token: &'a str,
    gateway_transaction_id: Option<&'a str>,
    amount: i64,
    currency: &'a str,
    succeeded: bool,
    metadata: &'a Value,
}

impl TxFields<'_> {
    fn attributes(&self) -> Map<String, Value> {
        let mut a = attrs(json!({
            "number": self.number,
            "type": self.kind,
            "payment_method_type": "external_payments",
            "currency_code": self.currency,
            "succeeded": self.succeeded,
            "message": if self.succeeded { "Accepted" } else { "Pending" },
            "error_code": null,
            "error_detail": null,
            "token": self.token,
            "gateway_transaction_id": self.gateway_transaction_id,
        }));
        put_money(&mut a, "amount", self.amount, self.currency);
        common_attrs(&mut a, self.metadata);
        a
    }
}

impl Authorization {
    /// The `authorizations` resource CL sends for a capture (`capture_amount` = the amount
    /// to capture now) or a void (`capture_amount` = the balance).
    pub fn resource(&self, capture_amount_cents: i64) -> Value {
        let c = &self.currency;
        let mut a = TxFields {
            kind: "authorizations",
            number: &self.number,
            token: &self.token,
            gateway_transaction_id: self.gateway_transaction_id.as_deref(),
            amount: self.amount_cents,
            currency: c,
            succeeded: self.succeeded,
            metadata: &self.metadata,
        }
        .attributes();
        for field in [
            "cvv_code",
            "cvv_message",
            "avs_code",
            "avs_message",
            "fraud_review",
        ] {
            a.insert(field.into(), Value::Null);
        }
        put_money(&mut a, "capture_amount", capture_amount_cents, c);
        put_money(&mut a, "capture_balance", self.capture_balance_cents, c);
        put_money(&mut a, "void_balance", self.void_balance_cents, c);
        let rels = vec![
            ("order", Some(ident("orders", &self.order.id))),
            ("payment_source", None),
            ("captures", None),
            ("voids", None),
            ("attachments", None),
            ("events", None),
            ("versions", None),
        ];
        resource("authorizations", &self.id, a, rels)
    }
}

impl Capture {
    /// The `captures` resource CL sends for a refund of `refund_amount_cents`.
    pub fn resource(&self, refund_amount_cents: i64) -> Value {
        let c = &self.currency;
        let mut a = TxFields {
            kind: "captures",
            number: &self.number,
            token: &self.token,
            gateway_transaction_id: self.gateway_transaction_id.as_deref(),
            amount: self.amount_cents,
            currency: c,
            succeeded: self.succeeded,
            metadata: &self.metadata,
        }
        .attributes();
        put_money(&mut a, "refund_amount", refund_amount_cents, c);
        put_money(&mut a, "refund_balance", self.refund_balance_cents, c);
        let rels = vec![
            ("order", Some(ident("orders", &self.order.id))),
            (
                "reference_authorization",
                Some(ident("authorizations", &self.authorization_id)),
            ),
            ("payment_source", None),
            ("refunds", None),
            ("return", None),
            ("attachments", None),
            ("events", None),
            ("versions", None),
        ];
        resource("captures", &self.id, a, rels)
    }
}

fn document(data: Value, order: &Order) -> Value {
    json!({ "data": data, "included": order.included() })
}

/// Body of an authorize call: `data` = the external payment, `included` = its order and the
/// order's includes.
pub fn authorize_body(payment: &ExternalPayment) -> Value {
    document(payment.resource(), &payment.order)
}

/// Body of a customer token call: the same shape as an authorize (the external payment to
/// save to the customer's wallet, with its order).
pub fn token_body(payment: &ExternalPayment) -> Value {
    authorize_body(payment)
}

/// Body of a capture call of `amount_cents`: `data` = the authorization.
pub fn capture_body(auth: &Authorization, amount_cents: i64) -> Value {
    document(auth.resource(amount_cents), &auth.order)
}

/// Body of a void call: `data` = the authorization.
pub fn void_body(auth: &Authorization) -> Value {
    document(auth.resource(auth.capture_balance_cents), &auth.order)
}

/// Body of a refund call of `amount_cents`: `data` = the capture.
pub fn refund_body(capture: &Capture, amount_cents: i64) -> Value {
    document(capture.resource(amount_cents), &capture.order)
}

/// Finds a resource of `included` by type and id.
pub fn find_included<'a>(doc: &'a Value, kind: &str, id: &str) -> Option<&'a Value> {
    doc["included"]
        .as_array()?
        .iter()
        .find(|r| r["type"] == kind && r["id"] == id)
}

// ---------------------------------------------------------------------------------------
// The simulator
// ---------------------------------------------------------------------------------------

/// The five calls CL makes to an external gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Authorize,
    Capture,
    Void,
    Refund,
    Token,
}

impl Action {
    /// The last path segment of the host's route for this action.
    pub fn path(self) -> &'static str {
        match self {
            Action::Authorize => "authorize",
            Action::Capture => "capture",
            Action::Void => "void",
            Action::Refund => "refund",
            Action::Token => "token",
        }
    }
}

/// The gateway's answer to one call, as received.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status; `0` when no answer came (connection refused, timeout): what CL records
    /// as a failed call.
    pub status: u16,
    /// The body parsed as JSON, `Null` when it is not JSON.
    pub body: Value,
    /// The body bytes (the transport error's text when `status` is 0).
    pub raw: Vec<u8>,
    pub elapsed: Duration,
}

impl Response {
    /// 200 with `success: true`: CL records a succeeded transaction.
    pub fn is_success(&self) -> bool {
        self.status == 200 && self.body["success"] == true
    }

    /// 202 with `success: true` and an `action_id`: CL records a pending transaction.
    pub fn is_pending(&self) -> bool {
        self.status == 202 && self.body["success"] == true && self.action_id().is_some()
    }

    /// `data.transaction_token`.
    pub fn transaction_token(&self) -> Option<&str> {
        self.body["data"]["transaction_token"].as_str()
    }

    /// `data.amount_cents`.
    pub fn amount_cents(&self) -> Option<i64> {
        self.body["data"]["amount_cents"].as_i64()
    }

    /// `data.action_id` (asynchronous answers).
    pub fn action_id(&self) -> Option<&str> {
        self.body["data"]["action_id"].as_str()
    }

    /// `error.code`, or `data.error.code` as an older version of CL's docs put it.
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"]
            .as_str()
            .or_else(|| self.body["data"]["error"]["code"].as_str())
    }

    /// The body as text, for assertion messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.text())
    }
}

/// What a pending transaction's callback settles.
#[derive(Debug, Clone)]
struct Pending {
    action: Action,
    id: String,
}

/// CL's records, as a test can inspect them.
#[derive(Debug, Default)]
struct State {
    orders: HashMap<String, Order>,
    authorizations: HashMap<String, Authorization>,
    captures: HashMap<String, Capture>,
    settlements: HashMap<String, Settlement>,
    pending: HashMap<String, Pending>,
    /// Next transaction sequence per order number (`42/T/001`, `42/T/002`...).
    sequences: HashMap<String, u32>,
    wallet: Vec<SavedSource>,
    consecutive_failures: u32,
}

impl State {
    fn next_number(&mut self, order: &Order) -> String {
        let n = self.sequences.entry(order.number.clone()).or_insert(0);
        *n += 1;
        format!("{}/T/{:03}", order.number, n)
    }

    /// The current copy of an order (CL moves its statuses along).
    fn order(&self, snapshot: &Order) -> Order {
        self.orders
            .get(&snapshot.id)
            .cloned()
            .unwrap_or_else(|| snapshot.clone())
    }

    fn set_payment_status(&mut self, order: &Order, status: &str, payment_status: &str) {
        let entry = self
            .orders
            .entry(order.id.clone())
            .or_insert_with(|| order.clone());
        entry.status = status.into();
        entry.payment_status = payment_status.into();
    }

    /// Circuit-breaker bookkeeping: timeouts and 5xx count as failures, a success resets.
    /// Whether CL counts 4xx is not documented, so they leave the count alone.
    fn count(&mut self, resp: &Response) {
        if resp.status == 0 || resp.status >= 500 {
            self.consecutive_failures += 1;
        } else if resp.is_success() || resp.is_pending() {
            self.consecutive_failures = 0;
        }
    }

    fn track_pending(&mut self, resp: &Response, action: Action, id: &str) -> Option<String> {
        let action_id = resp.action_id()?.to_owned();
        self.pending.insert(
            action_id.clone(),
            Pending {
                action,
                id: id.to_owned(),
            },
        );
        Some(action_id)
    }

    fn after_authorize(&mut self, p: &ExternalPayment, resp: &Response) -> Option<Authorization> {
        self.count(resp);
        let order = self.order(&p.order);
        let number = self.next_number(&order);
        if !resp.is_success() && !resp.is_pending() {
            return None;
        }
        let id = new_id();
        let amount = resp
            .amount_cents()
            .unwrap_or_else(|| order.total_amount_with_taxes_cents());
        let succeeded = resp.is_success();
        let action_id = self.track_pending(resp, Action::Authorize, &id);
        let payment_status = if succeeded { "authorized" } else { "unpaid" };
        self.set_payment_status(&order, "placed", payment_status);
        let auth = Authorization {
            id: id.clone(),
            number,
            token: resp.transaction_token().unwrap_or_default().to_owned(),
            gateway_transaction_id: resp.transaction_token().map(str::to_owned),
            amount_cents: amount,
            currency: order.currency_code.clone(),
            capture_balance_cents: amount,
            void_balance_cents: amount,
            succeeded,
            action_id,
            metadata: resp.body["data"]["metadata"].clone(),
            message: resp.body["data"]["message"].as_str().map(str::to_owned),
            external_payment_id: p.id.clone(),
            order: self.order(&order),
        };
        self.authorizations.insert(id, auth.clone());
        Some(auth)
    }

    fn after_capture(
        &mut self,
        auth: &Authorization,
        asked: i64,
        resp: &Response,
    ) -> Option<Capture> {
        self.count(resp);
        let number = self.next_number(&auth.order);
        if !resp.is_success() && !resp.is_pending() {
            return None;
        }
        let id = new_id();
        let amount = resp.amount_cents().unwrap_or(asked);
        let succeeded = resp.is_success();
        let action_id = self.track_pending(resp, Action::Capture, &id);
        let capture = Capture {
            id: id.clone(),
            number,
            token: resp.transaction_token().unwrap_or_default().to_owned(),
            gateway_transaction_id: resp.transaction_token().map(str::to_owned),
            amount_cents: amount,
            currency: auth.currency.clone(),
            refund_balance_cents: amount,
            succeeded,
            action_id,
            metadata: resp.body["data"]["metadata"].clone(),
            message: resp.body["data"]["message"].as_str().map(str::to_owned),
            authorization_id: auth.id.clone(),
            order: self.order(&auth.order),
        };
        self.captures.insert(id.clone(), capture);
        if succeeded {
            self.settle_capture(&id);
        }
        self.captures.get(&id).cloned()
    }

    /// A capture succeeded: the authorization has that much less to capture (and to void).
    fn settle_capture(&mut self, capture_id: &str) {
        let Some(capture) = self.captures.get_mut(capture_id) else {
            return;
        };
        capture.succeeded = true;
        let (auth_id, amount) = (capture.authorization_id.clone(), capture.amount_cents);
        let Some(auth) = self.authorizations.get_mut(&auth_id) else {
            return;
        };
        auth.capture_balance_cents = (auth.capture_balance_cents - amount).max(0);
        // What is captured can no longer be voided.
        auth.void_balance_cents = auth.capture_balance_cents;
        let paid = if auth.capture_balance_cents == 0 {
            "paid"
        } else {
            "partially_paid"
        };
        let order = auth.order.clone();
        self.set_payment_status(&order, "approved", paid);
    }

    fn after_void(&mut self, auth: &Authorization, resp: &Response) -> Option<Settlement> {
        self.count(resp);
        let number = self.next_number(&auth.order);
        if !resp.is_success() && !resp.is_pending() {
            return None;
        }
        let id = new_id();
        let void = Settlement {
            id: id.clone(),
            number,
            token: resp.transaction_token().unwrap_or_default().to_owned(),
            amount_cents: resp.amount_cents().unwrap_or(auth.void_balance_cents),
            succeeded: resp.is_success(),
            action_id: self.track_pending(resp, Action::Void, &id),
            parent_id: auth.id.clone(),
        };
        self.settlements.insert(id.clone(), void);
        if resp.is_success() {
            self.settle_void(&id);
        }
        self.settlements.get(&id).cloned()
    }

    /// A void succeeded: nothing is left to capture or void.
    fn settle_void(&mut self, void_id: &str) {
        let Some(void) = self.settlements.get_mut(void_id) else {
            return;
        };
        void.succeeded = true;
        let auth_id = void.parent_id.clone();
        let Some(auth) = self.authorizations.get_mut(&auth_id) else {
            return;
        };
        auth.capture_balance_cents = 0;
        auth.void_balance_cents = 0;
        let order = auth.order.clone();
        self.set_payment_status(&order, "cancelled", "voided");
    }

    fn after_refund(
        &mut self,
        capture: &Capture,
        asked: i64,
        resp: &Response,
    ) -> Option<Settlement> {
        self.count(resp);
        let number = self.next_number(&capture.order);
        if !resp.is_success() && !resp.is_pending() {
            return None;
        }
        let id = new_id();
        let refund = Settlement {
            id: id.clone(),
            number,
            token: resp.transaction_token().unwrap_or_default().to_owned(),
            amount_cents: resp.amount_cents().unwrap_or(asked),
            succeeded: resp.is_success(),
            action_id: self.track_pending(resp, Action::Refund, &id),
            parent_id: capture.id.clone(),
        };
        self.settlements.insert(id.clone(), refund);
        if resp.is_success() {
            self.settle_refund(&id);
        }
        self.settlements.get(&id).cloned()
    }

    /// A refund succeeded: the capture has that much less to refund.
    fn settle_refund(&mut self, refund_id: &str) {
        let Some(refund) = self.settlements.get_mut(refund_id) else {
            return;
        };
        refund.succeeded = true;
        let (capture_id, amount) = (refund.parent_id.clone(), refund.amount_cents);
        let Some(capture) = self.captures.get_mut(&capture_id) else {
            return;
        };
        capture.refund_balance_cents = (capture.refund_balance_cents - amount).max(0);
        let order = capture.order.clone();
        let all_refunded = self
            .captures
            .values()
            .filter(|c| c.order.id == order.id && c.succeeded)
            .all(|c| c.refund_balance_cents == 0);
        let status = if all_refunded {
            "refunded"
        } else {
            "partially_refunded"
        };
        self.set_payment_status(&order, "approved", status);
    }

    fn after_token(&mut self, resp: &Response) -> Option<SavedSource> {
        self.count(resp);
        if !resp.is_success() {
            return None;
        }
        let saved = SavedSource {
            customer_token: resp.body["data"]["customer_token"]
                .as_str()
                .map(str::to_owned),
            payment_source_token: resp.body["data"]["payment_source_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        };
        self.wallet.push(saved.clone());
        Some(saved)
    }

    /// Applies an asynchronous outcome: `Some(true)` when the pending transaction named by
    /// `data.action_id` is now succeeded, `Some(false)` when the callback reported a
    /// failure (CL leaves the order as it is), `None` for an unknown action id.
    fn apply_callback(&mut self, body: &Value) -> Option<bool> {
        let action_id = body["data"]["action_id"].as_str()?;
        let pending = self.pending.get(action_id)?.clone();
        if body["success"] != true {
            return Some(false);
        }
        self.pending.remove(action_id);
        let message = body["data"]["message"].as_str().map(str::to_owned);
        match pending.action {
            Action::Authorize => {
                let auth = self.authorizations.get_mut(&pending.id)?;
                auth.succeeded = true;
                auth.message = message;
                let order = auth.order.clone();
                self.set_payment_status(&order, "placed", "authorized");
            }
            Action::Capture => {
                if let Some(c) = self.captures.get_mut(&pending.id) {
                    c.message = message;
                }
                self.settle_capture(&pending.id);
            }
            Action::Void => self.settle_void(&pending.id),
            Action::Refund => self.settle_refund(&pending.id),
            Action::Token => return None,
        }
        Some(true)
    }
}

/// Commerce Layer, as far as one external gateway is concerned: it sends signed calls to the
/// host's `/commercelayer/{gateway}/{action}` routes and records what CL would record.
///
/// Methods take `&self` (state sits behind a mutex), so one simulator can be shared by
/// concurrent tasks through an `Arc`.
pub struct ClSimulator {
    client: reqwest::Client,
    base_url: String,
    gateway_id: String,
    shared_secret: String,
    content_type: String,
    state: Mutex<State>,
}

impl ClSimulator {
    /// A simulator for gateway `gateway_id` of the host at `base_url` (`http://127.0.0.1:PORT`),
    /// signing with `shared_secret`, sending `application/vnd.api+json`, waiting up to 15 s.
    pub fn new(base_url: &str, gateway_id: &str, shared_secret: &str) -> ClSimulator {
        ClSimulator {
            client: Self::client(Duration::from_secs(15)),
            base_url: base_url.trim_end_matches('/').to_owned(),
            gateway_id: gateway_id.to_owned(),
            shared_secret: shared_secret.to_owned(),
            content_type: JSON_API.to_owned(),
            state: Mutex::new(State::default()),
        }
    }

    fn client(timeout: Duration) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .expect("reqwest client")
    }

    /// Sends `content_type` (e.g. [`JSON`]) instead of `application/vnd.api+json`.
    pub fn with_content_type(mut self, content_type: &str) -> ClSimulator {
        self.content_type = content_type.to_owned();
        self
    }

    /// How long CL waits for an answer before recording a failed call (status 0).
    pub fn with_timeout(mut self, timeout: Duration) -> ClSimulator {
        self.client = Self::client(timeout);
        self
    }

    /// The host's route for `action`.
    pub fn url(&self, action: Action) -> String {
        format!(
            "{}/commercelayer/{}/{}",
            self.base_url,
            self.gateway_id,
            action.path()
        )
    }

    /// The signature of `body` with this gateway's shared secret.
    pub fn sign(&self, body: &[u8]) -> String {
        sign(&self.shared_secret, body)
    }

    /// Serialises a document once and signs exactly those bytes.
    pub fn encode(&self, doc: &Value) -> (Vec<u8>, String) {
        let body = serde_json::to_vec(doc).expect("serialise document");
        let signature = self.sign(&body);
        (body, signature)
    }

    /// Sends `doc` to `action`, signed, with the simulator's content type. Records nothing.
    pub async fn send(&self, action: Action, doc: &Value) -> Response {
        let (body, signature) = self.encode(doc);
        self.post_raw(action, body, Some(signature), &self.content_type)
            .await
    }

    /// Sends exactly `body` with `signature` (or no signature header) and `content_type`:
    /// for negative tests. Records nothing.
    pub async fn post_raw(
        &self,
        action: Action,
        body: Vec<u8>,
        signature: Option<String>,
        content_type: &str,
    ) -> Response {
        let mut request = self
            .client
            .post(self.url(action))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        if let Some(signature) = signature {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        let started = Instant::now();
        let reply = match request.send().await {
            Ok(reply) => reply,
            Err(e) => return transport_error(e, started),
        };
        let status = reply.status().as_u16();
        match reply.bytes().await {
            Ok(raw) => Response {
                status,
                body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
                raw: raw.to_vec(),
                elapsed: started.elapsed(),
            },
            Err(e) => transport_error(e, started),
        }
    }

    /// Authorizes `order`'s `total_amount_with_taxes_cents` with a new external payment
    /// carrying `payment_source_token`. On 200 (or 202) CL records the authorization.
    pub async fn authorize(
        &self,
        order: &Order,
        payment_source_token: &str,
    ) -> (Response, Option<Authorization>) {
        let order = self.current_order(order);
        self.authorize_payment(&ExternalPayment::new(&order, payment_source_token))
            .await
    }

    /// Authorizes a given external payment: send the same one twice to replay an authorize.
    pub async fn authorize_payment(
        &self,
        payment: &ExternalPayment,
    ) -> (Response, Option<Authorization>) {
        let resp = self.send(Action::Authorize, &authorize_body(payment)).await;
        let auth = self.state().after_authorize(payment, &resp);
        (resp, auth)
    }

    /// Captures `amount_cents` of an authorization (CL's current record of it, looked up by
    /// id, so a stale copy is fine). On success the capture balance goes down.
    pub async fn capture(
        &self,
        auth: &Authorization,
        amount_cents: i64,
    ) -> (Response, Option<Capture>) {
        let auth = self.current_authorization(auth);
        let resp = self
            .send(Action::Capture, &capture_body(&auth, amount_cents))
            .await;
        let capture = self.state().after_capture(&auth, amount_cents, &resp);
        (resp, capture)
    }

    /// Voids an authorization. On success nothing is left to capture or void.
    pub async fn void(&self, auth: &Authorization) -> (Response, Option<Settlement>) {
        let auth = self.current_authorization(auth);
        let resp = self.send(Action::Void, &void_body(&auth)).await;
        let void = self.state().after_void(&auth, &resp);
        (resp, void)
    }

    /// Refunds `amount_cents` of a capture. On success its refund balance goes down.
    pub async fn refund(
        &self,
        capture: &Capture,
        amount_cents: i64,
    ) -> (Response, Option<Settlement>) {
        let capture = self.current_capture(capture);
        let resp = self
            .send(Action::Refund, &refund_body(&capture, amount_cents))
            .await;
        let refund = self.state().after_refund(&capture, amount_cents, &resp);
        (resp, refund)
    }

    /// The customer token call: saves `payment`'s source to the customer's wallet.
    pub async fn save_to_wallet(
        &self,
        payment: &ExternalPayment,
    ) -> (Response, Option<SavedSource>) {
        let resp = self.send(Action::Token, &token_body(payment)).await;
        let saved = self.state().after_token(&resp);
        (resp, saved)
    }

    /// Applies a callback body received at the webhook endpoint the way CL does (find the
    /// pending transaction by `data.action_id`): `Some(true)` settled, `Some(false)` a
    /// failure outcome (nothing changes), `None` unknown action id.
    pub fn apply_callback(&self, body: &Value) -> Option<bool> {
        self.state().apply_callback(body)
    }

    /// CL's current record of an authorization.
    pub fn find_authorization(&self, id: &str) -> Option<Authorization> {
        self.state().authorizations.get(id).cloned()
    }

    /// CL's current record of a capture.
    pub fn find_capture(&self, id: &str) -> Option<Capture> {
        self.state().captures.get(id).cloned()
    }

    /// CL's current record of a void or refund.
    pub fn find_settlement(&self, id: &str) -> Option<Settlement> {
        self.state().settlements.get(id).cloned()
    }

    /// CL's current copy of an order (its `status` and `payment_status` move along).
    pub fn find_order(&self, id: &str) -> Option<Order> {
        self.state().orders.get(id).cloned()
    }

    /// Payment sources saved by successful customer token calls.
    pub fn wallet(&self) -> Vec<SavedSource> {
        self.state().wallet.clone()
    }

    /// Failed calls (timeouts, no answer, 5xx) in a row: what CL's circuit breaker counts.
    pub fn consecutive_failures(&self) -> u32 {
        self.state().consecutive_failures
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("simulator state")
    }

    fn current_order(&self, order: &Order) -> Order {
        self.state().order(order)
    }

    fn current_authorization(&self, auth: &Authorization) -> Authorization {
        let state = self.state();
        let mut current = state
            .authorizations
            .get(&auth.id)
            .cloned()
            .unwrap_or_else(|| auth.clone());
        current.order = state.order(&current.order);
        current
    }

    fn current_capture(&self, capture: &Capture) -> Capture {
        let state = self.state();
        let mut current = state
            .captures
            .get(&capture.id)
            .cloned()
            .unwrap_or_else(|| capture.clone());
        current.order = state.order(&current.order);
        current
    }
}

fn transport_error(e: reqwest::Error, started: Instant) -> Response {
    Response {
        status: 0,
        body: Value::Null,
        raw: e.to_string().into_bytes(),
        elapsed: started.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_SECRET: &str = "1c0994cc4e996e8c6ee56a2198f66f3c";
    const VECTOR_BODY: &str =
        r#"{"success":true,"data":{"action_id":"tr_abc123","message":"Payment authorized"}}"#;
    const VECTOR_SIGNATURE: &str = "aO/vfPXJj0E0HOhDrVoo+f8jJP8Aw4+TNxpKDijyIo0=";

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
    fn signature_matches_the_reference_vector() {
        assert_eq!(
            sign(VECTOR_SECRET, VECTOR_BODY.as_bytes()),
            VECTOR_SIGNATURE
        );
        assert!(verify(
            VECTOR_SECRET,
            VECTOR_BODY.as_bytes(),
            VECTOR_SIGNATURE
        ));
        assert!(!verify("other", VECTOR_BODY.as_bytes(), VECTOR_SIGNATURE));
        assert!(!verify(VECTOR_SECRET, b"{}", VECTOR_SIGNATURE));
        assert!(!verify(
            VECTOR_SECRET,
            VECTOR_BODY.as_bytes(),
            "not base64!"
        ));
        assert!(!verify(VECTOR_SECRET, VECTOR_BODY.as_bytes(), ""));
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

    #[test]
    fn sample_order_totals_distinguish_with_and_without_taxes() {
        let t = Order::sample().totals();
        assert_eq!(t.subtotal, 10_300);
        assert_eq!(t.total, 10_000);
        assert_eq!(t.total_tax, 2_200);
        assert_eq!(t.total_with_taxes, 12_200);
        let exact = Order::for_amount("USD", 12_900);
        assert_eq!(exact.total_amount_with_taxes_cents(), 12_900);
        assert_eq!(exact.totals().total, 12_900);
    }

    /// Every `{type, id}` linkage in `resource` names a resource in `included`.
    fn assert_linkages_resolve(doc: &Value, resource: &Value) {
        for (name, rel) in resource["relationships"].as_object().unwrap() {
            let targets = match &rel["data"] {
                Value::Array(items) => items.clone(),
                Value::Object(_) => vec![rel["data"].clone()],
                _ => continue,
            };
            // The capture's reference authorization is linked but, as in CL, not included.
            if name == "reference_authorization" {
                continue;
            }
            for t in targets {
                let (kind, id) = (t["type"].as_str().unwrap(), t["id"].as_str().unwrap());
                assert!(
                    find_included(doc, kind, id).is_some(),
                    "{name} -> {kind}/{id} not included"
                );
            }
        }
    }

    fn assert_resource_shape(r: &Value) {
        for key in ["id", "type", "links", "attributes", "relationships", "meta"] {
            assert!(!r[key].is_null(), "{key} missing in {r}");
        }
    }

    #[test]
    fn authorize_body_is_resolvable_by_type_and_id() {
        let order = Order::sample().with_metadata(json!({"cart": "web"}));
        let payment = ExternalPayment::new(&order, "tok_visa");
        let doc = authorize_body(&payment);
        let data = &doc["data"];
        assert_eq!(data["type"], "external_payments");
        assert_eq!(data["id"], payment.id.as_str());
        assert_eq!(data["attributes"]["payment_source_token"], "tok_visa");
        assert_resource_shape(data);

        let included = doc["included"].as_array().unwrap();
        included.iter().for_each(assert_resource_shape);
        assert_ne!(included[0]["type"], "orders", "order must not be first");
        // 1 order + market + customer + 2 addresses + (2 skus + shipment + promotion) × 2.
        assert_eq!(included.len(), 13);

        let order_ref = &data["relationships"]["order"]["data"];
        assert_eq!(order_ref["type"], "orders");
        let o = find_included(&doc, "orders", order_ref["id"].as_str().unwrap()).unwrap();
        let a = &o["attributes"];
        assert_eq!(a["total_amount_with_taxes_cents"], 12_200);
        assert_eq!(a["total_amount_with_taxes_float"], 122.0);
        assert_eq!(a["formatted_total_amount_with_taxes"], "€122,00");
        assert_eq!(a["total_amount_cents"], 10_000);
        assert_eq!(a["subtotal_amount_cents"], 10_300);
        assert_eq!(a["currency_code"], "EUR");
        assert_eq!(a["customer_email"], "ann.smith@example.com");
        assert_eq!(a["metadata"], json!({"cart": "web"}));
        assert_linkages_resolve(&doc, o);

        // Line items: SKU lines sum to the subtotal; every item resolves.
        let lines: Vec<&Value> = o["relationships"]["line_items"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| find_included(&doc, "line_items", l["id"].as_str().unwrap()).unwrap())
            .collect();
        let sku_total: i64 = lines
            .iter()
            .filter(|l| l["attributes"]["item_type"] == "skus")
            .map(|l| l["attributes"]["total_amount_cents"].as_i64().unwrap())
            .sum();
        assert_eq!(sku_total, 10_300);
        for line in &lines {
            assert_linkages_resolve(&doc, line);
        }
        let sku_line = lines
            .iter()
            .find(|l| l["attributes"]["item_type"] == "skus")
            .unwrap();
        let item = &sku_line["relationships"]["item"]["data"];
        let sku = find_included(&doc, "skus", item["id"].as_str().unwrap()).unwrap();
        assert_eq!(
            sku["attributes"]["code"],
            sku_line["attributes"]["sku_code"]
        );

        let billing = &o["relationships"]["billing_address"]["data"];
        let billing = find_included(&doc, "addresses", billing["id"].as_str().unwrap()).unwrap();
        assert_eq!(billing["attributes"]["company"], "Smith Design S.r.l.");
        assert_eq!(billing["attributes"]["zip_code"], "20121");
    }

    #[test]
    fn guest_orders_have_a_null_customer_linkage() {
        let doc = authorize_body(&ExternalPayment::new(&Order::sample().guest(), "tok"));
        let order_id = doc["data"]["relationships"]["order"]["data"]["id"]
            .as_str()
            .unwrap();
        let o = find_included(&doc, "orders", order_id).unwrap();
        assert!(o["relationships"]["customer"]["data"].is_null());
        assert_eq!(o["attributes"]["guest"], true);
    }

    fn answer(status: u16, body: Value) -> Response {
        Response {
            status,
            raw: serde_json::to_vec(&body).unwrap(),
            body,
            elapsed: Duration::ZERO,
        }
    }

    fn ok(token: &str, amount: i64) -> Response {
        answer(
            200,
            json!({"success": true, "data": {"transaction_token": token, "amount_cents": amount}}),
        )
    }

    #[test]
    fn capture_void_and_refund_bodies_carry_cl_fields() {
        let mut state = State::default();
        let payment = ExternalPayment::new(&Order::sample(), "tok_visa");
        let auth = state
            .after_authorize(&payment, &ok("tok-auth", 12_200))
            .unwrap();

        let doc = capture_body(&auth, 5_000);
        let a = &doc["data"]["attributes"];
        assert_eq!(doc["data"]["type"], "authorizations");
        assert_eq!(doc["data"]["id"], auth.id.as_str());
        assert_eq!(a["token"], "tok-auth");
        assert_eq!(a["number"], format!("{}/T/001", payment.order.number));
        assert_eq!(a["amount_cents"], 12_200);
        assert_eq!(a["formatted_amount"], "€122,00");
        assert_eq!(a["capture_amount_cents"], 5_000);
        assert_eq!(a["capture_balance_cents"], 12_200);
        assert_eq!(a["void_balance_cents"], 12_200);
        assert_eq!(a["succeeded"], true);
        assert_linkages_resolve(&doc, &doc["data"]);

        let void = void_body(&auth);
        assert_eq!(void["data"]["attributes"]["capture_amount_cents"], 12_200);

        let capture = state
            .after_capture(&auth, 5_000, &ok("tok-cap", 5_000))
            .unwrap();
        let doc = refund_body(&capture, 2_000);
        let a = &doc["data"]["attributes"];
        assert_eq!(doc["data"]["type"], "captures");
        assert_eq!(a["token"], "tok-cap");
        assert_eq!(a["amount_cents"], 5_000);
        assert_eq!(a["refund_amount_cents"], 2_000);
        assert_eq!(a["refund_balance_cents"], 5_000);
        let reference = &doc["data"]["relationships"]["reference_authorization"]["data"];
        assert_eq!(reference, &ident("authorizations", &auth.id));
        assert_linkages_resolve(&doc, &doc["data"]);
    }

    #[test]
    fn balances_follow_successful_answers_only() {
        let mut state = State::default();
        let order = Order::sample();
        let payment = ExternalPayment::new(&order, "tok_visa");
        let auth = state.after_authorize(&payment, &ok("a", 12_200)).unwrap();
        assert_eq!(state.orders[&order.id].payment_status, "authorized");

        // A declined capture changes nothing.
        let declined = answer(
            422,
            json!({"success": false, "error": {"code": "card_declined"}}),
        );
        assert!(state.after_capture(&auth, 5_000, &declined).is_none());
        assert_eq!(state.authorizations[&auth.id].capture_balance_cents, 12_200);

        let c1 = state.after_capture(&auth, 5_000, &ok("c1", 5_000)).unwrap();
        let current = &state.authorizations[&auth.id];
        assert_eq!(current.capture_balance_cents, 7_200);
        assert_eq!(current.void_balance_cents, 7_200);
        assert_eq!(state.orders[&order.id].payment_status, "partially_paid");
        // The failed capture still used a transaction number, as CL records it.
        assert_eq!(c1.number, format!("{}/T/003", order.number));

        state.after_refund(&c1, 2_000, &ok("r1", 2_000)).unwrap();
        assert_eq!(state.captures[&c1.id].refund_balance_cents, 3_000);
        assert_eq!(state.orders[&order.id].payment_status, "partially_refunded");

        let current = state.authorizations[&auth.id].clone();
        state
            .after_capture(&current, 7_200, &ok("c2", 7_200))
            .unwrap();
        assert_eq!(state.authorizations[&auth.id].capture_balance_cents, 0);
        assert_eq!(state.orders[&order.id].payment_status, "paid");
    }

    #[test]
    fn void_clears_the_authorization() {
        let mut state = State::default();
        let order = Order::sample();
        let auth = state
            .after_authorize(&ExternalPayment::new(&order, "t"), &ok("a", 12_200))
            .unwrap();
        let void = state.after_void(&auth, &ok("v", 12_200)).unwrap();
        assert_eq!(void.amount_cents, 12_200);
        let current = &state.authorizations[&auth.id];
        assert_eq!(
            (current.capture_balance_cents, current.void_balance_cents),
            (0, 0)
        );
        assert_eq!(state.orders[&order.id].payment_status, "voided");
    }

    #[test]
    fn pending_transactions_settle_on_callback() {
        let mut state = State::default();
        let order = Order::sample();
        let pending = answer(
            202,
            json!({"success": true, "data": {"transaction_token": "p", "amount_cents": 12_200, "action_id": "act-1"}}),
        );
        let auth = state
            .after_authorize(&ExternalPayment::new(&order, "tok_pending"), &pending)
            .unwrap();
        assert!(!auth.succeeded);
        assert_eq!(auth.action_id.as_deref(), Some("act-1"));
        assert_eq!(state.orders[&order.id].payment_status, "unpaid");

        assert_eq!(
            state.apply_callback(&json!({"success": true, "data": {"action_id": "nope"}})),
            None
        );
        let failure = json!({"success": false, "data": {"action_id": "act-1", "error_code": "x"}});
        assert_eq!(state.apply_callback(&failure), Some(false));
        assert!(!state.authorizations[&auth.id].succeeded);

        let success = json!({"success": true, "data": {"action_id": "act-1", "message": "Payment authorized"}});
        assert_eq!(state.apply_callback(&success), Some(true));
        assert!(state.authorizations[&auth.id].succeeded);
        assert_eq!(state.orders[&order.id].payment_status, "authorized");
        // The action id is spent.
        assert_eq!(state.apply_callback(&success), None);

        // A pending capture moves the balance only once settled.
        let auth = state.authorizations[&auth.id].clone();
        let pending_capture = answer(
            202,
            json!({"success": true, "data": {"transaction_token": "pc", "amount_cents": 2_000, "action_id": "act-2"}}),
        );
        let capture = state.after_capture(&auth, 2_000, &pending_capture).unwrap();
        assert_eq!(state.authorizations[&auth.id].capture_balance_cents, 12_200);
        state.apply_callback(&json!({"success": true, "data": {"action_id": "act-2"}}));
        assert_eq!(state.authorizations[&auth.id].capture_balance_cents, 10_200);
        assert!(state.captures[&capture.id].succeeded);
    }

    #[test]
    fn failures_are_counted_like_the_circuit_breaker() {
        let mut state = State::default();
        let payment = ExternalPayment::new(&Order::sample(), "t");
        let timeout = Response {
            status: 0,
            body: Value::Null,
            raw: b"timed out".to_vec(),
            elapsed: Duration::ZERO,
        };
        assert!(state.after_authorize(&payment, &timeout).is_none());
        assert!(
            state
                .after_authorize(&payment, &answer(503, json!({})))
                .is_none()
        );
        assert_eq!(state.consecutive_failures, 2);
        state.after_authorize(&payment, &answer(422, json!({"success": false})));
        assert_eq!(state.consecutive_failures, 2);
        state.after_authorize(&payment, &ok("a", 1));
        assert_eq!(state.consecutive_failures, 0);
    }

    #[test]
    fn simulator_builds_routes_and_signs_what_it_sends() {
        let sim = ClSimulator::new("http://127.0.0.1:9/", "sandbox", VECTOR_SECRET);
        assert_eq!(
            sim.url(Action::Authorize),
            "http://127.0.0.1:9/commercelayer/sandbox/authorize"
        );
        assert_eq!(
            sim.url(Action::Token),
            "http://127.0.0.1:9/commercelayer/sandbox/token"
        );
        let (body, signature) = sim.encode(&authorize_body(&ExternalPayment::new(
            &Order::sample(),
            "t",
        )));
        assert!(verify(VECTOR_SECRET, &body, &signature));
    }
}
