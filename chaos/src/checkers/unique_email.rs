//! One e-mail, one account: for every e-mail registered on two nodes at once
//! (often on two sides of a partition), after the heal every node lets
//! exactly one of the acknowledged passwords in — the same one everywhere,
//! into the same account, one of the accounts a 201 named — and answers the
//! other with 409 `account_superseded`. A registration acknowledged only by
//! nodes the nemesis wiped may be gone (a lost disk loses what it had not
//! replicated), so such an e-mail may open with no password; it may still
//! never open with two.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::{Validity, Verdict};
use crate::registrar::{NodeLogins, RegLog};

/// Runs the checker over the registrations and every node's logins.
pub fn check(
    log: &RegLog,
    reads: &BTreeMap<String, NodeLogins>,
    wiped: &BTreeSet<String>,
) -> Verdict {
    let mut problems = Vec::new();
    let mut contested = 0;
    for (email, regs) in log {
        if regs.len() > 1 {
            contested += 1;
        }
        let may_be_lost = regs.iter().all(|r| wiped.contains(&r.node));
        let mut opened: BTreeSet<(String, String)> = BTreeSet::new();
        for (node, logins) in reads {
            let Some(mine) = logins.get(email) else {
                problems.push(format!("{node}: {email} was not tried"));
                continue;
            };
            let ok: Vec<(&String, &crate::registrar::LoginRead)> =
                mine.iter().filter(|(_, r)| r.status == 200).collect();
            match ok.len() {
                0 if may_be_lost => {}
                1 => {
                    let (pw, r) = ok[0];
                    opened.insert((pw.clone(), r.account.clone().unwrap_or_default()));
                }
                n => problems.push(format!("{node}: {n} passwords open {email}")),
            }
            for (pw, r) in mine {
                if r.status != 200 && regs.len() > 1 && r.status != 409 && !may_be_lost {
                    problems.push(format!(
                        "{node}: a superseded password of {email} answered {} instead of 409 ({pw})",
                        r.status
                    ));
                }
            }
        }
        if opened.len() > 1 {
            problems.push(format!("nodes disagree on who owns {email}: {opened:?}"));
        }
        for (_, account) in &opened {
            if !regs.iter().any(|r| &r.account == account) {
                problems.push(format!(
                    "{email} opens account {account}, which no registration made"
                ));
            }
        }
    }
    let valid = if log.is_empty() {
        Validity::UNKNOWN
    } else {
        Validity::Known(problems.is_empty())
    };
    Verdict {
        valid,
        summary: format!(
            "{} e-mails registered, {contested} on two nodes at once; {} problems",
            log.len(),
            problems.len()
        ),
        details: json!({"emails": log.len(), "contested": contested, "problems": problems.iter().take(20).collect::<Vec<_>>()}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::{LoginRead, Registered};

    fn reg(node: &str, pw: &str, account: &str) -> Registered {
        Registered {
            node: node.into(),
            password: pw.into(),
            account: account.into(),
        }
    }

    fn read(status: u16, account: Option<&str>) -> LoginRead {
        LoginRead {
            status,
            account: account.map(str::to_string),
        }
    }

    #[test]
    fn two_passwords_opening_one_email_is_caught() {
        let log: RegLog = [(
            "a@x.y".to_string(),
            vec![reg("n1", "p1", "A"), reg("n2", "p2", "B")],
        )]
        .into();
        let good: NodeLogins = [(
            "a@x.y".to_string(),
            [
                ("p1".to_string(), read(200, Some("A"))),
                ("p2".to_string(), read(409, None)),
            ]
            .into(),
        )]
        .into();
        let reads: BTreeMap<String, NodeLogins> = [
            ("n1".to_string(), good.clone()),
            ("n2".to_string(), good.clone()),
        ]
        .into();
        assert_eq!(check(&log, &reads, &BTreeSet::new()).valid, Validity::VALID);
        let mut both = good.clone();
        both.get_mut("a@x.y")
            .unwrap()
            .insert("p2".into(), read(200, Some("B")));
        let reads: BTreeMap<String, NodeLogins> =
            [("n1".to_string(), good.clone()), ("n2".to_string(), both)].into();
        assert_eq!(
            check(&log, &reads, &BTreeSet::new()).valid,
            Validity::INVALID
        );
        // Nodes that disagree on the owner.
        let mut other = good.clone();
        other
            .get_mut("a@x.y")
            .unwrap()
            .insert("p1".into(), read(409, None));
        other
            .get_mut("a@x.y")
            .unwrap()
            .insert("p2".into(), read(200, Some("B")));
        let reads: BTreeMap<String, NodeLogins> =
            [("n1".to_string(), good), ("n2".to_string(), other)].into();
        assert_eq!(
            check(&log, &reads, &BTreeSet::new()).valid,
            Validity::INVALID
        );
        assert_eq!(
            check(&RegLog::new(), &BTreeMap::new(), &BTreeSet::new()).valid,
            Validity::UNKNOWN
        );
    }
}
