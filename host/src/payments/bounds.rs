//! Input bounds every front's requests meet before the engine stores, logs or sends anything:
//! one amount rule, and the guard that keeps card numbers (PANs) away from plugins, logs and
//! the store. Fronts only parse; refusing is decided here, once for all of them.

use super::{PaymentRequest, RefusalCode};
use crate::config::GatewayConfig;
use crate::store::Action;

/// The largest amount accepted, in minor units: far above any real payment (10^13 EUR) and
/// far below `i64::MAX` (~9.2 * 10^18), so balances and sums stored as `i64` cannot overflow.
pub const MAX_AMOUNT_MINOR: u64 = 1_000_000_000_000_000;

/// Why a request was refused, for the front to render.
pub(super) type Refusal = (RefusalCode, String);

/// Checks `req` for `gateway`: the amount, then the payment source token.
pub(super) fn check(gateway: &GatewayConfig, req: &PaymentRequest) -> Result<(), Refusal> {
    check_amount(req.action, req.amount_cents)?;
    if let Some(token) = &req.payment_source_token
        && looks_like_card_number(token, gateway.numeric_tokens)
    {
        // The token itself is never logged: it is the thing being kept out.
        tracing::warn!(gateway = %req.gateway, action = req.action.as_str(), "refused a payment source token that looks like a card number");
        return Err((
            RefusalCode::CardNumberRefused,
            "the payment source token looks like a card number; send the PSP's token".into(),
        ));
    }
    Ok(())
}

/// Money-moving operations need a positive amount; a void or a token may carry 0 (nothing
/// moves), but never more than the bound.
fn check_amount(action: Action, amount: u64) -> Result<(), Refusal> {
    let moves_money = matches!(
        action,
        Action::Authorize | Action::Sale | Action::Capture | Action::Refund
    );
    if amount > MAX_AMOUNT_MINOR || (moves_money && amount == 0) {
        let floor = if moves_money { 1 } else { 0 };
        return Err((
            RefusalCode::InvalidAmount,
            format!(
                "amount {amount} is out of bounds: a {} amount is a whole number of minor units from {floor} to 10^15",
                action.as_str()
            ),
        ));
    }
    Ok(())
}

/// True when `token` reads as a card number: digits (with the spaces or dashes people type),
/// 12 to 19 of them, Luhn-valid, under an issuer prefix of a real card network. With
/// `numeric_tokens` (a PSP that issues numeric tokens) a token of bare digits is the PSP's,
/// and only a typed-looking one (with separators) is still taken for a card number.
pub fn looks_like_card_number(token: &str, numeric_tokens: bool) -> bool {
    let trimmed = token.trim();
    if numeric_tokens && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let Some(digits) = trimmed
        .chars()
        .filter(|c| *c != ' ' && *c != '-')
        .map(|c| c.to_digit(10).map(|d| d as u8))
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    (12..=19).contains(&digits.len()) && luhn_valid(&digits) && issued_by_a_network(&digits)
}

fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            match (i % 2 == 1, d * 2) {
                (true, d2) if d2 > 9 => d2 - 9,
                (true, d2) => d2,
                (false, _) => d,
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Issuer prefixes: (first digits low, high, how many digits they span). Sources, as facts:
/// ISO/IEC 7812-1 numbers cards by issuer identification number, major industry identifier
/// 1 being airlines (UATP, 15 digits); Visa issues under 4; Mastercard under 51-55 and, since
/// 2017, 2221-2720; American Express 34 and 37; Discover 6011, 644-649 and 65, and its
/// network also carries Diners Club (300-305, 36, 38-39) and JCB (3528-3589); UnionPay 62;
/// Maestro 50 and 56-69; Mir (Russia's NSPK) 2200-2204; RuPay (NPCI, India) 60, 65, 81, 82
/// and 508.
const NETWORKS: &[(u32, u32, usize)] = &[
    (4, 4, 1),       // Visa
    (51, 55, 2),     // Mastercard
    (2221, 2720, 4), // Mastercard 2-series
    (34, 34, 2),     // American Express
    (37, 37, 2),     // American Express
    (6011, 6011, 4), // Discover
    (644, 649, 3),   // Discover
    (65, 65, 2),     // Discover, RuPay
    (300, 305, 3),   // Diners Club
    (36, 36, 2),     // Diners Club
    (38, 39, 2),     // Diners Club
    (3528, 3589, 4), // JCB
    (62, 62, 2),     // UnionPay
    (50, 50, 2),     // Maestro
    (56, 69, 2),     // Maestro (covers RuPay's 60)
    (2200, 2204, 4), // Mir
    (81, 82, 2),     // RuPay
    (508, 508, 3),   // RuPay
];

fn issued_by_a_network(digits: &[u8]) -> bool {
    let prefix = |n: usize| {
        digits[..n]
            .iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d))
    };
    // UATP (airlines) is the one network whose prefix needs a length: 1 and 15 digits.
    if digits[0] == 1 {
        return digits.len() == 15;
    }
    NETWORKS
        .iter()
        .any(|&(low, high, n)| (low..=high).contains(&prefix(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The networks' published test card numbers (and Luhn-valid numbers under the
    /// prefixes that publish none).
    const TEST_PANS: &[(&str, &str)] = &[
        ("Visa", "4111111111111111"),
        ("Visa 13 digits", "4222222222222"),
        ("Visa 19 digits", "4000000000000000006"),
        ("Mastercard", "5555555555554444"),
        ("Mastercard 2-series", "2223003122003222"),
        ("American Express", "378282246310005"),
        ("American Express", "371449635398431"),
        ("Discover", "6011111111111117"),
        ("Discover 65", "6510000000000000"),
        ("Discover 644", "6445644564456445"),
        ("Diners Club", "30569309025904"),
        ("Diners Club 36", "36227206271667"),
        ("Diners Club 38", "38520000023237"),
        ("JCB", "3530111333300000"),
        ("JCB", "3566002020360505"),
        ("UnionPay", "6200000000000005"),
        ("Maestro", "6759649826438453"),
        ("Maestro 50", "5000000000000611"),
        ("Mir", "2200000000000004"),
        ("RuPay 508", "5085000000000007"),
        ("RuPay 81", "8100000000000002"),
        ("UATP", "135410014004955"),
    ];

    #[test]
    fn test_card_numbers_of_every_network_are_refused() {
        for (network, pan) in TEST_PANS {
            let digits: Vec<u8> = pan.bytes().map(|b| b - b'0').collect();
            assert!(luhn_valid(&digits), "{network} {pan} is not Luhn-valid");
            assert!(looks_like_card_number(pan, false), "{network} {pan}");
            // A typed number is still a card number on a numeric-token gateway.
            let spaced: String = pan
                .chars()
                .enumerate()
                .flat_map(|(i, c)| (i > 0 && i % 4 == 0).then_some(' ').into_iter().chain([c]))
                .collect();
            assert!(looks_like_card_number(&spaced, true), "{network} {spaced}");
        }
        assert!(looks_like_card_number("4111-1111-1111-1111", false));
        assert!(looks_like_card_number(" 4111 1111 1111 1111 ", false));
    }

    /// Appends the Luhn check digit to `body`.
    fn with_check_digit(body: &[u8]) -> Vec<u8> {
        let mut digits = body.to_vec();
        digits.push(0);
        for d in 0..10 {
            *digits.last_mut().unwrap() = d;
            if luhn_valid(&digits) {
                return digits;
            }
        }
        unreachable!("one check digit always fits")
    }

    #[test]
    fn luhn_valid_numbers_outside_the_networks_are_tokens() {
        // Random 16-digit Luhn-valid numbers under 7, 8 (but RuPay's 81 and 82) and 9.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut tried = 0;
        for first in [7u8, 8, 9] {
            while tried < 3000 * u32::from(first - 6) {
                let mut body = vec![first];
                body.extend((0..14).map(|_| (next() % 10) as u8));
                if first == 8 && matches!(body[1], 1 | 2) {
                    continue;
                }
                tried += 1;
                let digits = with_check_digit(&body);
                let token: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
                assert!(!looks_like_card_number(&token, false), "{token}");
            }
        }
    }

    #[test]
    fn other_tokens_pass() {
        for token in [
            "tok_visa",
            "tok_4111111111111111",
            "4111111111111112", // Luhn-invalid
            "41111111111",      // too short
            "41111111111111111111",
            "pm_card_visa",
            "1354100140049551", // UATP prefix, 16 digits
        ] {
            assert!(!looks_like_card_number(token, false), "{token}");
        }
    }

    #[test]
    fn a_numeric_token_gateway_accepts_pan_shaped_tokens() {
        // Adyen recurring references are 16 bare digits; some look like cards.
        assert!(looks_like_card_number("4111111111111111", false));
        assert!(!looks_like_card_number("4111111111111111", true));
        assert!(!looks_like_card_number("8415718415718415", true));
    }

    #[test]
    fn amounts_are_bounded() {
        for action in [
            Action::Authorize,
            Action::Sale,
            Action::Capture,
            Action::Refund,
        ] {
            assert!(check_amount(action, 1).is_ok());
            assert!(check_amount(action, MAX_AMOUNT_MINOR).is_ok());
            for bad in [0, MAX_AMOUNT_MINOR + 1, 1 << 63, u64::MAX] {
                let (code, message) = check_amount(action, bad).unwrap_err();
                assert_eq!(code, RefusalCode::InvalidAmount);
                assert!(message.contains("amount"), "{message}");
            }
        }
        for action in [Action::Void, Action::Token] {
            assert!(check_amount(action, 0).is_ok());
            assert!(check_amount(action, MAX_AMOUNT_MINOR).is_ok());
            assert!(check_amount(action, 1 << 63).is_err());
        }
    }
}
