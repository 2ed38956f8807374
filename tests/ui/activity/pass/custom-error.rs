// An activity's error can be the user's own type: serde and `Display` are all it needs.
#![deny(warnings)]

use std::fmt;

use durable_core::{Activity, ActivityContext, activity};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub enum PaymentError {
    Declined { reason: String },
    Unavailable,
}

impl fmt::Display for PaymentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PaymentError::Declined { reason } => write!(f, "declined: {reason}"),
            PaymentError::Unavailable => f.write_str("payment provider unavailable"),
        }
    }
}

#[activity]
pub async fn charge(_ctx: ActivityContext, amount: u32) -> Result<u32, PaymentError> {
    match amount {
        0 => Err(PaymentError::Declined {
            reason: "zero amount".into(),
        }),
        u32::MAX => Err(PaymentError::Unavailable),
        amount => Ok(amount),
    }
}

fn main() {
    let _: Option<<charge as Activity>::Error> = None::<PaymentError>;
}
