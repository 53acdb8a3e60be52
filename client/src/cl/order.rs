//! The order being paid, as CL models it: line items, addresses, customer, market, and the
//! amounts CL derives from them ([`Order::totals`]). Its JSON:API serialisation (the
//! `orders` resource and its includes) is in `includes`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::jsonapi::{ident, new_id, resource, tax_on};

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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
