//! One ACME order, start to end: new order, answer each pending authorization with the
//! configured challenge, wait until ready, finalize (key and CSR made here), fetch the
//! chain. Failures carry the CA's own words and the likely fix.

use crate::challenges::{Challenges, Pending};
use crate::error::chain;
use crate::settings::ChallengeKind;
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, Order, OrderStatus,
    RetryPolicy,
};
use std::time::Duration;

/// How the order's state is polled: the CA validates in the background.
fn polling() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(Duration::from_secs(120))
}

/// Issues a certificate for `names`: `(chain PEM, private key PEM)`, or what went wrong.
pub(crate) async fn order(
    account: &Account,
    names: &[String],
    kind: ChallengeKind,
    challenges: &Challenges,
) -> Result<(String, String), String> {
    let ids: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account
        .new_order(&NewOrder::new(&ids))
        .await
        .map_err(|e| format!("the CA refused the new order: {}", chain(&e)))?;
    // The answers stay published until the order ends, however it ends.
    let _answers = answer_authorizations(&mut order, kind, challenges).await?;
    match order.poll_ready(&polling()).await {
        Ok(OrderStatus::Ready) => {}
        Ok(status) => return Err(validation_failed(&mut order, kind, &format!("{status:?}")).await),
        Err(e) => return Err(validation_failed(&mut order, kind, &chain(&e)).await),
    }
    let key_pem = order
        .finalize()
        .await
        .map_err(|e| format!("the CA refused to finalize the order: {}", chain(&e)))?;
    let chain_pem = order
        .poll_certificate(&polling())
        .await
        .map_err(|e| format!("the CA did not deliver the certificate: {}", chain(&e)))?;
    Ok((chain_pem, key_pem))
}

async fn answer_authorizations(
    order: &mut Order,
    kind: ChallengeKind,
    challenges: &Challenges,
) -> Result<Vec<Pending>, String> {
    let mut answers = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz =
            authz.map_err(|e| format!("cannot fetch an authorization: {}", chain(&e)))?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            status => return Err(format!("an authorization of the order is {status:?}")),
        }
        let wanted = challenge_type(kind);
        let mut challenge = authz.challenge(wanted.clone()).ok_or_else(|| {
            format!("the CA offers no {wanted:?} challenge; choose another challenge")
        })?;
        let key_auth = challenge.key_authorization();
        let answer = match kind {
            ChallengeKind::Http01 => challenges.put_http01(&challenge.token, key_auth.as_str()),
            ChallengeKind::TlsAlpn01 => {
                let host = match challenge.identifier().identifier {
                    Identifier::Dns(name) => name.clone(),
                    other => return Err(format!("TLS-ALPN-01 for {other:?} is not supported")),
                };
                challenges.put_tls_alpn01(&host, key_auth.digest().as_ref())?
            }
        };
        answers.push(answer);
        challenge
            .set_ready()
            .await
            .map_err(|e| format!("the CA refused the challenge answer: {}", chain(&e)))?;
    }
    Ok(answers)
}

fn challenge_type(kind: ChallengeKind) -> ChallengeType {
    match kind {
        ChallengeKind::Http01 => ChallengeType::Http01,
        ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
    }
}

/// The CA's reasons (per name, from the challenges' errors) and the fix for `kind`.
async fn validation_failed(order: &mut Order, kind: ChallengeKind, status: &str) -> String {
    let mut reasons = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(Ok(authz)) = authzs.next().await {
        let name = authz.identifier().to_string();
        for c in authz.challenges.iter() {
            if let Some(problem) = &c.error {
                reasons.push(format!("{name}: {problem}"));
            }
        }
    }
    let fix = match kind {
        ChallengeKind::Http01 => {
            "is port 80 of each name reachable from the CA and answered by this baton \
             (/.well-known/acme-challenge/)?"
        }
        ChallengeKind::TlsAlpn01 => {
            "is port 443 of each name reachable from the CA and answered by this baton \
             (ALPN acme-tls/1)?"
        }
    };
    if reasons.is_empty() {
        format!("validation did not succeed ({status}); {fix}")
    } else {
        format!("validation failed: {}; {fix}", reasons.join("; "))
    }
}
